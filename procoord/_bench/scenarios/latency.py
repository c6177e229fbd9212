"""(a) Sequential round trip of a no-op task: procoord's ``call`` against the minimal
pool, ``ProcessPoolExecutor``, ``multiprocessing.Pool`` and a raw blocking echo over a
socketpair between two plain Python processes (the pipe's own limit)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Any

from .._config import BenchConfig
from .._coord import coordinator
from .._harness import Profiler, latency_summary, median_of, run_async
from .._minimal import MinimalPool
from .._report import Row, Scenario, spread
from .._stdlib import mp_pool, pool_warm, ppe, ppe_warm
from .._tasks import noop

__all__ = ("SCENARIO",)

# One raw-echo message: about a task frame's header plus a small pickle.
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


async def _procoord(cfg: BenchConfig) -> list[float]:
    async with await coordinator(noop, cfg.workers) as coord:
        out: list[float] = []
        clock = time.perf_counter_ns
        for i in range(cfg.latency_calls):
            t0 = clock()
            await coord.call(i)
            out.append((clock() - t0) / 1000)
        return out


async def _minimal(cfg: BenchConfig) -> list[float]:
    pool = await MinimalPool.start(noop, cfg.workers)
    try:
        for i in range(200):
            await pool.submit(i)
        out: list[float] = []
        clock = time.perf_counter_ns
        for i in range(cfg.latency_calls):
            t0 = clock()
            await pool.submit(i)
            out.append((clock() - t0) / 1000)
        return out
    finally:
        await pool.close()


def _ppe(cfg: BenchConfig) -> list[float]:
    with ppe(cfg.workers) as ex:
        ppe_warm(ex, cfg.workers)
        out: list[float] = []
        clock = time.perf_counter_ns
        for i in range(cfg.latency_calls):
            t0 = clock()
            ex.submit(noop, i).result()
            out.append((clock() - t0) / 1000)
        return out


def _pool(cfg: BenchConfig) -> list[float]:
    with mp_pool(cfg.workers) as pool:
        pool_warm(pool, cfg.workers)
        out: list[float] = []
        clock = time.perf_counter_ns
        for i in range(cfg.latency_calls):
            t0 = clock()
            pool.apply(noop, (i,))
            out.append((clock() - t0) / 1000)
        return out


def _raw(cfg: BenchConfig, pinned: bool = False) -> list[float]:
    """Blocking echo over a socketpair to a plain Python process; ``pinned`` puts the
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


def measure(cfg: BenchConfig, prof: Profiler) -> dict[str, Any]:
    """Each repetition: procoord, the minimal pool, PPE, Pool, the raw echoes."""
    runs: dict[str, list[list[float]]] = {k: [] for k in ("procoord", "minimal", "ppe", "pool", "raw", "pinned")}
    for _ in range(cfg.reps_up_to(5)):
        runs["procoord"].append(prof.run(cfg, _procoord(cfg)))
        runs["minimal"].append(run_async(cfg, _minimal(cfg)))
        runs["ppe"].append(_ppe(cfg))
        runs["pool"].append(_pool(cfg))
        runs["raw"].append(_raw(cfg))
        runs["pinned"].append(_raw(cfg, pinned=True))
    return {
        "calls": cfg.latency_calls,
        "how": {
            "procoord": "await coord.call(i), one at a time, 2 workers",
            "minimal": "await pool.submit(i) on the minimal pool",
            "ppe": "ex.submit(noop, i).result(), blocking, outside any event loop",
            "pool": "pool.apply(noop, (i,)), blocking",
            "raw": f"blocking {RAW_MESSAGE}-byte echo over a socketpair",
            "pinned": "the same, parent and echo pinned to different CPUs",
        },
    } | {name: latency_summary(samples) for name, samples in runs.items()}


def rows(fig: dict[str, Any], cfg: BenchConfig) -> list[Row]:
    """p50 against every comparison and the raw echo; p99; p50 against the pinned echo."""

    def med(side: str, q: str) -> float | None:
        return median_of(fig[side][q])

    out = []
    for q in ("p50_us", "p99_us"):
        out.append(
            Row(
                "a", f"no-op round trip {q[:3]} (us)", med("procoord", q), spread(fig["procoord"][q]),
                minimal=med("minimal", q), ppe=med("ppe", q), pool=med("pool", q), other=("raw echo", med("raw", q)),
            )
        )  # fmt: skip
    out.append(
        Row(
            "a",
            "no-op round trip p50, vs cross-CPU echo (us)",
            med("procoord", "p50_us"),
            other=("cross-CPU echo", med("pinned", "p50_us")),
        )
    )
    return out


SCENARIO = Scenario("a", "latency", "sequential round trip of a no-op task", measure, rows)
