"""(h) The cost of recycling: no-op tasks issued at once (a gather of ``call``) on workers
recycled every 100 tasks (``max_tasks_per_worker=100``) against the same without
recycling, next to ``Pool(maxtasksperchild=100)``'s ``apply_async``. (A ``map`` of cheap
items would not show it: its chunks hold thousands of items.) ``ProcessPoolExecutor(max_tasks_per_child=...)`` is left
out: on Python 3.11 it can hang for good when a worker is replaced under load."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from procoord import Coordinator

from .._config import BenchConfig
from .._harness import Profiler, median_of, summary
from .._report import Row, Scenario, spread
from .._stdlib import mp_pool, pool_warm
from .._tasks import noop

__all__ = ("SCENARIO",)

MAX_TASKS = 100
WARM_CALLS = 200


async def _procoord(cfg: BenchConfig, max_tasks: int | None) -> tuple[float, int]:
    async with Coordinator(max_tasks_per_worker=max_tasks) as coord:
        await asyncio.gather(*(coord.add_worker(f"w{i}", noop) for i in range(cfg.workers)))
        for i in range(WARM_CALLS):
            await coord.call(i)
        before = sum(s.recycles for s in (await coord.stats()).values())
        t0 = time.perf_counter()
        await asyncio.gather(*(coord.call(i) for i in range(cfg.recycle_tasks)))
        rate = cfg.recycle_tasks / (time.perf_counter() - t0)
        recycles = sum(s.recycles for s in (await coord.stats()).values()) - before
        return rate, recycles


def _pool(cfg: BenchConfig) -> float:
    with mp_pool(cfg.workers, maxtasksperchild=MAX_TASKS) as pool:
        pool_warm(pool, cfg.workers)
        t0 = time.perf_counter()
        for r in [pool.apply_async(noop, (i,)) for i in range(cfg.recycle_tasks)]:
            r.get()
        return cfg.recycle_tasks / (time.perf_counter() - t0)


def measure(cfg: BenchConfig, prof: Profiler) -> dict[str, Any]:
    """Each repetition: procoord with and without recycling, then Pool."""
    recycled: list[tuple[float, int]] = []
    plain: list[float] = []
    pools: list[float] = []
    for _ in range(cfg.reps_up_to(3)):
        recycled.append(prof.run(cfg, _procoord(cfg, MAX_TASKS)))
        plain.append(prof.run(cfg, _procoord(cfg, None))[0])
        pools.append(_pool(cfg))
    return {
        "tasks": cfg.recycle_tasks,
        "max_tasks": MAX_TASKS,
        "how": "no-op tasks issued at once, a gather of call (procoord) or apply_async (Pool), after 200 warm-ups; "
        "procoord's old process goes on while its replacement starts, so it may run more than max_tasks",
        "procoord": {
            "tasks_per_s": summary(r for r, _ in recycled),
            "recycles": summary(float(n) for _, n in recycled),
        },
        "procoord_plain": {"tasks_per_s": summary(plain)},
        "pool": {"tasks_per_s": summary(pools)},
    }


def rows(fig: dict[str, Any], cfg: BenchConfig) -> list[Row]:
    """The recycled rate against the plain one and the stdlib's recycling Pool."""
    pc = fig["procoord"]
    label = f"{fig['tasks']} no-op calls, recycled every {fig['max_tasks']} (tasks/s)"
    return [
        Row(
            "h", label, median_of(pc["tasks_per_s"]), spread(pc["tasks_per_s"]),
            pool=median_of(fig["pool"]["tasks_per_s"]),
            other=("no recycling", median_of(fig["procoord_plain"]["tasks_per_s"])),
        ),
        Row("h", f"recycles during those calls (max_tasks={fig['max_tasks']})", median_of(pc["recycles"])),
    ]  # fmt: skip


SCENARIO = Scenario("h", "recycle", "the cost of recycling workers every 100 tasks", measure, rows)
