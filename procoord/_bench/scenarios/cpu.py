"""(c) CPU-bound scaling: pure-Python tasks on one worker per core, as a speedup over
the same work done serially in the parent, next to the stdlib's pools."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .._config import BenchConfig
from .._coord import coordinator
from .._harness import Profiler, median_of, summary
from .._report import Row, Scenario, spread
from .._stdlib import mp_pool, pool_warm, ppe, ppe_warm
from .._tasks import cpu_work

__all__ = ("SCENARIO",)


def _calibrate(seconds: float) -> int:
    """Loop turns of ``cpu_work`` that take about ``seconds`` here (best of a few)."""
    probe = 50_000
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        cpu_work(probe)
        best = min(best, time.perf_counter() - t0)
    return max(1000, int(probe * seconds / best))


async def _procoord(cfg: BenchConfig, n: int) -> float:
    async with await coordinator(cpu_work, cfg.cores, warm=0) as coord:
        await asyncio.gather(*[coord.run_nowait(1000) for _ in range(cfg.cores * 4)])
        t0 = time.perf_counter()
        for h in [coord.run_nowait(n) for _ in range(cfg.cpu_tasks)]:
            await h
        return time.perf_counter() - t0


def _ppe(cfg: BenchConfig, n: int) -> float:
    with ppe(cfg.cores) as ex:
        ppe_warm(ex, cfg.cores)
        t0 = time.perf_counter()
        for f in [ex.submit(cpu_work, n) for _ in range(cfg.cpu_tasks)]:
            f.result()
        return time.perf_counter() - t0


def _pool(cfg: BenchConfig, n: int) -> float:
    with mp_pool(cfg.cores) as pool:
        pool_warm(pool, cfg.cores)
        t0 = time.perf_counter()
        for r in [pool.apply_async(cpu_work, (n,)) for _ in range(cfg.cpu_tasks)]:
            r.get()
        return time.perf_counter() - t0


def _serial(cfg: BenchConfig, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(cfg.cpu_tasks):
        cpu_work(n)
    return time.perf_counter() - t0


def measure(cfg: BenchConfig, prof: Profiler) -> dict[str, Any]:
    """Each repetition: the serial time, then each pool's speedup over it."""
    n = _calibrate(cfg.cpu_task_s)
    serial, pc, ppes, pools = [], [], [], []
    for _ in range(cfg.reps_up_to(3)):
        s = _serial(cfg, n)
        serial.append(s)
        pc.append(s / prof.run(cfg, _procoord(cfg, n)))
        ppes.append(s / _ppe(cfg, n))
        pools.append(s / _pool(cfg, n))
    return {
        "tasks": cfg.cpu_tasks,
        "loop_turns": n,
        "cores": cfg.cores,
        "how": "serial time of each repetition divided by the pool's time in the same repetition",
        "serial_s": summary(serial),
        "procoord": {"speedup": summary(pc)},
        "ppe": {"speedup": summary(ppes)},
        "pool": {"speedup": summary(pools)},
    }


def rows(fig: dict[str, Any], cfg: BenchConfig) -> list[Row]:
    """The speedup against the stdlib's pools and the number of cores."""
    return [
        Row(
            "c", f"{fig['tasks']} x {cfg.cpu_task_s * 1000:g} ms CPU tasks, speedup over serial",
            median_of(fig["procoord"]["speedup"]), spread(fig["procoord"]["speedup"]),
            ppe=median_of(fig["ppe"]["speedup"]), pool=median_of(fig["pool"]["speedup"]),
            other=("cores", float(fig["cores"])),
        )
    ]  # fmt: skip


SCENARIO = Scenario("c", "cpu", "CPU-bound tasks on one worker per core", measure, rows)
