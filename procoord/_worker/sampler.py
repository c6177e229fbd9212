"""One sampler of a worker's load: CPU and memory of this process, measured here and
sent to the parent with the results."""

from __future__ import annotations

import time
from collections.abc import Callable

import psutil

__all__ = ("sample_forever", "sample_once")


def sample_once() -> tuple[int, float]:
    """This process's (rss_bytes, cpu_percent since it started)."""
    me = psutil.Process()
    with me.oneshot():
        times = me.cpu_times()
        elapsed = max(1e-6, time.time() - me.create_time())
        return me.memory_info().rss, 100.0 * (times.user + times.system) / elapsed


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
