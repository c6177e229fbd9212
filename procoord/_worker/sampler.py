"""One sampler of a worker's load: CPU and memory of this process, measured here and
sent to the parent with the results."""

from __future__ import annotations

from collections.abc import Callable

import psutil

__all__ = ("DEFAULT_SAMPLE_INTERVAL_S", "sample_forever")

# How often a worker reports CPU and memory by default: fresher stats against wake-ups.
DEFAULT_SAMPLE_INTERVAL_S = 0.25


def sample_forever(interval_s: float, report: Callable[[int, float], None], stop: Callable[[float], bool]) -> None:
    """Call ``report(rss_bytes, cpu_percent)`` every ``interval_s`` seconds until
    ``stop(timeout)`` (which waits up to ``timeout`` seconds) returns True."""
    me = psutil.Process()
    me.cpu_percent(None)
    while not stop(interval_s):
        try:
            cpu = me.cpu_percent(None)
            rss = me.memory_info().rss
        except psutil.Error:
            continue
        report(rss, cpu)
