"""Streaming results: ``Coordinator.stream``, the parts of a generator task as they come.

The path of the parts::

    Coordinator.stream(task) -> StreamIterator; its first __anext__ queues the task
      (routed like run) with a PartQueue; the worker gets a STREAM frame and a credit
    worker: each part the generator yields -> one PART frame, one credit used; with no
      credit left the generator is not resumed (procoord._worker.stream)
    WorkerSlot.frames_received: PART -> PartQueue.put; END / ERROR / a lost worker /
      a timeout resolve the task as usual (after the parts before it)
    StreamIterator.__anext__: the next part; every CREDIT_BATCH parts taken, a CREDIT
      frame gives the worker as many more

So at most ``STREAM_CREDIT`` parts (and about ``procoord._wire.STREAM_BYTES`` bytes of
them, or one part when a single part is larger) wait in the parent unconsumed, however
fast the generator. Closing the iterator (``break``, an error or cancellation of the consumer,
``aclose``, garbage collection) cancels the task: the generator is closed in the worker.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, final

from . import _wire
from ._loops import AsyncLoopView
from ._misuse import async_for_needed
from ._task import Task

__all__ = ("CREDIT_BATCH", "STREAM_CREDIT", "PartQueue", "StreamIterator")

T = TypeVar("T")

# Parts a worker may send ahead of the consumer. More keeps a fast generator busy
# across a slow round trip (Ray); fewer bounds what waits in the parent's memory.
STREAM_CREDIT = 256

# The consumer hands credit back in batches of this many parts: one CREDIT frame per
# batch instead of one per part, while the worker still has the rest of its credit.
CREDIT_BATCH = STREAM_CREDIT // 4

# ... or once the parts taken since the last credit are this large: the worker waits
# when STREAM_BYTES are unacknowledged, so credit must come back before that.
CREDIT_BATCH_BYTES = _wire.STREAM_BYTES // 4


@final
class PartQueue:
    """The parts of one streaming task that arrived and are not yet consumed.

    Filled by the task's worker slot (:meth:`put`), emptied by its
    :class:`StreamIterator`; once closed it drops what arrives."""

    __slots__ = ("closed", "parts", "received", "taken", "taken_bytes", "waiter")

    def __init__(self) -> None:
        self.parts: deque[Any] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.taken = 0  # parts consumed since the last credit was given back
        self.taken_bytes = 0  # and their size
        self.closed = False
        self.received = False  # a part arrived: the task can no longer be retried

    def put(self, payload: Any) -> None:
        """A PART frame's payload arrived."""
        self.received = True
        if self.closed:
            return
        self.parts.append(payload)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


@final
class StreamIterator(AsyncIterator[T]):
    """The async iterator returned by :meth:`Coordinator.stream
    <procoord.Coordinator.stream>`: the parts of one task, in the order its generator
    yielded them.

    The task is queued when the iteration starts. Leaving the loop early (``break``,
    an error, cancellation), :meth:`aclose` or ``async with`` cancel it: the generator
    is closed in the worker. An error of the task (``TaskProcessError``,
    ``WorkerLostError``, ``TaskTimeoutError``, ...) is raised after the parts that
    came before it.
    """

    __slots__ = ("__weakref__", "_cancel", "_closed", "_loop", "_open", "_queue", "_task")

    def __init__(self, open_: Callable[[PartQueue], Awaitable[Task]], cancel: Callable[[Task], bool]) -> None:
        self._open: Callable[[PartQueue], Awaitable[Task]] | None = open_
        self._cancel = cancel
        self._queue = PartQueue()
        self._task: Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def __aiter__(self) -> AsyncLoopView[T]:
        # The loop's own view: leaving the loop early closes the stream, even while
        # the stream is held in a variable (see procoord._loops).
        return AsyncLoopView(self)

    if not TYPE_CHECKING:  # a plain `for` by mistake: an error that names `async for`

        def __iter__(self) -> None:
            async_for_needed("coord.stream(...)")

    async def __anext__(self) -> T:
        if self._closed:
            raise StopAsyncIteration
        task = self._task
        if task is None:
            task = await self._start()
        queue = self._queue
        parts = queue.parts
        while not parts:
            if task.done():
                self._finish()
                if task.cancelled():
                    raise StopAsyncIteration
                error = task.error()
                if error is not None:
                    raise error
                raise StopAsyncIteration
            await self._wait(task)
        payload = parts.popleft()
        queue.taken += 1
        queue.taken_bytes += _wire.payload_size(payload)
        if (queue.taken >= CREDIT_BATCH or queue.taken_bytes >= CREDIT_BATCH_BYTES) and not task.done():
            task.slot.send_credit(task, queue.taken)
            queue.taken = queue.taken_bytes = 0
        try:
            return _wire.read_part(payload)  # type: ignore[no-any-return]
        except BaseException:
            self.close()
            raise

    async def _start(self) -> Task:
        open_, self._open = self._open, None
        if open_ is None:
            raise RuntimeError("anext(): this stream() iterator is already being started")
        self._loop = asyncio.get_running_loop()
        try:
            task = await open_(self._queue)
        except BaseException:
            self._closed = True
            raise
        self._task = task
        if self._closed:  # closed while it was being queued
            self._cancel(task)
            raise StopAsyncIteration
        return task

    async def _wait(self, task: Task) -> None:
        """Wait for a part or for the task's end; a cancelled consumer cancels the task."""
        assert self._loop is not None  # set by _start
        waiter = self._loop.create_future()
        self._queue.waiter = waiter
        task.add_waiter(waiter)  # woken by Task.resolve
        try:
            await waiter
        except asyncio.CancelledError:
            self.close()
            raise
        finally:
            self._queue.waiter = None
            task.discard_waiter(waiter)  # woken by a part, not by the task's end

    def _finish(self) -> None:
        self._closed = True
        self._queue.closed = True

    # -- closing --------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the iterator is closed (exhausted, failed, or closed early)."""
        return self._closed

    def close(self) -> None:
        """Stop: cancel the task if it has not ended (a queued one never runs; a running
        one's generator is closed in the worker) and drop the parts not yet taken. Must
        be called on the coordinator's event loop; calling it again does nothing."""
        if self._closed:
            return
        self._finish()
        self._queue.parts.clear()
        task = self._task
        if task is not None and not task.done():
            self._cancel(task)

    async def aclose(self) -> None:
        """Close the iterator (see :meth:`close`)."""
        self.close()

    async def __aenter__(self) -> StreamIterator[T]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        self._drop()

    def _drop(self) -> None:
        # Left early by its loop, or dropped without being closed: cancel the task, on
        # the loop's own thread.
        if getattr(self, "_closed", True):
            return
        task, loop = self._task, self._loop
        if task is None or loop is None or task.done():
            return
        self._finish()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._cancel(task)
            return
        try:
            loop.call_soon_threadsafe(self._cancel, task)
        except RuntimeError:  # the loop is closed: nothing is left to cancel
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self._task is not None else "not started")
        return f"<StreamIterator {state} parts waiting={len(self._queue.parts)}>"
