"""Bulk work: ``Coordinator.map``, a bounded window of tasks over any iterable.

The path of the items::

    iterable (sync or async, pulled lazily, one item at a time)
      -> chunks of items: coord.run(item) for one, a batch (as run_batch) for several
         (chunks grow while tasks are cheap, so the channel's cost is paid per chunk),
         while fewer than `window` items are outstanding
      -> ordered:   a deque of chunks; the head is awaited, later ones wait their turn
         unordered: one small watcher per chunk pushes its outcomes to `finished`
      -> the outcomes of one chunk are `ready`: an iterator the loop takes them from
      -> __anext__ yields (result, worker), or the error (raised, or yielded with
         return_exceptions=True)

"Outstanding" counts tasks submitted and not yet yielded, so both the unfinished tasks
and the results waiting for their turn stay under ``window``: memory does not grow with
the length of the iterable. Closing the iterator (``break``, ``aclose``, an error, or
garbage collection) cancels every outstanding task: a queued one never runs.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
    Sized,
)
from itertools import islice, repeat
from operator import length_hint
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, Unpack, final

from ._loops import AsyncLoopView
from ._misuse import async_for_needed, running_loop
from ._options import MapOptions, check_options
from ._progress import ProgressBar, open_bar
from ._task import check_task_options
from .errors import SerializationError
from .handle import JoinHandle
from .prefs import Pref

__all__ = ("DEFAULT_WINDOW", "MapIterator", "TaskSink")

# Tasks outstanding at once by default: room for several chunks of cheap tasks per
# worker (so the channel is never the bottleneck), small enough that the buffered
# results stay in the megabytes and a ``break`` cancels tasks that never run.
DEFAULT_WINDOW = 1024

# Without a ``window`` given, tasks shorter than CHEAP_TASK_S get a window of CHEAP_WINDOW:
# chunks of thousands of items, so the cost of waking a worker (tens of microseconds on
# a VM) is spread thin, while buffered results of such tasks stay small.
CHEAP_TASK_S = 1e-4
CHEAP_WINDOW = 8192

# Chunks are sized so that one takes about this long to run: long enough that the
# channel's per-task cost (tens of microseconds) is small, short enough to balance.
TARGET_CHUNK_S = 0.002

# At most this many items per chunk, and at least this many chunks per worker in the
# window, so every worker always has a chunk to start on.
MAX_CHUNK = 2048
CHUNKS_PER_WORKER = 2

T = TypeVar("T")

_Pair = tuple[Any, Hashable]


class TaskSink(Protocol):
    """What ``map`` submits its chunks to (a :class:`~procoord.Coordinator`)."""

    def __len__(self) -> int:
        """The number of workers."""
        ...

    async def run(
        self, task: Any, prefs: Pref = ..., *, timeout: float | None = None, retries: int = 0, priority: int = 0
    ) -> JoinHandle[_Pair]:
        """Queue one task."""
        ...

    async def _run_chunk(
        self,
        tasks: Sequence[Any],
        prefs: Pref = ...,
        *,
        timeout: float | None = None,
        retries: int = 0,
        priority: int = 0,
    ) -> JoinHandle[tuple[tuple[list[Any], dict[int, BaseException]], Hashable]]:
        """Queue several tasks as one unit; its join gives ``((results, errors by index), worker)``."""
        ...


class _Failed:
    """An outcome that is an error (kept apart from results, which may be exceptions)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_Outcome = _Pair | _Failed

_NOTHING_READY: Iterator[_Outcome] = iter(())


class _Chunk:
    """One submitted unit: a single task, or a batch of ``size`` items."""

    __slots__ = ("batch", "handle", "size")

    def __init__(self, handle: JoinHandle[Any], size: int, batch: bool) -> None:
        self.handle = handle
        self.size = size
        self.batch = batch

    async def outcomes(self) -> list[_Outcome]:
        """Wait for the chunk; its outcomes, one per item, in order."""
        try:
            value, worker = await self.handle
        except asyncio.CancelledError:
            if not self.handle.done():
                raise  # the consumer was cancelled, not the task
            return [_Failed(asyncio.CancelledError())] * self.size
        except Exception as exc:  # the whole chunk failed (worker lost, timeout)
            return [_Failed(exc)] * self.size
        if not self.batch:
            return [(value, worker)]
        results, errors = value
        pairs: list[_Outcome] = list(zip(results, repeat(worker)))  # made in C
        for i, error in errors.items():
            pairs[i] = _Failed(error)
        return pairs


