"""One sampler of a worker's load: CPU and memory of this process, measured here and
sent to the parent with the results.

On Linux both are read from ``/proc`` and ``os.times()`` (tens of microseconds, so the
first sample costs a starting worker next to nothing); elsewhere psutil reads them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

__all__ = ("sample_forever", "sample_now", "sample_once")

_PROC = os.path.exists("/proc/self/statm")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if _PROC else 4096
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if _PROC else 0.01


def _rss() -> int:
    if not _PROC:
        import psutil

        return int(psutil.Process().memory_info().rss)
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE_BYTES


def _cpu_s() -> float:
    times = os.times()  # of every thread of this process, not of its children
    return times.user + times.system


def _age_s() -> float:
    """Seconds since this process started (to the clock tick)."""
    if not _PROC:
        import psutil

        return time.time() - float(psutil.Process().create_time())
    with open("/proc/self/stat", "rb") as f:
        start_ticks = int(f.read().rsplit(b")", 1)[1].split()[19])  # field 22 of stat(5)
    with open("/proc/uptime", "rb") as f:
        uptime_s = float(f.read().split()[0])
    return uptime_s - start_ticks * _TICK_S


def sample_once() -> tuple[int, float]:
    """This process's (rss_bytes, cpu_percent since it started)."""
    return _rss(), 100.0 * _cpu_s() / max(_TICK_S, _age_s())


_last_cpu_percent = 0.0  # the CPU share of the last periodic sample


def sample_now() -> tuple[int, float]:
    """This process's (rss_bytes now, cpu_percent of the last periodic sample)."""
    return _rss(), _last_cpu_percent


def sample_forever(interval_s: float, report: Callable[[int, float], None], stop: Callable[[float], bool]) -> None:
    """Call ``report(rss_bytes, cpu_percent)`` every ``interval_s`` seconds until
    ``stop(timeout)`` (which waits up to ``timeout`` seconds) returns True; the CPU
    share is over the time since the previous sample."""
    last_cpu_s, last_t = _cpu_s(), time.monotonic()
    while not stop(interval_s):
        try:
            rss = _rss()
        except OSError:
            continue
        global _last_cpu_percent
        cpu_s, now = _cpu_s(), time.monotonic()
        _last_cpu_percent = 100.0 * (cpu_s - last_cpu_s) / max(1e-9, now - last_t)
        report(rss, _last_cpu_percent)
        last_cpu_s, last_t = cpu_s, now
