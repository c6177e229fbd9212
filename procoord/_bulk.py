"""Bulk work: ``Coordinator.map``, a bounded window of tasks over any iterable.

The path of the items::

    iterable (sync or async, pulled lazily, one item at a time)
      -> coord.run(item)   while fewer than `window` tasks are outstanding
      -> ordered:   a deque of handles; the head is awaited, later ones wait their turn
         unordered: one small watcher per handle pushes the outcome to `finished`
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
from collections.abc import AsyncIterable, AsyncIterator, Hashable, Iterable, Iterator, Sized
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, final

from ._progress import ProgressBar, open_bar
from .errors import SerializationError
from .handle import JoinHandle
from .prefs import Pref

if TYPE_CHECKING:
    from .coordinator import Coordinator

__all__ = ("DEFAULT_WINDOW", "MapIterator")

# Tasks outstanding at once by default: enough to keep a few workers' in-flight windows
# full (a worker takes at most 64 at a time), small enough that cancelling on ``break``
# wastes little and the buffered results stay a few kilobytes to megabytes.
DEFAULT_WINDOW = 64

T = TypeVar("T")

_Pair = tuple[Any, Hashable]


class _Failed:
    """An outcome that is an error (kept apart from results, which may be exceptions)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_Outcome = _Pair | _Failed


@final
class MapIterator(Generic[T]):
    """The async iterator returned by :meth:`Coordinator.map <procoord.Coordinator.map>`.

    Iterate it with ``async for``. Leaving the loop early cancels what it queued; so does
    ``await it.aclose()``, ``async with coord.map(...) as it:``, or dropping it.
    """

    def __init__(
        self,
        coord: Coordinator,
        iterable: Iterable[Any] | AsyncIterable[Any],
        prefs: Pref,
        *,
        ordered: bool = True,
        window: int = DEFAULT_WINDOW,
        progress: bool = False,
        return_exceptions: bool = False,
        timeout: float | None = None,
    ) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
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
        self._prefs = prefs
        self._ordered = ordered
        self._window = window
        self._return_exceptions = return_exceptions
        self._timeout = timeout
        self._bar: ProgressBar | None = None
        if progress:
            self._bar = open_bar(len(iterable) if isinstance(iterable, Sized) else None)
        # Ordered: handles (or failures) in input order.
        self._queue: deque[JoinHandle[_Pair] | _Failed] = deque()
        # Unordered: the handles still running, with their watchers, and the outcomes
        # that arrived and are not yielded yet.
        self._watchers: dict[JoinHandle[_Pair], asyncio.Task[None]] = {}
        self._finished: deque[_Outcome] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exhausted = False
        self._busy = False
        self._closed = False

    # -- iteration ------------------------------------------------------------------

    def __aiter__(self) -> MapIterator[T]:
        return self

    async def __anext__(self) -> T:
        if self._closed:
            raise StopAsyncIteration
        if self._busy:
            raise RuntimeError("anext(): this map() iterator is already being awaited")
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
        if isinstance(outcome, _Failed):
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
        return len(self._queue) + len(self._watchers) + len(self._finished)

    async def _fill(self) -> None:
        """Submit items until ``window`` are outstanding or the input ends."""
        while not self._exhausted and not self._closed and self.outstanding < self._window:
            if self._items is not None:
                try:
                    item = next(self._items)
                except StopIteration:
                    self._exhausted = True
                    return
            else:
                assert self._aitems is not None
                try:
                    item = await anext(self._aitems)
                except StopAsyncIteration:
                    self._exhausted = True
                    return
            try:
                handle = await self._coord.run(item, self._prefs, timeout=self._timeout)
            except SerializationError as exc:
                # This item's own failure: it takes its place like any failed task.
                self._add_failure(exc)
                continue
            if self.closed:  # closed while run() waited for max_pending
                handle.cancel()
                return
            self._add(handle)

    def _add(self, handle: JoinHandle[_Pair]) -> None:
        if self._ordered:
            self._queue.append(handle)
            return
        assert self._loop is not None
        watcher = self._loop.create_task(_watch(handle, weakref.ref(self)))
        self._watchers[handle] = watcher

    def _add_failure(self, error: BaseException) -> None:
        if self._ordered:
            self._queue.append(_Failed(error))
        else:
            self._finished.append(_Failed(error))

    def _deliver(self, handle: JoinHandle[_Pair], outcome: _Outcome) -> None:
        """A watched task finished (unordered mode)."""
        if self._watchers.pop(handle, None) is None:
            return  # closed meanwhile
        self._finished.append(outcome)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _next_ordered(self) -> _Outcome | None:
        await self._fill()
        if not self._queue:
            return None
        head = self._queue[0]
        outcome: _Outcome
        if isinstance(head, _Failed):
            outcome = head
        else:
            try:
                outcome = await head
            except asyncio.CancelledError as exc:
                if not head.done():
                    raise  # the consumer was cancelled, not the task
                outcome = _Failed(exc)
            except Exception as exc:
                outcome = _Failed(exc)
        if self._closed:
            return None
        self._queue.popleft()
        return outcome

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
        return self._finished.popleft()

    # -- closing --------------------------------------------------------------------

    def close(self) -> None:
        """Stop: cancel every outstanding task (a queued one never runs; a running async
        ``do_work`` is cancelled in its worker; a running sync one finishes unseen) and
        close the progress bar. Must be called on the coordinator's event loop; calling
        it again does nothing."""
        if self._closed:
            return
        self._closed = True
        handles = [h for h in self._queue if isinstance(h, JoinHandle)]
        handles.extend(self._watchers)
        watchers = list(self._watchers.values())
        self._queue.clear()
        self._watchers.clear()
        self._finished.clear()
        _cancel_all(handles, watchers)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        if self._bar is not None:
            self._bar.close()

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
        # Dropped without being closed (a ``break`` out of ``async for``): cancel what it
        # queued, on the loop's own thread, without keeping this object alive.
        if getattr(self, "_closed", True):
            return
        loop = self._loop
        if loop is None or _running_loop() is loop:
            self.close()
            return
        self._closed = True
        handles = [h for h in self._queue if isinstance(h, JoinHandle)]
        handles.extend(self._watchers)
        watchers = list(self._watchers.values())
        if self._bar is not None:
            self._bar.close()
        try:
            loop.call_soon_threadsafe(_cancel_all, handles, watchers)
        except RuntimeError:  # the loop is closed: nothing is left to cancel
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("exhausted" if self._exhausted else "open")
        mode = "ordered" if self._ordered else "unordered"
        return f"<MapIterator {state} {mode} outstanding={self.outstanding} window={self._window}>"


async def _watch(handle: JoinHandle[_Pair], sink: weakref.ref[MapIterator[Any]]) -> None:
    """Wait for one task and hand its outcome to the iterator, if it still exists.

    It holds the iterator only weakly, so a dropped iterator is collected (and cancels
    its tasks) while its watchers still wait."""
    outcome: _Outcome
    try:
        outcome = await handle
    except (Exception, asyncio.CancelledError) as exc:
        outcome = _Failed(exc)
    target = sink()
    if target is not None:
        target._deliver(handle, outcome)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _cancel_all(handles: list[JoinHandle[_Pair]], watchers: list[asyncio.Task[None]]) -> None:
    for handle in handles:
        handle.cancel()
    for watcher in watchers:
        watcher.cancel()
