"""Ending workers: retiring one (``remove_worker``, a replaced ident), stopping every one
(``close``), and ending them from any thread when nobody can wait (garbage collection,
interpreter exit, a second Ctrl-C)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Protocol

from ._dispatch import Dispatcher
from ._slot import WorkerSlot

__all__ = ("Closer", "remaining", "retire_in_background", "stop_all", "stop_slot", "terminate_all")

logger = logging.getLogger("procoord")


def remaining(loop: asyncio.AbstractEventLoop, deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (loop time), None for no deadline."""
    return None if deadline is None else max(0.0, deadline - loop.time())


async def stop_slot(slot: WorkerSlot, deadline: float | None = None, *, drain: bool = False) -> None:
    """Stop a worker; kill it if it is still there at ``deadline`` (loop time)."""
    try:
        await asyncio.wait_for(slot.stop(drain), remaining(asyncio.get_running_loop(), deadline))
    except TimeoutError:
        logger.warning("worker %r (pid %s) did not stop in time; killing it", slot.ident, slot.pid)
        slot.kill("close() when its timeout ran out")
        await slot.stop()


async def _retire(dispatch: Dispatcher, slot: WorkerSlot) -> None:
    dispatch.retiring.add(slot)  # until its process is gone, whatever happens to the caller
    try:
        dispatch.withdraw(slot)
        await stop_slot(slot, drain=True)
    finally:
        dispatch.retiring.discard(slot)


def retire_in_background(dispatch: Dispatcher, slot: WorkerSlot) -> asyncio.Task[None]:
    """Retire a worker no longer listed: its queued tasks are routed again, it runs what
    was sent to it, and its process exits. Runs on whether or not anyone waits for it."""
    task = asyncio.get_running_loop().create_task(_retire(dispatch, slot))
    task.add_done_callback(_log_failure)
    return task


async def stop_all(
    dispatch: Dispatcher,
    cancel_pending: bool,
    timeout: float | None,
    settle: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Let unfinished tasks finish (or fail the queued ones), then ``settle`` (wait for
    what replaces workers), then stop every worker, retiring and starting ones
    included; past ``timeout`` seconds, kill what is left."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    dispatch.ledger.release_waiters()
    dispatch.end_streams()
    if cancel_pending:
        dispatch.cancel_pending()
    else:
        try:
            await dispatch.ledger.drained(remaining(loop, deadline))
        except TimeoutError:
            logger.warning("close(): tasks still unfinished after %g s; stopping the workers", timeout)
            dispatch.cancel_pending()
    if settle is not None:
        await settle()
    slots = list(dispatch.slots.values()) + list(dispatch.retiring)
    for slot in slots:
        slot.begin_stop()
    await asyncio.gather(*(stop_slot(s, deadline) for s in slots))
    dispatch.fail_queued()  # anything left waiting for a restart that will not come


def terminate_all(slots: dict[Hashable, WorkerSlot], retiring: set[WorkerSlot]) -> None:
    """End every worker process now, from any thread (SIGTERM, then SIGKILL)."""
    for slot in [*slots.values(), *retiring]:
        slot.terminate_sync(1.0)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("retiring a worker failed", exc_info=task.exception())


class Closer:
    """A coordinator's closing: whether it has begun and ended, the ``close()`` at work,
    and a backend the coordinator made, which goes with it."""

    def __init__(
        self,
        dispatch: Dispatcher,
        settle: Callable[[], Awaitable[None]],
        own_backend: Closable | None,
    ) -> None:
        self._dispatch = dispatch
        self._settle = settle
        self._own_backend = own_backend
        self.closing = False  # no new tasks or workers
        self._closed = False  # every worker process is gone
        self._call: asyncio.Future[None] | None = None  # a close() at work

    async def close(self, cancel_pending: bool, timeout: float | None, detach: Callable[[], object]) -> None:
        """See :meth:`Coordinator.close <procoord.Coordinator.close>`; ``detach`` disarms
        the finalizer once every worker is gone."""
        while self._call is not None:  # another close() is at work
            await asyncio.shield(self._call)
        if self._closed:
            return
        call = self._call = asyncio.get_running_loop().create_future()
        self.closing = True
        try:
            await stop_all(self._dispatch, cancel_pending, timeout, self._settle)
            self._closed = True
            detach()
            if self._own_backend is not None:
                self._own_backend.close()
        finally:
            self._call = None
            call.set_result(None)


class Closable(Protocol):
    def close(self) -> None: ...
