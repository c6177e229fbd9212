"""(b) Throughput of no-op tasks issued at once, and the parent's CPU time per task:
procoord's spellings (``run_nowait``, ``await run``, ``gather`` of ``call``, ``map``)
against the minimal pool, ``ProcessPoolExecutor`` (``submit``; ``map`` at its best
chunksize) and ``multiprocessing.Pool`` (``apply_async``; ``map`` at its best)."""

from __future__ import annotations

import asyncio
import functools
import gc
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from procoord import Coordinator

from .._config import BenchConfig
from .._coord import coordinator
from .._harness import Profiler, median_of, run_async, summary
from .._minimal import MinimalPool
from .._report import Row, Scenario, spread
from .._stdlib import mp_pool, pool_warm, ppe, ppe_warm
from .._tasks import noop

__all__ = ("SCENARIO",)

# Chunksizes tried for the stdlib's map; the best one of each pool is its figure.
CHUNKSIZES = (10, 100, 1000, 2500)

Rate = tuple[float, float]
"""(tasks per second, parent CPU microseconds per task)"""


def _drain_map(mapper: Callable[..., Iterable[Any]], n: int, chunksize: int) -> None:
    for _ in mapper(noop, range(n), chunksize=chunksize):
        pass


def _timed(n: int, run: Callable[[], None]) -> Rate:
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    run()
    t1, c1 = time.perf_counter(), time.process_time()
    return n / (t1 - t0), (c1 - c0) / n * 1e6


async def _atimed(n: int, run: Callable[[], Awaitable[None]]) -> Rate:
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    await run()
    t1, c1 = time.perf_counter(), time.process_time()
    return n / (t1 - t0), (c1 - c0) / n * 1e6


async def _procoord(cfg: BenchConfig, spelling: str) -> Rate:
    n = cfg.burst_tasks
    async with await coordinator(noop, cfg.workers) as coord:
        return await _atimed(n, lambda: SPELLINGS[spelling](coord, n))


async def _run_nowait(coord: Coordinator, n: int) -> None:
    for h in [coord.run_nowait(i) for i in range(n)]:
        await h


async def _run(coord: Coordinator, n: int) -> None:
    for h in [await coord.run(i) for i in range(n)]:
        await h


async def _gather(coord: Coordinator, n: int) -> None:
    await asyncio.gather(*(coord.call(i) for i in range(n)))


async def _map(coord: Coordinator, n: int) -> None:
    async for _ in coord.map(range(n)):
        pass


SPELLINGS: dict[str, Callable[[Coordinator, int], Awaitable[None]]] = {
    "run_nowait": _run_nowait,
    "run": _run,
    "gather_call": _gather,
    "map": _map,
}


async def _minimal(cfg: BenchConfig) -> dict[str, Rate]:
    """The minimal pool's burst spelled as procoord's are: its futures awaited one after
    another (as run_nowait's handles), and gathered (as a gather of call)."""
    n = cfg.burst_tasks
    pool = await MinimalPool.start(noop, cfg.workers)
    try:
        for i in range(200):
            await pool.submit(i)

        async def one_by_one() -> None:
            for future in [pool.submit(i) for i in range(n)]:
                await future

        async def gathered() -> None:
            await asyncio.gather(*(pool.submit(i) for i in range(n)))

        return {"awaited": await _atimed(n, one_by_one), "gather": await _atimed(n, gathered)}
    finally:
        await pool.close()


def _ppe(cfg: BenchConfig) -> dict[str, Rate]:
    n = cfg.burst_tasks
    out: dict[str, Rate] = {}
    with ppe(cfg.workers) as ex:
        ppe_warm(ex, cfg.workers)

        def submit() -> None:
            for f in [ex.submit(noop, i) for i in range(n)]:
                f.result()

        out["submit"] = _timed(n, submit)
        for c in CHUNKSIZES:
            out[f"map{c}"] = _timed(n, functools.partial(_drain_map, ex.map, n, c))
    return out


def _pool(cfg: BenchConfig) -> dict[str, Rate]:
    n = cfg.burst_tasks
    out: dict[str, Rate] = {}
    with mp_pool(cfg.workers) as pool:
        pool_warm(pool, cfg.workers)

        def apply() -> None:
            for r in [pool.apply_async(noop, (i,)) for i in range(n)]:
                r.get()

        out["apply_async"] = _timed(n, apply)
        for c in CHUNKSIZES:
            out[f"map{c}"] = _timed(n, functools.partial(_drain_map, pool.map, n, c))
    return out


