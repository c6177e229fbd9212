"""The stdlib's pools as comparisons: ``ProcessPoolExecutor`` on forkserver (the start
method procoord's workers used when these comparisons were set up, and the safe one on
Linux) and ``multiprocessing.Pool`` on fork (the fastest to start and to feed)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.pool import Pool
from typing import Any

from ._tasks import noop, spin

__all__ = ("forkserver", "mp_pool", "pool_warm", "ppe", "ppe_warm")


def forkserver() -> Any:
    """The forkserver context (spawn where there is none)."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def ppe(workers: int, **kwargs: Any) -> ProcessPoolExecutor:
    """A ProcessPoolExecutor of ``workers`` processes on forkserver."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=forkserver(), **kwargs)


def ppe_warm(ex: ProcessPoolExecutor, workers: int) -> None:
    """Start every worker of a pool (it starts them one per submit) and warm them up."""
    for f in [ex.submit(spin, 0.02) for _ in range(workers)]:
        f.result()
    for f in [ex.submit(noop, i) for i in range(200)]:
        f.result()


def mp_pool(workers: int, **kwargs: Any) -> Pool:
    """A multiprocessing.Pool of ``workers`` processes on fork (forkserver where fork
    is missing)."""
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork") if "fork" in methods else forkserver()
    return ctx.Pool(workers, **kwargs)


def pool_warm(pool: Pool, workers: int) -> None:
    """Run a task on every worker of a Pool and warm them up."""
    pool.map(spin, [0.02] * workers, chunksize=1)
    for r in [pool.apply_async(noop, (i,)) for i in range(200)]:
        r.get()
