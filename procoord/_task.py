"""The record of one task, and the queue that holds records until a worker takes them.

A :class:`Task` resolves itself: its future and the ``join`` calls waiting on it are
touched here and nowhere else. A :class:`TaskQueue` is a FIFO whose owner (the
dispatcher for the shared queue, a worker slot for its own) is the only one to change
it; a queued task leaves it in O(1) when it is cancelled.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from typing import Any

from .prefs import Pref

__all__ = ("Payload", "Task", "TaskQueue")

Payload = bytes | list[bytes | memoryview]
"""A pickled task: bytes, or a pickle stream followed by out-of-band buffers."""


class Task:
    """The coordinator's record of one task, from ``run`` until it is resolved."""

    __slots__ = (
        "future",
        "id",
        "payload",
        "prefs",
        "queue",
        "size",
        "slot",
        "started_at",
        "stream",
        "timeout",
        "waiters",
        "written_at",
    )

    def __init__(
        self, task_id: int, payload: Payload, prefs: Pref, future: asyncio.Future[Any], timeout: float | None
    ) -> None:
        self.id = task_id
        self.payload = payload
        self.prefs = prefs
        self.future = future
        self.timeout = timeout
        self.size = 0  # the number of items of a batch; 0 for a single task
        self.stream: Any = None  # the PartQueue of a streaming task (procoord._stream)
        self.waiters: list[asyncio.Future[None]] = []  # join() calls waiting on it
        self.slot: Any = None  # the WorkerSlot it is bound to, None while in the shared queue
        self.queue: TaskQueue | None = None  # the queue holding it, if any
        self.written_at = 0.0
        self.started_at = 0.0

    def done(self) -> bool:
        """Whether the task has its outcome (result, error or cancelled)."""
        return self.future.done()

    def resolve(self, result: Any = None, error: BaseException | None = None) -> None:
        """Give the task its outcome: ``error``, else ``result``, else cancelled. Wakes
        every ``join`` waiting on it; does nothing when it is resolved already."""
        future = self.future
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
            future.exception()  # a handle dropped unjoined must not log "never retrieved"
        elif result is not None:
            future.set_result(result)
        else:
            future.cancel()
        waiters = self.waiters
        while waiters:
            waiter = waiters.pop()
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        """Wait until the task is resolved. Cancelling the waiter leaves the task alone."""
        if self.future.done():
            return
        # Woken directly by resolve(): one event-loop turn fewer than waiting on the
        # future through asyncio.shield.
        waiter: asyncio.Future[None] = self.future.get_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        finally:
            if not waiter.done():  # the waiter was cancelled, not the task
                self.waiters.remove(waiter)

    def __repr__(self) -> str:
        return f"<Task {self.id} {'done' if self.done() else 'pending'}>"


class TaskQueue:
    """A FIFO of tasks waiting for a worker. ``discard`` is O(1): the entry stays in
    place and is skipped when it reaches the head (a discarded task is resolved and
    never queued again)."""

    __slots__ = ("_entries", "_live")

    def __init__(self) -> None:
        self._entries: deque[Task] = deque()
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def __bool__(self) -> bool:
        return self._live > 0

    def __iter__(self) -> Iterator[Task]:
        return (t for t in self._entries if t.queue is self)

    def append(self, task: Task) -> None:
        task.queue = self
        self._entries.append(task)
        self._live += 1

    def appendleft(self, task: Task) -> None:
        task.queue = self
        self._entries.appendleft(task)
        self._live += 1

    def extend(self, tasks: list[Task]) -> None:
        for task in tasks:
            self.append(task)

    def popleft(self) -> Task:
        """The task at the head; IndexError when the queue is empty."""
        entries = self._entries
        while True:
            task = entries.popleft()
            if task.queue is self:
                task.queue = None
                self._live -= 1
                return task

    def discard(self, task: Task) -> bool:
        """Take ``task`` out of the queue; False when it is not in it."""
        if task.queue is not self:
            return False
        task.queue = None
        self._live -= 1
        if not self._live:
            self._entries.clear()
        return True

    def drain(self) -> list[Task]:
        """Take every task out, in order."""
        tasks = [t for t in self._entries if t.queue is self]
        for task in tasks:
            task.queue = None
        self._entries.clear()
        self._live = 0
        return tasks
