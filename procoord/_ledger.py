"""The count of unfinished tasks: back-pressure for ``run`` and draining for ``close``."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

__all__ = ("TaskLedger",)


class TaskLedger:
    """Counts tasks submitted and not finished; wakes ``run`` calls waiting for room
    (``max_pending``) as soon as one finishes, and ``close`` when the last one does."""

    def __init__(self, max_pending: int | None) -> None:
        self.max_pending = max_pending
        self.unfinished = 0
        self._space_waiters: deque[asyncio.Future[None]] = deque()
        self._drained: asyncio.Future[None] | None = None

    def full(self) -> bool:
        """Whether ``run`` must wait before queuing another task."""
        return self.max_pending is not None and self.unfinished >= self.max_pending

    def task_added(self) -> None:
        self.unfinished += 1

    def task_left(self) -> None:
        self.unfinished -= 1
        if self._space_waiters:
            self._wake_one()
        if self.unfinished == 0 and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def wait_for_space(self, check_open: Callable[[], None]) -> None:
        """Wait while the ledger is full; ``check_open`` raises once the coordinator closes."""
        while self.full():
            check_open()
            waiter = asyncio.get_running_loop().create_future()
            self._space_waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._wake_one()  # woken but leaving: pass the wake-up on
                else:
                    waiter.cancel()
                raise

    def release_waiters(self) -> None:
        """Wake every waiting ``run`` (on close: they then find the coordinator closed)."""
        for waiter in self._space_waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def drained(self, timeout: float | None) -> None:
        """Wait until no task is unfinished; raise TimeoutError after ``timeout`` seconds."""
        if not self.unfinished:
            return
        if self._drained is None or self._drained.done():
            self._drained = asyncio.get_running_loop().create_future()
        await asyncio.wait_for(asyncio.shield(self._drained), timeout)

    def _wake_one(self) -> None:
        waiters = self._space_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