@final
class MapIterator(Generic[T]):
    """The async iterator returned by :meth:`Coordinator.map <procoord.Coordinator.map>`.

    Iterate it with ``async for``. Leaving the loop early cancels what it queued; so does
    ``await it.aclose()``, ``async with coord.map(...) as it:``, or dropping it.
    """

    def __init__(
        self,
        coord: TaskSink,
        task_time: Callable[[], float | None],
        iterable: Iterable[Any] | AsyncIterable[Any],
        prefs: Pref,
        *,
        return_exceptions: bool = False,
        **options: Unpack[MapOptions],
    ) -> None:
        check_options(options, MapOptions, "map")
        ordered = options.get("ordered", True)
        window = options.get("window")
        progress = options.get("progress", False)
        timeout = options.get("timeout")
        retries = options.get("retries", 0)
        priority = options.get("priority", 0)
        check_task_options(retries, priority)
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
            raise ValueError(f"window must be an int >= 1, not {window!r}")
        self._items: Iterator[Any] | None = None
        self._aitems: AsyncIterator[Any] | None = None
        if isinstance(iterable, AsyncIterable):
            self._aitems = aiter(iterable)
        elif isinstance(iterable, Iterable):
            self._items = iter(iterable)
        else:
            raise TypeError(f"map() needs an iterable or an async iterable, not {type(iterable).__qualname__}")
        self._coord = coord
        self._task_time = task_time
        self._prefs = prefs
        self._ordered = ordered
        self._window = window
        self._return_exceptions = return_exceptions
        self._timeout = timeout
        self._retries = retries
        self._priority = priority
        self._bar: ProgressBar | None = None
        if progress:
            bar_options = progress if isinstance(progress, Mapping) else None
            self._bar = open_bar(len(iterable) if isinstance(iterable, Sized) else None, options=bar_options)
        # Ordered: chunks (or failures) in input order.
        self._queue: deque[_Chunk | _Failed] = deque()
        self._queued_items = 0
        # Unordered: the chunks still running, with their watchers, and the outcomes of
        # those that finished (one list per chunk), not yet ready.
        self._watchers: dict[_Chunk, asyncio.Task[None]] = {}
        self._watched_items = 0
        self._finished: deque[list[_Outcome]] = deque()
        self._finished_items = 0
        # Both modes: the outcomes of the chunk being yielded, the next one first.
        self._ready: Iterator[_Outcome] = _NOTHING_READY
        self._wakeup: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exhausted = False
        self._busy = False
        self._closed = False

    # -- iteration ------------------------------------------------------------------

    def __aiter__(self) -> AsyncLoopView[T]:
        # The loop's own view: leaving the loop early closes the map, even while the
        # map is held in a variable (see procoord._loops). A progress bar counts every
        # item in _anext, so its loop takes no shortcut.
        return _MapLoopView(self) if self._bar is None else AsyncLoopView(self)

    if not TYPE_CHECKING:  # a plain `for` by mistake: an error that names `async for`

        def __iter__(self) -> None:
            async_for_needed("coord.map(...)")

    def __anext__(self) -> Awaitable[T]:
        # ``anext(map)``; ``async for`` goes through _MapLoopView, which takes a ready
        # outcome without this call.
        return self._anext()

    async def _anext(self) -> T:
        if self._closed:
            raise StopAsyncIteration
        if self._busy:
            raise RuntimeError("anext(): this map() iterator is already being awaited")
        outcome = next(self._ready, None)
        if outcome is None:
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._busy = True
            try:
                outcome = await (self._next_ordered() if self._ordered else self._next_unordered())
            except asyncio.CancelledError:
                raise  # the consumer was cancelled: nothing is lost, it may go on
            except BaseException:
                self.close()
                raise
            finally:
                self._busy = False
            if outcome is None or self._closed:
                self.close()
                raise StopAsyncIteration
        if self._bar is not None:
            self._bar.update()
        return self._handed_out(outcome)

    def _handed_out(self, outcome: _Outcome) -> T:
        """What the loop gets for an outcome: the pair, or the error (yielded with
        ``return_exceptions``, else raised, and the map closed)."""
        if type(outcome) is _Failed:
            if self._return_exceptions:
                return outcome.error  # type: ignore[return-value]
            self.close()
            raise outcome.error
        return outcome  # type: ignore[return-value]

    @property
    def closed(self) -> bool:
        """Whether the iterator is closed (finished, failed, or closed early)."""
        return self._closed

    @property
    def outstanding(self) -> int:
        """Tasks submitted and not yet yielded (never more than ``window``)."""
        return self._queued_items + self._watched_items + self._finished_items + length_hint(self._ready)

    def _limit(self) -> int:
        """Tasks that may be outstanding: ``window``, or when none was given
        DEFAULT_WINDOW, CHEAP_WINDOW while tasks are known to be cheap."""
        if self._window is not None:
            return self._window
        task_s = self._task_time()
        return CHEAP_WINDOW if task_s is not None and task_s < CHEAP_TASK_S else DEFAULT_WINDOW

    def _chunk_size(self, room: int) -> int:
        """Items for the next chunk: 1 until task times are known, then as many as run in
        about TARGET_CHUNK_S, leaving room in the window for every worker."""
        task_s = self._task_time()
        if task_s is None:
            return 1
        workers = max(1, len(self._coord))
        by_time = int(TARGET_CHUNK_S / max(task_s, 1e-7))
        by_window = self._limit() // (CHUNKS_PER_WORKER * workers)
        return max(1, min(room, MAX_CHUNK, by_time, by_window))

    async def _pull(self, count: int) -> list[Any]:
        """Up to ``count`` items from the input (fewer at its end)."""
        if self._items is not None:
            items = list(islice(self._items, count))
            if len(items) < count:
                self._exhausted = True
            return items
        assert self._aitems is not None
        items = []
        while len(items) < count:
            try:
                items.append(await anext(self._aitems))
            except StopAsyncIteration:
                self._exhausted = True
                break
        return items

    async def _fill(self) -> None:
        """Submit chunks until ``window`` items are outstanding or the input ends."""
        while not self._exhausted and not self._closed and self.outstanding < (limit := self._limit()):
            room = limit - self.outstanding
            items = await self._pull(self._chunk_size(room))
            if not items:
                return
            if len(items) > 1:
                try:
                    handle = await self._coord._run_chunk(
                        items, self._prefs, timeout=self._timeout, retries=self._retries, priority=self._priority
                    )
                except SerializationError:
                    pass  # one item cannot be pickled: submit them one by one, so it fails alone
                else:
                    if not self._add(_Chunk(handle, len(items), batch=True)):
                        return
                    continue
            for item in items:
                try:
                    single = await self._coord.run(
                        item, self._prefs, timeout=self._timeout, retries=self._retries, priority=self._priority
                    )
                except SerializationError as exc:
                    # This item's own failure: it takes its place like any failed task.
                    self._add_failure(exc)
                    continue
                if not self._add(_Chunk(single, 1, batch=False)):
                    return

    def _add(self, chunk: _Chunk) -> bool:
        if self._closed:  # closed while run() waited for max_pending
            chunk.handle.cancel()
            return False
        if self._ordered:
            self._queue.append(chunk)
            self._queued_items += chunk.size
            return True
        assert self._loop is not None
        watcher = self._loop.create_task(_watch(chunk, weakref.ref(self)))
        self._watchers[chunk] = watcher
        self._watched_items += chunk.size
        return True

    def _add_failure(self, error: BaseException) -> None:
        if self._ordered:
            self._queue.append(_Failed(error))
            self._queued_items += 1
        else:
            self._finished.append([_Failed(error)])
            self._finished_items += 1

    def _deliver(self, chunk: _Chunk, outcomes: list[_Outcome]) -> None:
        """A watched chunk finished (unordered mode)."""
        if self._watchers.pop(chunk, None) is None:
            return  # closed meanwhile
        self._watched_items -= chunk.size
        self._finished.append(outcomes)
        self._finished_items += len(outcomes)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _make_ready(self, outcomes: list[_Outcome]) -> _Outcome:
        """Make a chunk's outcomes ready; the first of them, taken."""
        ready = iter(outcomes)
        self._ready = ready
        return next(ready)

    async def _next_ordered(self) -> _Outcome | None:
        await self._fill()
        if not self._queue:
            return None
        head = self._queue[0]
        if isinstance(head, _Failed):
            outcomes: list[_Outcome] = [head]
        else:
            outcomes = await head.outcomes()
        if self._closed:
            return None
        self._queue.popleft()
        self._queued_items -= len(outcomes)
        return self._make_ready(outcomes)

    async def _next_unordered(self) -> _Outcome | None:
        await self._fill()
        while not self._finished:
            if not self._watchers or self._closed:
                return None
            assert self._loop is not None
            self._wakeup = self._loop.create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
        outcomes = self._finished.popleft()
        self._finished_items -= len(outcomes)
        return self._make_ready(outcomes)

    # -- closing --------------------------------------------------------------------

    def close(self) -> None:
        """Stop: cancel every outstanding task (a queued one never runs; a running async
        ``do_work`` is cancelled in its worker; a running sync one finishes unseen) and
        close the progress bar. Must be called on the coordinator's event loop; calling
        it again does nothing."""
        if self._closed:
            return
        self._closed = True
        handles, watchers = self._outstanding_work()
        self._queue.clear()
        self._watchers.clear()
        self._finished.clear()
        self._ready = _NOTHING_READY
        self._queued_items = self._watched_items = self._finished_items = 0
        _cancel_all(handles, watchers)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        if self._bar is not None:
            self._bar.close()

    def _outstanding_work(self) -> tuple[list[JoinHandle[Any]], list[asyncio.Task[None]]]:
        handles = [c.handle for c in self._queue if isinstance(c, _Chunk)]
        handles.extend(c.handle for c in self._watchers)
        return handles, list(self._watchers.values())

    async def aclose(self) -> None:
        """Close the iterator (see :meth:`close`)."""
        self.close()

    async def __aenter__(self) -> MapIterator[T]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        self._drop()

    def _drop(self) -> None:
        # Left early by its loop, or dropped without being closed: cancel what it
        # queued, on the loop's own thread, without keeping this object alive.
        if getattr(self, "_closed", True):
            return
        loop = self._loop
        if loop is None or running_loop() is loop:
            self.close()
            return
        self._closed = True
        self._ready = _NOTHING_READY
        handles, watchers = self._outstanding_work()
        if self._bar is not None:
            self._bar.close()
        try:
            loop.call_soon_threadsafe(_cancel_all, handles, watchers)
        except RuntimeError:  # the loop is closed: nothing is left to cancel
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("exhausted" if self._exhausted else "open")
        mode = "ordered" if self._ordered else "unordered"
        return f"<MapIterator {state} {mode} outstanding={self.outstanding} window={self._limit()}>"


