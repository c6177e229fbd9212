"""Recycling a worker: a fresh process with the same ident and processor spec takes
over from one that has run ``max_tasks`` tasks or grew past ``max_rss``.

The replacement is started while the old process goes on taking tasks. Once it is
ready, the old process is given no more tasks and finishes those written to it (the
running one, and a short window of small ones); then the replacement is installed
under the ident, adopts the old one's queue in order, and the old process is stopped
with nothing left to hand back. No task fails or is lost because of a recycle, and
none waits longer than one start (beyond the tasks ahead of it).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import TYPE_CHECKING

from ._slot import WorkerSlot
from .errors import CoordinatorClosedError, WorkerStartError

if TYPE_CHECKING:
    from ._dispatch import Dispatcher

__all__ = ("Recycler", "successor")

logger = logging.getLogger("procoord")


class Recycler:
    """Runs the recycles of one coordinator; ``settle`` waits for those under way."""

    def __init__(self, dispatch: Dispatcher) -> None:
        self._dispatch = dispatch
        self._running: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()

    def start(self, slot: WorkerSlot, reason: str) -> None:
        """Begin replacing ``slot`` (once; it goes on taking tasks meanwhile)."""
        if self._closing.is_set() or slot.recycling:
            return
        slot.recycling = True
        logger.info("worker %r (pid %s) is recycled: %s", slot.ident, slot.pid, reason)
        task = asyncio.get_running_loop().create_task(self._recycle(slot))
        self._running.add(task)
        task.add_done_callback(self._done)

    async def settle(self) -> None:
        """Start no more recycles, and wait for those under way to finish."""
        self._closing.set()
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("recycling a worker failed", exc_info=task.exception())

    async def _recycle(self, old: WorkerSlot) -> None:
        dispatch = self._dispatch
        new = successor(old)
        dispatch.retiring.add(new)  # covered by the coordinator's finalizer while it starts
        try:
            await new.start()
        except CoordinatorClosedError:
            return  # close() ended it while it started
        except WorkerStartError as exc:
            logger.warning("worker %r: its replacement could not start (%s); the old process goes on", old.ident, exc)
            old.recycling = False
            old.tasks_run = 0
            return
        finally:
            dispatch.retiring.discard(new)
        if self._closing.is_set() or dispatch.slots.get(old.ident) is not old or not old.routable:
            # Removed, replaced or failed for good meanwhile, or the coordinator is closing.
            await new.stop()
            return
        # The old process finishes what was written to it; close() does not wait for
        # that (a running task may take as long as it likes).
        handed = asyncio.ensure_future(old.hand_over())
        closing = asyncio.ensure_future(self._closing.wait())
        await asyncio.wait((handed, closing), return_when=asyncio.FIRST_COMPLETED)
        closing.cancel()
        if not handed.done() or dispatch.slots.get(old.ident) is not old:
            handed.cancel()
            await new.stop()
            return
        new.counts.recycles += 1
        dispatch.install(new)
        logger.info("worker %r recycled (pid %s -> %s)", old.ident, old.pid, new.pid)
        dispatch.retiring.add(old)
        try:
            dispatch.withdraw(old)
            await old.stop()
        finally:
            dispatch.retiring.discard(old)


def successor(old: WorkerSlot) -> WorkerSlot:
    """A slot for a fresh process with ``old``'s ident and spec (to recycle it), carrying
    on its counters, its crash history and its measurements."""
    policy = old.restart_policy
    new = WorkerSlot(
        old.owner,
        old.ident,
        old.spec,
        old.backend,
        restart=policy.enabled,
        restart_limit=policy.limit,
        restart_window_s=policy.window_s,
        recycle=old.recycle_policy,
    )
    new.restart_policy = policy  # the crash history goes on
    new.counts = old.counts
    new.window = copy.copy(old.window)
    new.last_given = old.last_given
    return new
