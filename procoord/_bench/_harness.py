"""What every scenario uses: the parent's event loop, the optional profiler, summary
statistics over repetitions, memory of processes, timed subprocesses, the machine."""

from __future__ import annotations

import asyncio
import cProfile
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psutil

from ._config import BenchConfig

__all__ = (
    "MIB",
    "Profiler",
    "child_environment",
    "latency_summary",
    "machine",
    "median_of",
    "percentile",
    "run_async",
    "summary",
    "timed_program",
)

T = TypeVar("T")

MIB = 1 << 20


def run_async(cfg: BenchConfig, coro: Coroutine[Any, Any, T]) -> T:
    """Run one repetition on a fresh event loop of the configured kind."""
    if cfg.loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    return asyncio.run(coro)


class Profiler:
    """Runs procoord's repetitions, under cProfile when ``--profile PATH`` is given."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.prof = cProfile.Profile() if path else None

    def run(self, cfg: BenchConfig, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` as :func:`run_async` does, profiled when profiling."""
        if self.prof is None:
            return run_async(cfg, coro)
        self.prof.enable()
        try:
            return run_async(cfg, coro)
        finally:
            self.prof.disable()

    def save(self) -> None:
        """Write the profile, when there is one."""
        if self.prof is not None and self.path:
            self.prof.dump_stats(self.path)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values, nearest rank."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def summary(values: Iterable[float]) -> dict[str, Any]:
    """Median, range and the values of a figure over its repetitions."""
    clean = [v for v in values if v == v]
    if not clean:
        return {"median": None, "min": None, "max": None, "samples": []}
    return {
        "median": statistics.median(clean),
        "min": min(clean),
        "max": max(clean),
        "samples": [round(v, 6) for v in clean],
    }


def latency_summary(repetitions: Sequence[Sequence[float]]) -> dict[str, Any]:
    """p50 and p99 of each repetition's samples, summarised over the repetitions."""
    p50s, p99s = [], []
    for samples in repetitions:
        ordered = sorted(samples)
        p50s.append(percentile(ordered, 0.50))
        p99s.append(percentile(ordered, 0.99))
    return {"p50_us": summary(p50s), "p99_us": summary(p99s)}


def median_of(node: Any) -> float | None:
    """The median of a :func:`summary` (or a plain number), None when missing."""
    if isinstance(node, dict):
        node = node.get("median")
    return float(node) if isinstance(node, int | float) else None


def child_environment() -> dict[str, str]:
    """The environment of a measured program: it imports the procoord being measured."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def timed_program(source: str, timeout: float = 120.0) -> tuple[float, str]:
    """Wall-clock seconds of a fresh interpreter running ``source``, from its start
    to its exit, and what it printed; raises with its stderr when it fails."""
    env = child_environment()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"the measured program failed (exit {proc.returncode}):\n{source}\n{proc.stderr}")
    return elapsed, proc.stdout


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for text in fh:
                if text.startswith("model name"):
                    model = text.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }
