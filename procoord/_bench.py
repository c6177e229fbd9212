"""Benchmark: procoord against the stdlib's ``concurrent.futures.ProcessPoolExecutor``.

Run it as ``python -m procoord bench``, ``python scripts/bench.py`` or ``make bench``.
One run measures both pools on the same machine, with the same module-level task
functions, alternating procoord / ProcessPoolExecutor repetition by repetition (each
repetition in a fresh pool), and reports medians, their spread and the ratio of every
figure next to its target:

- (a) sequential round trip of a no-op task: p50 / p99, and a raw blocking Python echo
  over a socketpair between two processes (the pipe's own limit);
- (b) throughput of 20,000 no-op tasks: one ``run`` per task against ``submit``, and
  ``coord.map`` (a windowed loop of ``run`` while there is no ``map``) against
  ``ProcessPoolExecutor.map`` at its best chunksize;
- (c) CPU-bound scaling on one worker per core against the same work serially;
- (d) a 1 MiB ``bytes`` argument echoed back (and a 64 MiB numpy buffer if numpy imports);
- (e) start-up, cold (first pool in a fresh interpreter) and warm, and memory per idle
  worker process;
- (f) CPU time of the parent process per task at full throughput;
- (g) balance quality: makespan against the ideal in four scenarios.

The results are also written as JSON (``bench-results.json`` unless ``--json`` says
otherwise). Nothing here asserts on time: it measures and reports.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib
import inspect
import json
import multiprocessing
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
from collections import deque
from collections.abc import AsyncIterable, Callable, Coroutine, Hashable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

import psutil

from .coordinator import Coordinator
from .handle import JoinHandle

__all__ = ("FIGURES", "BenchConfig", "main", "run_bench")

T = TypeVar("T")

FIGURES = ("a", "b", "c", "d", "e", "f", "g")
"""Figure names accepted by ``--only``."""

MIB = 1 << 20
MB = 1e6

# PPE.map chunksizes tried in (b); the best one is the baseline.
PPE_CHUNKSIZES = (10, 100, 1000, 2500)

# The window of the fallback "map" (a loop of ``run`` keeping this many tasks pending).
MAP_WINDOW = 1024

# Size of one raw-echo message: about a TASK frame header plus a small pickle.
RAW_MESSAGE = 40

RAW_ECHO_SOURCE = (
    "import socket, sys\n"
    "s = socket.socket(fileno=int(sys.argv[1]))\n"
    "while True:\n"
    "    d = s.recv(65536)\n"
    "    if not d:\n"
    "        break\n"
    "    s.sendall(d)\n"
)


# -- task functions (module level: both pools import them by reference) ------------


def noop(x: Any) -> Any:
    """Return the task unchanged."""
    return x


def echo(data: Any) -> Any:
    """Return the argument: its bytes cross the channel both ways."""
    return data


def cpu_work(n: int) -> int:
    """Pure-Python arithmetic, ``n`` loop turns."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def spin(seconds: float) -> float:
    """Burn CPU for ``seconds`` (a busy loop: the worker's core is fully used)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return seconds


class Spinner:
    """A procoord processor that spins ``factor`` times the task's seconds: a worker
    ``factor`` times slower than one with factor 1."""

    def __init__(self, factor: float = 1.0) -> None:
        self.factor = factor

    def do_work(self, seconds: float) -> float:
        """Spin for ``seconds * factor``."""
        spin(seconds * self.factor)
        return seconds


# Per-process settings of a ProcessPoolExecutor worker, set by ``_ppe_init``.
_ppe_factor = 1.0
_ppe_join_at: Any = None


def _ppe_init(counter: Any, factors: Sequence[float], join_at: Any) -> None:
    """ProcessPoolExecutor initializer: the n-th worker to start takes ``factors[n]``
    as its slowness; worker 1 keeps the shared ``join_at`` value (CLOCK_MONOTONIC, the
    same in every process) and stays away until that time once it is set."""
    global _ppe_factor, _ppe_join_at
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    _ppe_factor = factors[index % len(factors)]
    _ppe_join_at = join_at if index == 1 else None


def ppe_spin(seconds: float) -> int:
    """The PPE side of ``Spinner``: spin ``seconds`` times this worker's factor; a
    worker that joins late first waits for its joining time. Returns the pid."""
    global _ppe_join_at
    if _ppe_join_at is not None:
        join_at = _ppe_join_at.value
        if join_at:
            _ppe_join_at = None
            delay = join_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    spin(seconds * _ppe_factor)
    return os.getpid()


# -- configuration ------------------------------------------------------------------


@dataclass
class BenchConfig:
    """Sizes and repetitions of one benchmark run."""

    quick: bool = False
    only: tuple[str, ...] = FIGURES
    json_path: str = "bench-results.json"
    loop: str = "asyncio"
    profile: str | None = None
    reps: int = 5
    latency_calls: int = 2000
    raw_calls: int = 5000
    burst_tasks: int = 20_000
    cpu_tasks: int = 200
    cpu_task_s: float = 0.010
    echo_calls: int = 50
    big_echo_calls: int = 3
    startup_warm: int = 3
    slow_tasks: int = 1000
    mix_long: int = 16
    mix_short: int = 400
    join_tasks: int = 1500
    join_after_s: float = 0.3
    workers: int = 2
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)

    @classmethod
    def quick_config(cls) -> BenchConfig:
        """Small sizes for a smoke run (well under a minute for every figure)."""
        return cls(
            quick=True,
            reps=1,
            latency_calls=200,
            raw_calls=500,
            burst_tasks=2000,
            cpu_tasks=20,
            cpu_task_s=0.005,
            echo_calls=5,
            big_echo_calls=1,
            startup_warm=1,
            slow_tasks=100,
            mix_long=4,
            mix_short=40,
            join_tasks=300,
            join_after_s=0.1,
        )


def _reps(cfg: BenchConfig, full: int) -> int:
    return 1 if cfg.quick else min(cfg.reps, full)


# -- helpers ------------------------------------------------------------------------


def _run_async(cfg: BenchConfig, coro: Coroutine[Any, Any, T]) -> T:
    """Run one procoord repetition on a fresh event loop of the configured kind."""
    if cfg.loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)
    return asyncio.run(coro)


class _Profiler:
    """Profiles the parent during procoord repetitions when ``--profile`` is given."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.prof = cProfile.Profile() if path else None

    def run(self, cfg: BenchConfig, coro: Coroutine[Any, Any, T]) -> T:
        if self.prof is None:
            return _run_async(cfg, coro)
        self.prof.enable()
        try:
            return _run_async(cfg, coro)
        finally:
            self.prof.disable()

    def save(self) -> None:
        if self.prof is not None and self.path:
            self.prof.dump_stats(self.path)


def _pct(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def _summary(values: Sequence[float]) -> dict[str, Any]:
    """Median, range and the per-repetition values."""
    clean = [v for v in values if v == v]
    if not clean:
        return {"median": None, "min": None, "max": None, "samples": []}
    return {
        "median": statistics.median(clean),
        "min": min(clean),
        "max": max(clean),
        "samples": [round(v, 6) for v in clean],
    }


def _med(d: dict[str, Any], *path: str) -> float | None:
    node: Any = d
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    if isinstance(node, dict):
        node = node.get("median")
    return float(node) if isinstance(node, int | float) else None


def _ctx() -> Any:
    """The start method both pools use: procoord's default (forkserver on Linux)."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _ppe(workers: int, **kwargs: Any) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=_ctx(), **kwargs)


def _ppe_warm(ex: ProcessPoolExecutor, workers: int) -> None:
    """Start every worker of a pool (it starts them one per submit) and warm them up."""
    for f in [ex.submit(spin, 0.02) for _ in range(workers)]:
        f.result()
    for f in [ex.submit(noop, i) for i in range(200)]:
        f.result()


async def _coordinator(processor: object, workers: int) -> Coordinator:
    coord = Coordinator()
    await asyncio.gather(*(coord.add_worker(f"w{i}", processor) for i in range(workers)))
    return coord


async def _pc_warm(coord: Coordinator, calls: int = 200) -> None:
    for i in range(calls):
        await coord.call(i)


async def _pc_map(coord: Coordinator, tasks: Sequence[Any]) -> tuple[int, str]:
    """Run ``tasks`` through ``coord.map`` when the coordinator has one, else through a
    windowed loop of ``run``; return the number of results and which path ran."""
    mapper = getattr(coord, "map", None)
    if mapper is not None:
        out: Any = mapper(tasks)
        if inspect.isawaitable(out):
            out = await out
        count = 0
        if isinstance(out, AsyncIterable):
            async for _ in out:
                count += 1
        else:
            for item in out:
                if inspect.isawaitable(item):
                    await item
                count += 1
        return count, "coord.map"
    window: deque[JoinHandle[tuple[Any, Hashable]]] = deque()
    count = 0
    for task in tasks:
        if len(window) >= MAP_WINDOW:
            await window.popleft()
            count += 1
        window.append(await coord.run(task))
    while window:
        await window.popleft()
        count += 1
    return count, f"windowed run (window {MAP_WINDOW})"


# -- (a) sequential round trip --------------------------------------------------------


async def _pc_latency(cfg: BenchConfig) -> list[float]:
    coord = await _coordinator(noop, cfg.workers)
    async with coord:
        await _pc_warm(coord)
        out: list[float] = []
        clock = time.perf_counter_ns
        for i in range(cfg.latency_calls):
            t0 = clock()
            await coord.call(i)
            out.append((clock() - t0) / 1000)
        return out


def _ppe_latency(cfg: BenchConfig) -> list[float]:
    with _ppe(cfg.workers) as ex:
        _ppe_warm(ex, cfg.workers)
        out: list[float] = []
        clock = time.perf_counter_ns
        for i in range(cfg.latency_calls):
            t0 = clock()
            ex.submit(noop, i).result()
            out.append((clock() - t0) / 1000)
        return out


def _raw_latency(cfg: BenchConfig, pinned: bool = False) -> list[float]:
    """Blocking echo over a socketpair, to a plain Python process. ``pinned`` puts the
    two processes on different CPUs, so every hop is a cross-CPU wake-up."""
    mine, theirs = socket.socketpair()
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pinned = pinned and len(cpus) >= 2
    proc = subprocess.Popen([sys.executable, "-c", RAW_ECHO_SOURCE, str(theirs.fileno())], pass_fds=[theirs.fileno()])
    theirs.close()
    if pinned:
        os.sched_setaffinity(proc.pid, {cpus[1]})
        os.sched_setaffinity(0, {cpus[0]})
    try:
        msg = b"x" * RAW_MESSAGE
        for _ in range(200):
            mine.sendall(msg)
            mine.recv(65536)
        out: list[float] = []
        clock = time.perf_counter_ns
        for _ in range(cfg.raw_calls):
            t0 = clock()
            mine.sendall(msg)
            got = mine.recv(65536)
            while len(got) < RAW_MESSAGE:
                got += mine.recv(65536)
            out.append((clock() - t0) / 1000)
        return out
    finally:
        mine.close()
        proc.wait(10)
        if pinned:
            os.sched_setaffinity(0, cpus)


def _lat_stats(samples: list[list[float]]) -> dict[str, Any]:
    p50s, p99s = [], []
    for s in samples:
        ordered = sorted(s)
        p50s.append(_pct(ordered, 0.50))
        p99s.append(_pct(ordered, 0.99))
    return {"p50_us": _summary(p50s), "p99_us": _summary(p99s)}


def fig_a(cfg: BenchConfig, prof: _Profiler) -> dict[str, Any]:
    """(a) Sequential round trip of a no-op task, and the raw echo limit."""
    pc, ppe, raw, pinned = [], [], [], []
    for _ in range(_reps(cfg, 5)):
        pc.append(prof.run(cfg, _pc_latency(cfg)))
        ppe.append(_ppe_latency(cfg))
        raw.append(_raw_latency(cfg))
        pinned.append(_raw_latency(cfg, pinned=True))
    return {
        "calls": cfg.latency_calls,
        "procoord": _lat_stats(pc),
        "ppe": _lat_stats(ppe) | {"how": "ex.submit(noop, i).result(), blocking, outside any event loop"},
        "raw_echo": _lat_stats(raw) | {"how": f"blocking {RAW_MESSAGE}-byte echo over a socketpair"},
        "raw_echo_cross_cpu": _lat_stats(pinned) | {"how": "the same, parent and echo pinned to different CPUs"},
    }


# -- (b) throughput and (f) parent CPU per task -------------------------------------


async def _pc_burst(cfg: BenchConfig) -> tuple[float, float]:
    coord = await _coordinator(noop, cfg.workers)
    async with coord:
        await _pc_warm(coord)
        gc.collect()
        n = cfg.burst_tasks
        c0, t0 = time.process_time(), time.perf_counter()
        handles = [await coord.run(i) for i in range(n)]
        for h in handles:
            await h
        t1, c1 = time.perf_counter(), time.process_time()
        return n / (t1 - t0), (c1 - c0) / n * 1e6


def _ppe_burst(cfg: BenchConfig) -> tuple[float, float]:
    with _ppe(cfg.workers) as ex:
        _ppe_warm(ex, cfg.workers)
        gc.collect()
        n = cfg.burst_tasks
        c0, t0 = time.process_time(), time.perf_counter()
        futures = [ex.submit(noop, i) for i in range(n)]
        for f in futures:
            f.result()
        t1, c1 = time.perf_counter(), time.process_time()
        return n / (t1 - t0), (c1 - c0) / n * 1e6


async def _pc_map_rate(cfg: BenchConfig) -> tuple[float, float, str]:
    coord = await _coordinator(noop, cfg.workers)
    async with coord:
        await _pc_warm(coord)
        gc.collect()
        tasks = list(range(cfg.burst_tasks))
        c0, t0 = time.process_time(), time.perf_counter()
        count, how = await _pc_map(coord, tasks)
        t1, c1 = time.perf_counter(), time.process_time()
        return count / (t1 - t0), (c1 - c0) / count * 1e6, how


def _ppe_map_rate(cfg: BenchConfig, chunksize: int) -> tuple[float, float]:
    with _ppe(cfg.workers) as ex:
        _ppe_warm(ex, cfg.workers)
        gc.collect()
        n = cfg.burst_tasks
        c0, t0 = time.process_time(), time.perf_counter()
        count = sum(1 for _ in ex.map(noop, range(n), chunksize=chunksize))
        t1, c1 = time.perf_counter(), time.process_time()
        return count / (t1 - t0), (c1 - c0) / count * 1e6


def fig_b(cfg: BenchConfig, prof: _Profiler, with_map: bool = True) -> dict[str, Any]:
    """(b) Throughput of no-op tasks issued at once; (f) the parent's CPU per task."""
    pc_rate, pc_cpu, ppe_rate, ppe_cpu = [], [], [], []
    pcm_rate, pcm_cpu = [], []
    ppem: dict[int, list[tuple[float, float]]] = {c: [] for c in PPE_CHUNKSIZES}
    how = ""
    for _ in range(_reps(cfg, 3)):
        r, c = prof.run(cfg, _pc_burst(cfg))
        pc_rate.append(r)
        pc_cpu.append(c)
        r, c = _ppe_burst(cfg)
        ppe_rate.append(r)
        ppe_cpu.append(c)
        if with_map:
            r, c, how = prof.run(cfg, _pc_map_rate(cfg))
            pcm_rate.append(r)
            pcm_cpu.append(c)
            for chunksize in PPE_CHUNKSIZES:
                ppem[chunksize].append(_ppe_map_rate(cfg, chunksize))
    out: dict[str, Any] = {
        "tasks": cfg.burst_tasks,
        "procoord_run": {"tasks_per_s": _summary(pc_rate), "parent_cpu_us_per_task": _summary(pc_cpu)},
        "ppe_submit": {"tasks_per_s": _summary(ppe_rate), "parent_cpu_us_per_task": _summary(ppe_cpu)},
    }
    if with_map:
        per_chunk = {
            str(c): {
                "tasks_per_s": _summary([r for r, _ in v]),
                "parent_cpu_us_per_task": _summary([cpu for _, cpu in v]),
            }
            for c, v in ppem.items()
        }
        best = max(per_chunk, key=lambda c: per_chunk[c]["tasks_per_s"]["median"] or 0.0)
        out["procoord_map"] = {
            "how": how,
            "tasks_per_s": _summary(pcm_rate),
            "parent_cpu_us_per_task": _summary(pcm_cpu),
        }
        out["ppe_map"] = {"best_chunksize": int(best), "by_chunksize": per_chunk} | per_chunk[best]
    return out


# -- (c) CPU-bound scaling ------------------------------------------------------------


def _calibrate(seconds: float) -> int:
    """Loop turns of ``cpu_work`` that take about ``seconds`` here (best of a few)."""
    probe = 50_000
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        cpu_work(probe)
        best = min(best, time.perf_counter() - t0)
    return max(1000, int(probe * seconds / best))


async def _pc_cpu(cfg: BenchConfig, n: int) -> float:
    coord = await _coordinator(cpu_work, cfg.cores)
    async with coord:
        await asyncio.gather(*[await coord.run(1000) for _ in range(cfg.cores * 4)])
        t0 = time.perf_counter()
        handles = [await coord.run(n) for _ in range(cfg.cpu_tasks)]
        for h in handles:
            await h
        return time.perf_counter() - t0


def _ppe_cpu(cfg: BenchConfig, n: int) -> float:
    with _ppe(cfg.cores) as ex:
        _ppe_warm(ex, cfg.cores)
        t0 = time.perf_counter()
        for f in [ex.submit(cpu_work, n) for _ in range(cfg.cpu_tasks)]:
            f.result()
        return time.perf_counter() - t0


def _serial_cpu(cfg: BenchConfig, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(cfg.cpu_tasks):
        cpu_work(n)
    return time.perf_counter() - t0


def fig_c(cfg: BenchConfig, prof: _Profiler) -> dict[str, Any]:
    """(c) Speedup of CPU-bound tasks on one worker per core over the parent alone."""
    n = _calibrate(cfg.cpu_task_s)
    serial, pc, ppe = [], [], []
    for _ in range(_reps(cfg, 3)):
        s = _serial_cpu(cfg, n)
        serial.append(s)
        pc.append(s / prof.run(cfg, _pc_cpu(cfg, n)))
        ppe.append(s / _ppe_cpu(cfg, n))
    return {
        "tasks": cfg.cpu_tasks,
        "loop_turns": n,
        "cores": cfg.cores,
        "serial_s": _summary(serial),
        "procoord": {"speedup": _summary(pc)},
        "ppe": {"speedup": _summary(ppe)},
        "how": "serial time of each repetition divided by the pool's time in the same repetition",
    }


# -- (d) large arguments ----------------------------------------------------------------


async def _pc_echo(cfg: BenchConfig, payload: Any, calls: int) -> float:
    coord = await _coordinator(echo, cfg.workers)
    async with coord:
        await coord.call(payload)
        t0 = time.perf_counter()
        for _ in range(calls):
            await coord.call(payload)
        return time.perf_counter() - t0


def _ppe_echo(cfg: BenchConfig, payload: Any, calls: int) -> float:
    with _ppe(cfg.workers) as ex:
        _ppe_warm(ex, cfg.workers)
        ex.submit(echo, payload).result()
        t0 = time.perf_counter()
        for _ in range(calls):
            ex.submit(echo, payload).result()
        return time.perf_counter() - t0


def _numpy_buffer(size: int) -> Any | None:
    try:
        numpy = importlib.import_module("numpy")
    except ImportError:
        return None
    return numpy.ones(size, dtype=numpy.uint8)


def fig_d(cfg: BenchConfig, prof: _Profiler) -> dict[str, Any]:
    """(d) A 1 MiB bytes argument echoed back, and a 64 MiB numpy buffer if numpy imports."""
    small = os.urandom(MIB)
    pc, ppe = [], []
    for _ in range(_reps(cfg, 5)):
        pc.append(MIB * cfg.echo_calls / prof.run(cfg, _pc_echo(cfg, small, cfg.echo_calls)) / MB)
        ppe.append(MIB * cfg.echo_calls / _ppe_echo(cfg, small, cfg.echo_calls) / MB)
    out: dict[str, Any] = {
        "how": "sequential echo round trips; MB/s = argument bytes (1e6 per MB) per second of round trip",
        "1mib": {"procoord": {"mb_per_s": _summary(pc)}, "ppe": {"mb_per_s": _summary(ppe)}},
    }
    big = _numpy_buffer(64 * MIB)
    if big is None:
        out["64mib"] = {"skipped": "numpy is not installed"}
        return out
    pcb, ppeb = [], []
    for _ in range(_reps(cfg, 3)):
        pcb.append(64 * MIB * cfg.big_echo_calls / prof.run(cfg, _pc_echo(cfg, big, cfg.big_echo_calls)) / MB)
        ppeb.append(64 * MIB * cfg.big_echo_calls / _ppe_echo(cfg, big, cfg.big_echo_calls) / MB)
    out["64mib"] = {"procoord": {"mb_per_s": _summary(pcb)}, "ppe": {"mb_per_s": _summary(ppeb)}}
    return out


# -- (e) start-up and memory ------------------------------------------------------------


def _memory(pids: Iterable[int]) -> tuple[float, float]:
    """Mean RSS and USS in MiB over the given processes."""
    rss, uss = [], []
    for pid in pids:
        try:
            info = psutil.Process(pid).memory_full_info()
        except psutil.Error:
            continue
        rss.append(info.rss / MIB)
        uss.append(info.uss / MIB)
    if not rss:
        return float("nan"), float("nan")
    return statistics.mean(rss), statistics.mean(uss)


async def _pc_start_once(workers: int, measure_memory: bool) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    coord = Coordinator()
    await asyncio.gather(*(coord.add_worker(f"w{i}", noop) for i in range(workers)))
    await coord.call(0)
    elapsed = time.perf_counter() - t0
    rss = uss = float("nan")
    try:
        if measure_memory:
            await asyncio.sleep(0.5)
            stats = await coord.stats()
            rss, uss = _memory(s.pid for s in stats.values() if s.pid is not None)
    finally:
        await coord.close()
    return elapsed, rss, uss


def _ppe_start_once(workers: int, measure_memory: bool) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    ex = _ppe(workers)
    try:
        # One submit per worker: a forkserver/spawn pool starts a process per submit.
        futures = [ex.submit(noop, i) for i in range(workers)]
        next(iter(_as_completed(futures))).result()
        elapsed = time.perf_counter() - t0
        for f in futures:
            f.result()
        rss = uss = float("nan")
        if measure_memory:
            time.sleep(0.5)
            procs: dict[int, Any] = getattr(ex, "_processes", None) or {}
            rss, uss = _memory(procs)
    finally:
        ex.shutdown()
    return elapsed, rss, uss


def _as_completed(futures: Sequence[Future[Any]]) -> Iterable[Future[Any]]:
    from concurrent.futures import as_completed

    return as_completed(futures)


def startup_child(which: str, warm: int, workers: int, loop: str) -> dict[str, float]:
    """Measure start-up in this (fresh) interpreter: the first pool is cold, the next
    ``warm`` ones warm; memory is measured on the last. Used by (e) in a subprocess."""
    cfg = BenchConfig(loop=loop)
    results: list[tuple[float, float, float]] = []
    for i in range(warm + 1):
        last = i == warm
        if which == "procoord":
            results.append(_run_async(cfg, _pc_start_once(workers, last)))
        else:
            results.append(_ppe_start_once(workers, last))
    warm_times = [r[0] for r in results[1:]]
    return {
        "cold_ms": results[0][0] * 1000,
        "warm_ms": statistics.median(warm_times) * 1000 if warm_times else float("nan"),
        "rss_mib": results[-1][1],
        "uss_mib": results[-1][2],
    }


def _startup_in_subprocess(which: str, cfg: BenchConfig) -> dict[str, float]:
    code = (
        "import json, sys\n"
        "from procoord._bench import startup_child\n"
        f"print(json.dumps(startup_child({which!r}, {cfg.startup_warm}, {cfg.workers}, {cfg.loop!r})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"start-up measurement of {which} failed:\n{proc.stderr}")
    data: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return data


def fig_e(cfg: BenchConfig, prof: _Profiler) -> dict[str, Any]:
    """(e) Start-up from constructor to first result, cold and warm; memory per idle worker."""
    runs: dict[str, list[dict[str, float]]] = {"procoord": [], "ppe": []}
    for _ in range(_reps(cfg, 3)):
        for which in ("procoord", "ppe"):
            runs[which].append(_startup_in_subprocess(which, cfg))
    out: dict[str, Any] = {
        "workers": cfg.workers,
        "how": (
            "each repetition in a fresh interpreter: cold = the first pool in it (the forkserver "
            "starts too), warm = the next ones; both pools use forkserver; PPE starts one process "
            "per submit, so it gets one submit per worker and the first result counts; memory is "
            "measured on idle workers 0.5 s after the first result"
        ),
    }
    for which, values in runs.items():
        out[which] = {key: _summary([v[key] for v in values]) for key in ("cold_ms", "warm_ms", "rss_mib", "uss_mib")}
    return out


# -- (g) balance quality ---------------------------------------------------------------


async def _pc_scenario(cfg: BenchConfig, name: str, tasks: list[float]) -> dict[str, Any]:
    """One balance scenario on procoord; returns makespan, ideal and the split."""
    coord = Coordinator()
    async with coord:
        if name == "slow_worker":
            await asyncio.gather(coord.add_worker("fast", Spinner(1.0)), coord.add_worker("slow", Spinner(4.0)))
        elif name == "added_worker":
            await coord.add_worker("w0", Spinner(1.0))
        else:
            await asyncio.gather(*(coord.add_worker(f"w{i}", Spinner(1.0)) for i in range(cfg.workers)))
        for i in range(200):  # sequential warm-up: the pattern that skewed early routing
            await coord.call(0.0 if i % 2 else 1e-5)
        t0 = time.perf_counter()
        handles = [await coord.run(t) for t in tasks]
        joined_s = 0.0
        if name == "added_worker":
            await asyncio.sleep(cfg.join_after_s)
            await coord.add_worker("w1", Spinner(1.0))
            joined_s = time.perf_counter() - t0
        split: dict[str, int] = {}
        for h in handles:
            _, ident = await h
            split[str(ident)] = split.get(str(ident), 0) + 1
        makespan = time.perf_counter() - t0
    return {"makespan_s": makespan, "ideal_s": _ideal(name, tasks, cfg, joined_s, split), "split": split}


def _ppe_scenario(cfg: BenchConfig, name: str, tasks: list[float]) -> dict[str, Any]:
    ctx = _ctx()
    counter = ctx.Value("i", 0)
    join_at = ctx.Value("d", 0.0)
    factors = (1.0, 4.0) if name == "slow_worker" else (1.0,)
    with _ppe(cfg.workers, initializer=_ppe_init, initargs=(counter, factors, join_at)) as ex:
        for f in [ex.submit(spin, 0.02) for _ in range(cfg.workers)]:
            f.result()
        for i in range(200):
            ex.submit(ppe_spin, 0.0 if i % 2 else 1e-5).result()
        joined_s = 0.0
        if name == "added_worker":
            # Worker 1 holds back until then: it "joins" the pool after join_after_s.
            joined_s = cfg.join_after_s
            join_at.value = time.monotonic() + joined_s
        t0 = time.perf_counter()
        futures = [ex.submit(ppe_spin, t) for t in tasks]
        split: dict[str, int] = {}
        for fut in futures:
            pid = str(fut.result())
            split[pid] = split.get(pid, 0) + 1
        makespan = time.perf_counter() - t0
    return {"makespan_s": makespan, "ideal_s": _ideal(name, tasks, cfg, joined_s, split), "split": split}


def _ideal(name: str, tasks: Sequence[float], cfg: BenchConfig, joined_s: float, split: dict[str, int]) -> float:
    work = sum(tasks)
    if name == "slow_worker":
        return work / (1.0 + 1.0 / 4.0)
    if name == "burst":
        # No-op tasks: the ideal is an even split; makespan / ideal is the busiest
        # worker's share over an even share.
        return -1.0
    if name == "added_worker":
        if work <= joined_s:
            return work
        return joined_s + (work - joined_s) / cfg.workers
    return max(work / cfg.workers, max(tasks))


def _scenario_tasks(cfg: BenchConfig, name: str) -> list[float]:
    if name == "slow_worker":
        return [0.001] * cfg.slow_tasks
    if name == "burst":
        return [0.0] * cfg.burst_tasks
    if name == "mix":
        tasks = [0.1] * cfg.mix_long + [0.001] * cfg.mix_short
        random.Random(6).shuffle(tasks)
        return tasks
    return [0.001] * cfg.join_tasks


def _quality(result: dict[str, Any], workers: int) -> float:
    if result["ideal_s"] < 0:  # burst: busiest share / even share
        counts = list(result["split"].values())
        return float(max(counts) / (sum(counts) / workers))
    return float(result["makespan_s"] / result["ideal_s"])


SCENARIOS = ("slow_worker", "burst", "mix", "added_worker")


def fig_g(cfg: BenchConfig, prof: _Profiler) -> dict[str, Any]:
    """(g) Makespan over the ideal in four scenarios, procoord next to PPE."""
    out: dict[str, Any] = {
        "how": {
            "slow_worker": (
                "1 ms spin tasks; procoord: processors Spinner(1) and Spinner(4); PPE: an initializer "
                "gives the first worker to start factor 1 and the second factor 4 (a shared counter); "
                "ideal = total work / (1 + 1/4)"
            ),
            "burst": (
                "no-op tasks issued at once after 200 sequential warm-up calls; ideal = an even split; "
                "makespan / ideal = busiest worker's task count / (tasks / workers)"
            ),
            "mix": "1 ms and 100 ms spin tasks, shuffled; ideal = max(total work / workers, longest task)",
            "added_worker": (
                "1 ms spin tasks on one worker, a second added after a delay; procoord: add_worker "
                "during the run (ideal counts from when it returned); PPE: worker 2 sleeps until "
                "the same delay before its first task; ideal = t_join + (work - t_join) / 2"
            ),
        }
    }
    for name in SCENARIOS:
        tasks = _scenario_tasks(cfg, name)
        pc: list[dict[str, Any]] = []
        ppe: list[dict[str, Any]] = []
        for _ in range(_reps(cfg, 3)):
            pc.append(prof.run(cfg, _pc_scenario(cfg, name, tasks)))
            ppe.append(_ppe_scenario(cfg, name, tasks))
        out[name] = {
            "tasks": len(tasks),
            "procoord": {
                "makespan_over_ideal": _summary([_quality(r, cfg.workers) for r in pc]),
                "makespan_s": _summary([r["makespan_s"] for r in pc]),
                "splits": [r["split"] for r in pc],
            },
            "ppe": {
                "makespan_over_ideal": _summary([_quality(r, cfg.workers) for r in ppe]),
                "makespan_s": _summary([r["makespan_s"] for r in ppe]),
                "splits": [r["split"] for r in ppe],
            },
        }
    return out


# -- the table ---------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the report: a procoord figure, its baseline and their ratio."""

    figure: str
    measure: str
    procoord: float | None
    baseline_name: str
    baseline: float | None
    ratio: float | None
    target: str = "-"
    met: bool | None = None
    spread: str = ""


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _spread(d: dict[str, Any] | None) -> str:
    if not d or d.get("median") in (None, 0) or len(d.get("samples", [])) < 2:
        return ""
    half = (d["max"] - d["min"]) / 2 / abs(d["median"])
    return f"±{half * 100:.0f}%"


def _node(results: dict[str, Any], *path: str) -> dict[str, Any] | None:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, dict) else None


def _check(value: float | None, op: str, bound: float) -> bool | None:
    if value is None:
        return None
    return value <= bound if op == "<=" else value >= bound


def build_rows(results: dict[str, Any], cores: int) -> list[Row]:
    """Turn the figures into report rows, with the issue's targets."""
    rows: list[Row] = []
    a = results.get("a")
    if a:
        pc50, ppe50, raw50 = _med(a, "procoord", "p50_us"), _med(a, "ppe", "p50_us"), _med(a, "raw_echo", "p50_us")
        r = _ratio(pc50, ppe50)
        rows.append(Row("a", "round trip p50 (us)", pc50, "PPE", ppe50, r, "<= 0.45", _check(r, "<=", 0.45)))
        r = _ratio(pc50, raw50)
        rows.append(Row("a", "p50 vs raw echo (us)", pc50, "raw echo", raw50, r, "<= 1.6", _check(r, "<=", 1.6)))
        pinned50 = _med(a, "raw_echo_cross_cpu", "p50_us")
        rows.append(Row("a", "p50 vs cross-CPU echo (us)", pc50, "pinned echo", pinned50, _ratio(pc50, pinned50)))
        pc99, ppe99 = _med(a, "procoord", "p99_us"), _med(a, "ppe", "p99_us")
        rows.append(Row("a", "round trip p99 (us)", pc99, "PPE", ppe99, _ratio(pc99, ppe99)))
        rows[-4].spread = _spread(_node(a, "procoord", "p50_us"))
        rows[-1].spread = _spread(_node(a, "procoord", "p99_us"))
    b = results.get("b")
    if b:
        pc, ppe = _med(b, "procoord_run", "tasks_per_s"), _med(b, "ppe_submit", "tasks_per_s")
        r = _ratio(pc, ppe)
        rows.append(
            Row(
                "b", "run per task (tasks/s)", pc, "PPE submit", ppe, r, ">= 8", _check(r, ">=", 8),
                _spread(_node(b, "procoord_run", "tasks_per_s")),
            )
        )  # fmt: skip
        if "procoord_map" in b:
            pc, ppe = _med(b, "procoord_map", "tasks_per_s"), _med(b, "ppe_map", "tasks_per_s")
            r = _ratio(pc, ppe)
            name = "coord.map" if b["procoord_map"]["how"] == "coord.map" else "windowed run"
            rows.append(
                Row(
                    "b", f"{name} (tasks/s)", pc, f"PPE map cs={b['ppe_map']['best_chunksize']}", ppe, r,
                    ">= 0.5", _check(r, ">=", 0.5), _spread(_node(b, "procoord_map", "tasks_per_s")),
                )
            )  # fmt: skip
    c = results.get("c")
    if c:
        pc, ppe = _med(c, "procoord", "speedup"), _med(c, "ppe", "speedup")
        r = _ratio(pc, float(cores))
        spread = _spread(_node(c, "procoord", "speedup"))
        rows.append(Row("c", "CPU speedup", pc, "cores", float(cores), r, ">= 0.97", _check(r, ">=", 0.97), spread))
        rows.append(Row("c", "CPU speedup vs PPE", pc, "PPE", ppe, _ratio(pc, ppe)))
    d = results.get("d")
    if d:
        pc, ppe = _med(d, "1mib", "procoord", "mb_per_s"), _med(d, "1mib", "ppe", "mb_per_s")
        r = _ratio(pc, ppe)
        spread = _spread(_node(d, "1mib", "procoord", "mb_per_s"))
        rows.append(Row("d", "1 MiB echo (MB/s)", pc, "PPE", ppe, r, ">= 2", _check(r, ">=", 2.0), spread))
        if "skipped" in d.get("64mib", {}):
            rows.append(Row("d", "64 MiB numpy echo", None, "skipped", None, None, "-", None, "no numpy"))
        else:
            pc, ppe = _med(d, "64mib", "procoord", "mb_per_s"), _med(d, "64mib", "ppe", "mb_per_s")
            rows.append(Row("d", "64 MiB numpy echo (MB/s)", pc, "PPE", ppe, _ratio(pc, ppe)))
    e = results.get("e")
    if e:
        pc, ppe = _med(e, "procoord", "cold_ms"), _med(e, "ppe", "cold_ms")
        rows.append(
            Row("e", "cold start (ms)", pc, "PPE", ppe, _ratio(pc, ppe), spread=_spread(e["procoord"]["cold_ms"]))
        )
        pc, ppe = _med(e, "procoord", "warm_ms"), _med(e, "ppe", "warm_ms")
        rows.append(
            Row(
                "e", "warm start (ms)", pc, "PPE", ppe, _ratio(pc, ppe), "< 50 ms", _check(pc, "<=", 50.0),
                _spread(e["procoord"]["warm_ms"]),
            )
        )  # fmt: skip
        pc, ppe = _med(e, "procoord", "uss_mib"), _med(e, "ppe", "uss_mib")
        rows.append(
            Row("e", "USS per idle worker (MiB)", pc, "PPE", ppe, _ratio(pc, ppe), "< 12 MiB", _check(pc, "<=", 12.0))
        )
        pc, ppe = _med(e, "procoord", "rss_mib"), _med(e, "ppe", "rss_mib")
        rows.append(Row("e", "RSS per idle worker (MiB)", pc, "PPE", ppe, _ratio(pc, ppe)))
    f = results.get("f")
    if f:
        pc, ppe = _med(f, "procoord_run"), _med(f, "ppe_submit")
        rows.append(
            Row(
                "f",
                "parent CPU us/task, run",
                pc,
                "PPE submit",
                ppe,
                _ratio(pc, ppe),
                spread=_spread(f["procoord_run"]),
            )
        )
        if "procoord_map" in f:
            pc, ppe = _med(f, "procoord_map"), _med(f, "ppe_map")
            rows.append(Row("f", "parent CPU us/task, map", pc, "PPE map", ppe, _ratio(pc, ppe)))
    g = results.get("g")
    if g:
        for name in SCENARIOS:
            if name not in g:
                continue
            pc, ppe = _med(g, name, "procoord", "makespan_over_ideal"), _med(g, name, "ppe", "makespan_over_ideal")
            met = None if pc is None or ppe is None else (pc <= 1.15 and pc <= ppe)
            rows.append(
                Row(
                    "g", f"makespan/ideal, {name.replace('_', ' ')}", pc, "PPE", ppe, _ratio(pc, ppe),
                    "<= 1.15, <= PPE", met, _spread(_node(g, name, "procoord", "makespan_over_ideal")),
                )
            )  # fmt: skip
    return rows


def _fmt(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned text table (markdown-compatible)."""
    headers = ("fig", "measure", "procoord", "spread", "baseline", "value", "ratio", "target", "status")
    cells = [
        (
            row.figure,
            row.measure,
            _fmt(row.procoord),
            row.spread,
            row.baseline_name,
            _fmt(row.baseline),
            "-" if row.ratio is None else f"{row.ratio:.2f}",
            row.target,
            "" if row.met is None else ("met" if row.met else "NOT met"),
        )
        for row in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = {2, 5, 6}

    def line(values: Sequence[str]) -> str:
        parts = (
            v.rjust(w) if i in numeric else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )
        return "| " + " | ".join(parts) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(c) for c in cells)
    return "\n".join(out)


# -- running ---------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
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


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure the selected figures; return the whole report as a JSON-ready dict."""
    prof = _Profiler(cfg.profile)
    figures: dict[str, Any] = {}
    started = time.perf_counter()
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("a", lambda: fig_a(cfg, prof)),
        ("b", lambda: fig_b(cfg, prof, with_map=True)),
        ("c", lambda: fig_c(cfg, prof)),
        ("d", lambda: fig_d(cfg, prof)),
        ("e", lambda: fig_e(cfg, prof)),
        ("g", lambda: fig_g(cfg, prof)),
    ]
    for name, step in steps:
        if name == "b" and "b" not in cfg.only and "f" in cfg.only:
            log("measuring (f) through (b)'s one-run-per-task and map runs ...")
            figures["b"] = step()
            continue
        if name not in cfg.only:
            continue
        log(f"measuring ({name}) ...")
        t0 = time.perf_counter()
        figures[name] = step()
        log(f"  ({name}) took {time.perf_counter() - t0:.1f} s")
    if "f" in cfg.only and "b" in figures:
        b = figures["b"]
        figures["f"] = {
            "how": "time.process_time() of the parent (all its threads) over the (b) runs, per task",
            "procoord_run": b["procoord_run"]["parent_cpu_us_per_task"],
            "ppe_submit": b["ppe_submit"]["parent_cpu_us_per_task"],
        }
        if "procoord_map" in b:
            figures["f"]["procoord_map"] = b["procoord_map"]["parent_cpu_us_per_task"]
            figures["f"]["ppe_map"] = b["ppe_map"]["parent_cpu_us_per_task"]
        if "b" not in cfg.only:
            del figures["b"]
    prof.save()
    rows = build_rows(figures, cfg.cores)
    return {
        "meta": {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017 - py3.11 both work
            "machine": _machine(),
            "procoord_loop": cfg.loop,
            "start_method": _ctx().get_start_method(),
            "quick": cfg.quick,
            "reps": cfg.reps if not cfg.quick else 1,
            "workers": cfg.workers,
            "seconds": round(time.perf_counter() - started, 1),
            "has_coordinator_map": hasattr(Coordinator, "map"),
        },
        "figures": figures,
        "table": [row.__dict__ for row in rows],
    }


def _parse(argv: Sequence[str] | None) -> BenchConfig:
    parser = argparse.ArgumentParser(
        prog="python -m procoord bench",
        description="Benchmark procoord against concurrent.futures.ProcessPoolExecutor.",
    )
    parser.add_argument("--quick", action="store_true", help="few repetitions and small sizes: a smoke run")
    parser.add_argument("--only", default=",".join(FIGURES), help="figures to measure, e.g. a,b (default: all)")
    parser.add_argument("--json", default="bench-results.json", metavar="PATH", help="where to write the results")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per figure (default 5 for a/d, 3 others)")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="the parent's event loop")
    parser.add_argument("--profile", metavar="PATH", help="cProfile the parent during procoord runs, to PATH")
    args = parser.parse_args(argv)
    only = tuple(x.strip().lower() for x in args.only.split(",") if x.strip())
    unknown = [x for x in only if x not in FIGURES]
    if unknown or not only:
        parser.error(f"--only takes figures among {','.join(FIGURES)}, not {args.only!r}")
    cfg = BenchConfig.quick_config() if args.quick else BenchConfig()
    cfg.only = only
    cfg.json_path = args.json
    cfg.loop = args.loop
    cfg.profile = args.profile
    if args.reps is not None:
        if args.reps < 1:
            parser.error("--reps must be >= 1")
        cfg.reps = args.reps
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    cfg = _parse(list(argv) if argv is not None else None)
    report = run_bench(cfg, log=lambda text: print(text, file=sys.stderr, flush=True))
    meta = report["meta"]
    machine = meta["machine"]
    print(
        f"procoord bench {meta['date']}  {machine['cpu']}, {machine['cores']} cores, "
        f"Python {machine['python']}, parent loop {meta['procoord_loop']}, start method "
        f"{meta['start_method']}, {'quick' if cfg.quick else 'full'} run, {meta['seconds']} s"
    )
    print("medians over repetitions; ratio = procoord / baseline; spread = half the range of procoord's repetitions")
    print(format_table([Row(**r) for r in report["table"]]))
    figures = report["figures"]
    if "b" in figures and "procoord_map" in figures["b"]:
        print(f"(b) procoord map path: {figures['b']['procoord_map']['how']}")
    if "g" in figures:
        for name in SCENARIOS:
            if name in figures["g"]:
                node = figures["g"][name]
                print(f"(g) {name}: procoord splits {node['procoord']['splits']}; PPE splits {node['ppe']['splits']}")
    with open(cfg.json_path, "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=2)
        fh.write("\n")
    print(f"results written to {cfg.json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