class _MapLoopView(AsyncLoopView[T]):
    """A map's view for one loop (without a progress bar), which takes a ready outcome
    itself: for a map of cheap tasks the loop's cost per item is most of the parent's
    work, and this saves a call into the iterator and its checks per item (a closed or
    busy map has none ready)."""

    __slots__ = ("_map",)

    def __init__(self, source: MapIterator[T]) -> None:
        super().__init__(source)
        self._map = source

    async def __anext__(self) -> T:
        for outcome in self._map._ready:
            if type(outcome) is tuple:
                return outcome  # type: ignore[return-value]
            return self._map._handed_out(outcome)
        return await self._map._anext()


async def _watch(chunk: _Chunk, sink: weakref.ref[MapIterator[Any]]) -> None:
    """Wait for one chunk and hand its outcomes to the iterator, if it still exists.

    It holds the iterator only weakly, so a dropped iterator is collected (and cancels
    its tasks) while its watchers still wait."""
    outcomes = await chunk.outcomes()
    target = sink()
    if target is not None:
        target._deliver(chunk, outcomes)


def _cancel_all(handles: list[JoinHandle[Any]], watchers: list[asyncio.Task[None]]) -> None:
    for handle in handles:
        handle.cancel()
    for watcher in watchers:
        watcher.cancel()
