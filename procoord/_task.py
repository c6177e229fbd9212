"""The record of one task, and the queue that holds records until a worker takes them.

A :class:`Task` resolves itself: its outcome, its caller's future and the ``join``
calls waiting on it are touched here and nowhere else. A :class:`TaskQueue` is a FIFO
whose owner (the dispatcher for the shared queue, a worker slot for its own) is the
only one to change it: it gives out higher priorities first, FIFO within one priority, and a queued task
leaves it in O(1) when it is cancelled.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import deque
from collections.abc import Iterator
from typing import Any

from .prefs import Pref

__all__ = ("Payload", "Task", "TaskQueue", "check_task_options")

Payload = bytes | list[bytes | memoryview]
"""A pickled task: bytes, or a pickle stream followed by out-of-band buffers."""


def check_task_options(retries: int, priority: int) -> None:
    """Raise for a ``retries`` or ``priority`` that is not an int (or a negative ``retries``)."""
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, not {retries!r}")
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise TypeError(f"priority must be an int (higher runs first), not {priority!r}")


_PENDING, _RESULT, _ERROR, _CANCELLED = range(4)


class Task:
    """The coordinator's record of one task, from ``run`` until it is resolved.

    It holds its own outcome: most tasks are awaited through a handle, which reads the
    outcome when it is there (or waits for it), so no asyncio future is made per task.
    ``future`` is the caller's own future, when it brought one (``coord.call``'s), which
    the task resolves with itself."""

    __slots__ = (
        "attempts",
        "future",
        "id",
        "outcome",
        "payload",
        "prefs",
        "priority",
        "queue",
        "retries",
        "size",
        "slot",
        "started_at",
        "state",
        "stream",
        "timeout",
        "waiters",
        "written_at",
    )

    def __init__(
        self,
        task_id: int,
        payload: Payload,
        prefs: Pref,
        future: asyncio.Future[Any] | None,
        timeout: float | None,
        retries: int = 0,
        priority: int = 0,
        size: int = 0,
        stream: Any = None,
    ) -> None:
        self.id = task_id
        self.payload = payload
        self.prefs = prefs
        self.future = future
        self.state = _PENDING
        self.outcome: Any = None  # the result, or the error, once resolved
        self.timeout = timeout
        self.retries = retries  # runs after the first one, for a task lost or timed out
        self.priority = priority
        self.attempts = 1  # runs so far, the current one included
        self.size = size  # the number of items of a batch; 0 for a single task
        self.stream: Any = stream  # the PartQueue of a streaming task (procoord._stream)
        self.waiters: list[asyncio.Future[None]] | None = None  # join() calls waiting on it
        self.slot: Any = None  # the WorkerSlot it is bound to, None while in the shared queue
        self.queue: TaskQueue | None = None  # the queue holding it, if any
        self.written_at = 0.0
        self.started_at = 0.0

    def done(self) -> bool:
        """Whether the task has its outcome (result, error or cancelled), or its caller's
        future is done (a call cancelled by its caller while its task ran on)."""
        return self.state != _PENDING or (self.future is not None and self.future.done())

    def cancelled(self) -> bool:
        """Whether the task was resolved as cancelled."""
        return self.state == _CANCELLED

    def error(self) -> BaseException | None:
        """The error the task was resolved with, if any."""
        return self.outcome if self.state == _ERROR else None

    def result(self) -> Any:
        """The result of a resolved task; raise its error, or CancelledError."""
        state = self.state
        if state == _RESULT:
            return self.outcome
        if state == _ERROR:
            raise self.outcome
        if state == _CANCELLED:
            raise asyncio.CancelledError()
        raise asyncio.InvalidStateError("the task has no outcome yet")

    def may_retry(self) -> bool:
        """Whether the task, lost with its worker or timed out, is to run again (a stream
        only before its first part: the parts it gave cannot be taken back)."""
        return self.attempts <= self.retries and not self.done() and not (self.stream and self.stream.received)

    def resolve(self, result: Any = None, error: BaseException | None = None) -> None:
        """Give the task its outcome: ``error``, else ``result``, else cancelled. Wakes
        every ``join`` waiting on it and resolves the caller's future; does nothing when
        it is resolved already."""
        if self.state != _PENDING:
            return
        if error is not None:
            self.state, self.outcome = _ERROR, error
        elif result is not None:
            self.state, self.outcome = _RESULT, result
        else:
            self.state = _CANCELLED
        future = self.future
        if future is not None:
            self.future = None  # the future holds its task (to cancel it): no cycle left
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                    future.exception()  # a call dropped unawaited must not log "never retrieved"
                elif result is not None:
                    future.set_result(result)
                else:
                    future.cancel()
        waiters = self.waiters
        while waiters:
            waiter = waiters.pop()
            if not waiter.done():
                waiter.set_result(None)

    def add_waiter(self, waiter: asyncio.Future[None]) -> None:
        """Have ``resolve`` wake ``waiter`` (set its result to None)."""
        if self.waiters is None:
            self.waiters = [waiter]
        else:
            self.waiters.append(waiter)

    def discard_waiter(self, waiter: asyncio.Future[None]) -> None:
        """Forget a waiter that stopped waiting (one ``resolve`` already woke is gone)."""
        if self.waiters and waiter in self.waiters:
            self.waiters.remove(waiter)

    async def wait(self) -> None:
        """Wait until the task is resolved. Cancelling the waiter leaves the task alone."""
        if self.done():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.add_waiter(waiter)
        try:
            await waiter
        finally:
            if not waiter.done():  # the waiter was cancelled, not the task
                self.discard_waiter(waiter)

    def __repr__(self) -> str:
        return f"<Task {self.id} {'done' if self.done() else 'pending'}>"


class _Lane:
    """The tasks of one priority, FIFO; ``live`` counts those not discarded."""

    __slots__ = ("entries", "live")

    def __init__(self) -> None:
        self.entries: deque[Task] = deque()
        self.live = 0


class TaskQueue:
    """Tasks waiting for a worker: higher priority first, FIFO within one priority.

    Each priority has its own FIFO lane; a heap holds the priorities that have a lane
    (one entry each), so taking the next task is O(1) with one priority in use and
    O(log p) with p of them. ``discard`` is O(1): the entry stays in place and is skipped
    when it reaches the head of its lane (a discarded task is resolved and never queued
    again).
    """

    __slots__ = ("_lanes", "_top", "size")

    def __init__(self) -> None:
        self._lanes: dict[int, _Lane] = {}
        self._top: list[int] = []  # negated priorities, one per lane
        self.size = 0  # live tasks queued (read it; only the queue changes it)

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0

    def __iter__(self) -> Iterator[Task]:
        for priority in sorted(self._lanes, reverse=True):
            yield from (t for t in self._lanes[priority].entries if t.queue is self)

    def _lane(self, priority: int) -> _Lane:
        lane = self._lanes.get(priority)
        if lane is None:
            lane = self._lanes[priority] = _Lane()
            heapq.heappush(self._top, -priority)
        return lane

    def append(self, task: Task) -> None:
        """Queue a task behind those of its priority."""
        lane = self._lanes.get(task.priority) or self._lane(task.priority)
        task.queue = self
        lane.entries.append(task)
        lane.live += 1
        self.size += 1

    def appendleft(self, task: Task) -> None:
        """Queue a task ahead of those of its priority (it was handed back)."""
        lane = self._lane(task.priority)
        task.queue = self
        lane.entries.appendleft(task)
        lane.live += 1
        self.size += 1

    def extend(self, tasks: list[Task]) -> None:
        for task in tasks:
            self.append(task)

    def _head_lane(self) -> _Lane:
        """The lane of the highest priority with a live task, its head live; the queue
        must not be empty."""
        top, lanes = self._top, self._lanes
        while True:
            lane = lanes[-top[0]]
            if lane.live:
                entries = lane.entries
                while entries[0].queue is not self:
                    entries.popleft()
                return lane
            del lanes[-heapq.heappop(top)]

    def top_priority(self) -> int | None:
        """The priority of the task ``popleft`` would give, or None when empty."""
        if not self.size:
            return None
        return self._head_lane().entries[0].priority

    def popleft(self) -> Task:
        """The next task: the oldest of the highest priority; IndexError when empty."""
        if not self.size:
            raise IndexError("pop from an empty TaskQueue")
        lane = self._lanes[-self._top[0]]
        if not lane.live or lane.entries[0].queue is not self:  # emptied, or its head discarded
            lane = self._head_lane()
        task = lane.entries.popleft()
        task.queue = None
        lane.live -= 1
        self.size -= 1
        return task

    def take(self, count: int) -> list[Task]:
        """The next ``count`` tasks (fewer when the queue runs out), in the order
        ``popleft`` would give them one by one."""
        taken: list[Task] = []
        while count and self.size:
            lane = self._lanes[-self._top[0]]
            if not lane.live or lane.entries[0].queue is not self:
                lane = self._head_lane()
            entries = lane.entries
            if lane.live == len(entries):  # none discarded (the common case): a run at once
                run = [entries.popleft() for _ in range(min(count, lane.live))]
                for task in run:
                    task.queue = None
                lane.live -= len(run)
                self.size -= len(run)
                count -= len(run)
                taken += run
                continue
            while count and lane.live:
                task = entries.popleft()
                if task.queue is not self:
                    continue  # discarded
                task.queue = None
                lane.live -= 1
                self.size -= 1
                taken.append(task)
                count -= 1
        return taken

    def discard(self, task: Task) -> bool:
        """Take ``task`` out of the queue; False when it is not in it."""
        if task.queue is not self:
            return False
        task.queue = None
        lane = self._lanes[task.priority]
        lane.live -= 1
        if not lane.live:
            lane.entries.clear()
        self.size -= 1
        return True

    def drain(self) -> list[Task]:
        """Take every task out, highest priority first, FIFO within one."""
        tasks = list(self)
        for task in tasks:
            task.queue = None
        self._lanes.clear()
        self._top.clear()
        self.size = 0
        return tasks
