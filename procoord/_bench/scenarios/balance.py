"""(g) Balance quality: makespan over the ideal in four scenarios (a slow worker, a
burst, long and short tasks mixed, a worker added mid-run), procoord next to PPE."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

from procoord import Coordinator

from .._config import BenchConfig
from .._harness import Profiler, median_of, summary
from .._report import Row, Scenario, spread
from .._stdlib import forkserver, ppe
from .._tasks import Spinner, ppe_init, ppe_spin, spin

__all__ = ("SCENARIO",)

CASES = {
    "slow_worker": (
        "1 ms spin tasks; procoord: processors Spinner(1) and Spinner(4); PPE: an initializer gives the "
        "first worker to start factor 1 and the second factor 4; ideal = total work / (1 + 1/4)"
    ),
    "burst": (
        "no-op tasks issued at once after 200 sequential warm-up calls; makespan / ideal = busiest "
        "worker's task count / (tasks / workers)"
    ),
    "mix": "1 ms and 100 ms spin tasks, shuffled; ideal = max(total work / workers, longest task)",
    "added_worker": (
        "1 ms spin tasks on one worker, a second added after a delay; procoord: add_worker during the run "
        "(ideal counts from when it returned); PPE: worker 2 sleeps until the same delay before its first "
        "task; ideal = t_join + (work - t_join) / 2"
    ),
}


async def _procoord(cfg: BenchConfig, name: str, tasks: list[float]) -> dict[str, Any]:
    async with Coordinator() as coord:
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
    return {"makespan_s": makespan, "ideal_s": _ideal(name, tasks, cfg, joined_s), "split": split}


def _ppe(cfg: BenchConfig, name: str, tasks: list[float]) -> dict[str, Any]:
    ctx = forkserver()
    counter = ctx.Value("i", 0)
    join_at = ctx.Value("d", 0.0)
    factors = (1.0, 4.0) if name == "slow_worker" else (1.0,)
    with ppe(cfg.workers, initializer=ppe_init, initargs=(counter, factors, join_at)) as ex:
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
    return {"makespan_s": makespan, "ideal_s": _ideal(name, tasks, cfg, joined_s), "split": split}


def _ideal(name: str, tasks: Sequence[float], cfg: BenchConfig, joined_s: float) -> float:
    work = sum(tasks)
    if name == "slow_worker":
        return work / (1.0 + 1.0 / 4.0)
    if name == "burst":
        return -1.0  # no-op tasks: the quality is the split's evenness (see _quality)
    if name == "added_worker":
        if work <= joined_s:
            return work
        return joined_s + (work - joined_s) / cfg.workers
    return max(work / cfg.workers, max(tasks))


def _tasks(cfg: BenchConfig, name: str) -> list[float]:
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


def measure(cfg: BenchConfig, prof: Profiler) -> dict[str, Any]:
    """Each case, each repetition: procoord then PPE."""
    out: dict[str, Any] = {"how": CASES}
    for name in CASES:
        tasks = _tasks(cfg, name)
        pc: list[dict[str, Any]] = []
        ppes: list[dict[str, Any]] = []
        for _ in range(cfg.reps_up_to(3)):
            pc.append(prof.run(cfg, _procoord(cfg, name, tasks)))
            ppes.append(_ppe(cfg, name, tasks))
        out[name] = {
            "tasks": len(tasks),
            "procoord": {
                "makespan_over_ideal": summary(_quality(r, cfg.workers) for r in pc),
                "splits": [r["split"] for r in pc],
            },
            "ppe": {
                "makespan_over_ideal": summary(_quality(r, cfg.workers) for r in ppes),
                "splits": [r["split"] for r in ppes],
            },
        }
    return out


def rows(fig: dict[str, Any], cfg: BenchConfig) -> list[Row]:
    """Makespan over the ideal, one row per case."""
    out = []
    for name in CASES:
        pc, ppe_ = fig[name]["procoord"]["makespan_over_ideal"], fig[name]["ppe"]["makespan_over_ideal"]
        label = f"makespan / ideal, {name.replace('_', ' ')}"
        out.append(Row("g", label, median_of(pc), spread(pc), ppe=median_of(ppe_)))
    return out


SCENARIO = Scenario("g", "balance", "makespan over the ideal in four cases", measure, rows)