def _best_map(reps: list[dict[str, Rate]]) -> dict[str, Any]:
    """The chunksize whose median rate is highest, and its figures."""
    by_chunk = {c: [r[f"map{c}"] for r in reps] for c in CHUNKSIZES}
    best = max(CHUNKSIZES, key=lambda c: summary(x for x, _ in by_chunk[c])["median"] or 0.0)
    return {"chunksize": best} | _rates(by_chunk[best])


def _rates(values: list[Rate]) -> dict[str, Any]:
    return {"tasks_per_s": summary(r for r, _ in values), "parent_cpu_us": summary(c for _, c in values)}


def measure(cfg: BenchConfig, prof: Profiler) -> dict[str, Any]:
    """Each repetition: every procoord spelling, the minimal pool, PPE, Pool."""
    pc: dict[str, list[Rate]] = {s: [] for s in SPELLINGS}
    minimal: list[dict[str, Rate]] = []
    ppes: list[dict[str, Rate]] = []
    pools: list[dict[str, Rate]] = []
    for _ in range(cfg.reps_up_to(3)):
        for spelling in SPELLINGS:
            pc[spelling].append(prof.run(cfg, _procoord(cfg, spelling)))
        minimal.append(run_async(cfg, _minimal(cfg)))
        ppes.append(_ppe(cfg))
        pools.append(_pool(cfg))
    return {
        "tasks": cfg.burst_tasks,
        "how": "no-op tasks issued at once after 200 warm-up calls; parent CPU = time.process_time() per task",
        "procoord": {s: _rates(v) for s, v in pc.items()},
        "minimal": {spelling: _rates([r[spelling] for r in minimal]) for spelling in ("awaited", "gather")},
        "ppe": {"submit": _rates([r["submit"] for r in ppes]), "map": _best_map(ppes)},
        "pool": {"apply_async": _rates([r["apply_async"] for r in pools]), "map": _best_map(pools)},
    }


def rows(fig: dict[str, Any], cfg: BenchConfig) -> list[Row]:
    """Rates per spelling against the comparisons, then the parent's CPU per task."""
    pc, ppe_, pool = fig["procoord"], fig["ppe"], fig["pool"]
    nowait = median_of(pc["run_nowait"]["tasks_per_s"])
    out = [
        Row(
            "b", "no-op burst, run_nowait (tasks/s)", nowait, spread(pc["run_nowait"]["tasks_per_s"]),
            minimal=median_of(fig["minimal"]["awaited"]["tasks_per_s"]), ppe=median_of(ppe_["submit"]["tasks_per_s"]),
            pool=median_of(pool["apply_async"]["tasks_per_s"]),
        ),
    ]  # fmt: skip
    for spelling, name, minimal in (("run", "await run", None), ("gather_call", "gather(call)", "gather")):
        rate = pc[spelling]["tasks_per_s"]
        out.append(
            Row(
                "b", f"no-op burst, {name} (tasks/s)", median_of(rate), spread(rate),
                minimal=None if minimal is None else median_of(fig["minimal"][minimal]["tasks_per_s"]),
                other=("run_nowait", nowait),
            )
        )  # fmt: skip
    out.append(
        Row(
            "b", "no-op map (tasks/s)", median_of(pc["map"]["tasks_per_s"]), spread(pc["map"]["tasks_per_s"]),
            ppe=median_of(ppe_["map"]["tasks_per_s"]), pool=median_of(pool["map"]["tasks_per_s"]),
        )
    )  # fmt: skip
    out.append(
        Row(
            "b", "parent CPU per task, run_nowait (us)", median_of(pc["run_nowait"]["parent_cpu_us"]),
            minimal=median_of(fig["minimal"]["awaited"]["parent_cpu_us"]),
            ppe=median_of(ppe_["submit"]["parent_cpu_us"]),
            pool=median_of(pool["apply_async"]["parent_cpu_us"]),
        )
    )  # fmt: skip
    out.append(
        Row(
            "b", "parent CPU per task, map (us)", median_of(pc["map"]["parent_cpu_us"]),
            ppe=median_of(ppe_["map"]["parent_cpu_us"]), pool=median_of(pool["map"]["parent_cpu_us"]),
        )
    )  # fmt: skip
    return out


SCENARIO = Scenario("b", "throughput", "no-op tasks issued at once; the parent's CPU per task", measure, rows)
