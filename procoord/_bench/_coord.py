"""procoord's side of a comparison, through the public API only: a coordinator with
its workers started and warmed up, and the pids of its workers."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

from procoord import Coordinator
from procoord.processor import ProcessorLike

__all__ = ("coordinator", "worker_pids")

WARM_CALLS = 200


async def coordinator(processor: ProcessorLike, workers: int, *, warm: int = WARM_CALLS) -> Coordinator:
    """A Coordinator with ``workers`` workers running ``processor`` (idents ``w0``,
    ``w1``...), after ``warm`` sequential calls."""
    coord = Coordinator()
    await asyncio.gather(*(coord.add_worker(f"w{i}", processor) for i in range(workers)))
    for i in range(warm):
        await coord.call(i)
    return coord


async def worker_pids(coord: Coordinator) -> dict[Hashable, int]:
    """The pid of each worker, from ``stats()``."""
    return {ident: s.pid for ident, s in (await coord.stats()).items() if s.pid is not None}
