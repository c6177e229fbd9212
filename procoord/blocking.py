"""BlockingCoordinator: the Coordinator for code without asyncio.

A :class:`~procoord.Coordinator` runs on an event loop of its own (uvloop) in a daemon
thread; every method here hands one coroutine to that loop
(``asyncio.run_coroutine_threadsafe``) and waits for it, so the logic lives only in the
async API and any number of threads may call at once (the loop thread itself is
procoord._loop_thread)::

    caller threads --run_coroutine_threadsafe--> loop thread: Coordinator --> workers
                   <--concurrent.futures.Future--

A facade never closed is closed when garbage collected or at interpreter exit: queued
tasks are dropped, running ones get a short grace, and no worker outlives the process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
import weakref
from collections.abc import (
    AsyncIterable,
    Awaitable,
    Callable,
    Coroutine,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeVar, Unpack, final, overload

from ._bulk import MapIterator
from ._loop_thread import LoopThread, finalize, join_thread, wait_for_result
from ._loops import LoopView
from ._options import CoordinatorOptions, MapOptions
from ._stream import StreamIterator
from ._typing import ResultT, TaskT
from .backends._base import Backend
from .coordinator import ERROR_EXIT_GRACE_S, Coordinator, terminate_workers
from .errors import CoordinatorClosedError
from .handle import JoinHandle
from .prefs import ANY, Pref
from .processor import ProcessorLike
from .stats import WorkerStats

__all__ = ("BlockingCoordinator",)

T = TypeVar("T")

logger = logging.getLogger("procoord")
F = TypeVar("F", bound=Callable[..., Any])


def _mirrors(async_fn: Callable[..., Any], blocking_note: str = "") -> Callable[[F], F]:
    """Give a facade method the docstring of the Coordinator method it bridges (and a
    note on what differs when it blocks); the surfaces test checks both stay in step."""

    def wrap(fn: F) -> F:
        doc = inspect.cleandoc(async_fn.__doc__ or "")
        fn.__doc__ = doc + (f"\n\nBlocking: {blocking_note}" if blocking_note else "")
        return fn

    return wrap


_FUTURE_NOTE = (
    "returns a :class:`concurrent.futures.Future` of what the handle's join gives, once "
    "the task is queued; ``future.cancel()`` cancels the task as ``JoinHandle.cancel`` does."
)


@final
class BlockingCoordinator(Generic[TaskT, ResultT]):
    """A :class:`~procoord.Coordinator` for callers without asyncio, safe to use from
    many threads at once.

    ``BlockingCoordinator[T, R]()`` types tasks and results as ``Coordinator[T, R]`` does.

    It takes the same arguments as :class:`~procoord.Coordinator` and runs one on its own
    event loop in a background thread. Use it as a context manager, or call
    :meth:`close`; one left open is closed when garbage collected or at interpreter exit.
    Anything of the async API not mirrored here (interface proxies, handles) is reached
    through :meth:`run_coroutine` and :attr:`coordinator`.
    """

    def __init__(self, queue_threshold: int = 3, **options: Unpack[CoordinatorOptions]) -> None:
        def build() -> Coordinator[TaskT, ResultT]:
            return Coordinator[TaskT, ResultT](queue_threshold, **options)

        self._runner = LoopThread(build)
        coord = self._runner.coordinator
        assert coord is not None
        self._coord: Coordinator[TaskT, ResultT] = coord
        self._close_lock = threading.Lock()
        self._finalizer = weakref.finalize(self, finalize, self._runner)

    # -- context manager ------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
            return
        # As in ``async with``: on an error (or Ctrl-C), do not wait for queued work,
        # and give running tasks a grace before their workers are killed.
        if issubclass(exc_type, KeyboardInterrupt) and self._coord.pending:
            logger.warning(
                "interrupted: stopping the workers; running tasks get %g s (Ctrl-C again to kill them now)",
                ERROR_EXIT_GRACE_S,
            )
        self.close(cancel_pending=True, timeout=ERROR_EXIT_GRACE_S)

    # -- the generic bridge -----------------------------------------------------------

    @property
    def coordinator(self) -> Coordinator[TaskT, ResultT]:
        """The underlying Coordinator; use it only from coroutines given to
        :meth:`run_coroutine` (it lives on :attr:`loop`)."""
        return self._coord

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the coordinator runs on (in its own thread)."""
        return self._runner.loop

    def run_coroutine_nowait(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the coordinator's loop; a :class:`concurrent.futures.Future`
        of its result. Cancelling the future cancels the coroutine."""
        if self._coord.closed and not self._runner.thread.is_alive():
            coro.close()
            raise CoordinatorClosedError("the coordinator is closed; create a new one")
        try:
            return asyncio.run_coroutine_threadsafe(coro, self._runner.loop)
        except RuntimeError:  # the loop has closed
            coro.close()
            raise CoordinatorClosedError("the coordinator is closed; create a new one") from None

    def run_coroutine(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the coordinator's loop and wait for its result (or error).

        This is how anything of the async API is used from blocking code, for example an
        interface proxy: ``bc.run_coroutine(proxy.any().resize(img))``. With ``timeout``
        (seconds), raises :class:`TimeoutError` and cancels the coroutine when it expires.
        """
        if self._runner.on_loop_thread():
            coro.close()
            raise RuntimeError("a BlockingCoordinator cannot be waited on from its own event loop; use .coordinator")
        future = self.run_coroutine_nowait(coro)
        try:
            return wait_for_result(future, timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise
        except BaseException:
            future.cancel()  # interrupted (KeyboardInterrupt): do not leave it running
            raise

    def _sync(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        async def call() -> T:
            return fn(*args, **kwargs)

        return self.run_coroutine(call())

    # -- workers --------------------------------------------------------------------

    @_mirrors(Coordinator.register)
    def register(self, name: str, factory: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        self._sync(self._coord.register, name, factory, *args, **kwargs)

    @_mirrors(Coordinator.add_worker)
    def add_worker(
        self,
        ident: Hashable,
        processor: ProcessorLike[TaskT, ResultT],
        *,
        restart: bool = True,
        backend: Backend | None = None,
        env: Mapping[str, str | None] | None = None,
        max_tasks: int | None = None,
        max_rss: int | None = None,
    ) -> bool:
        return self.run_coroutine(
            self._coord.add_worker(
                ident, processor, restart=restart, backend=backend, env=env, max_tasks=max_tasks, max_rss=max_rss
            )
        )

    @_mirrors(Coordinator.add_workers)
    def add_workers(
        self,
        factory: str,
        count: int,
        *,
        restart: bool = True,
        backend: Backend | None = None,
        env: Mapping[str, str | None] | None = None,
        max_tasks: int | None = None,
        max_rss: int | None = None,
    ) -> list[str]:
        return self.run_coroutine(
            self._coord.add_workers(
                factory, count, restart=restart, backend=backend, env=env, max_tasks=max_tasks, max_rss=max_rss
            )
        )

    @_mirrors(Coordinator.remove_worker)
    def remove_worker(self, ident: Hashable) -> bool:
        return self.run_coroutine(self._coord.remove_worker(ident))

    @_mirrors(Coordinator.workers)
    def workers(self) -> list[Hashable]:
        return self._sync(self._coord.workers)

    def __len__(self) -> int:
        return len(self.workers())

    def __contains__(self, ident: object) -> bool:
        return ident in self.workers()

    # -- tasks ----------------------------------------------------------------------

    @_mirrors(Coordinator.run, _FUTURE_NOTE)
    def run(
        self, task: TaskT, prefs: Pref = ANY, *, timeout: float | None = None, retries: int = 0, priority: int = 0
    ) -> concurrent.futures.Future[tuple[ResultT, Hashable]]:
        queued = self._coord.run(task, prefs, timeout=timeout, retries=retries, priority=priority)
        return self.run_coroutine(self._queue(queued))

    @_mirrors(Coordinator.run_nowait, _FUTURE_NOTE)
    def run_nowait(
        self, task: TaskT, prefs: Pref = ANY, *, timeout: float | None = None, retries: int = 0, priority: int = 0
    ) -> concurrent.futures.Future[tuple[ResultT, Hashable]]:
        queued = _now(self._coord.run_nowait, task, prefs, timeout=timeout, retries=retries, priority=priority)
        return self.run_coroutine(self._queue(queued))

    @_mirrors(Coordinator.run_batch, _FUTURE_NOTE)
    def run_batch(
        self,
        tasks: Sequence[TaskT],
        prefs: Pref = ANY,
        *,
        timeout: float | None = None,
        retries: int = 0,
        priority: int = 0,
    ) -> concurrent.futures.Future[tuple[list[tuple[bool, Any]], Hashable]]:
        queued = self._coord.run_batch(tasks, prefs, timeout=timeout, retries=retries, priority=priority)
        return self.run_coroutine(self._queue(queued))

    async def _queue(self, queued: Awaitable[JoinHandle[T]]) -> concurrent.futures.Future[T]:
        loop = asyncio.get_running_loop()
        handle = await queued
        future = asyncio.run_coroutine_threadsafe(handle.join(), loop)

        runner = self._runner

        def cancel_task(done: concurrent.futures.Future[T]) -> None:
            # Once future.cancel() returns, a queued task can no longer start.
            if done.cancelled():
                runner.call_and_wait(handle.cancel)

        future.add_done_callback(cancel_task)
        return future

    @_mirrors(Coordinator.call, "interrupting the caller (Ctrl-C) cancels the task likewise.")
    def call(
        self, task: TaskT, prefs: Pref = ANY, *, timeout: float | None = None, retries: int = 0, priority: int = 0
    ) -> tuple[ResultT, Hashable]:
        return self.run_coroutine(self._coord.call(task, prefs, timeout=timeout, retries=retries, priority=priority))

    @_mirrors(
        Coordinator.stream,
        "a plain iterator (:class:`BlockingMapIterator`) over the parts; leaving its "
        "``for`` loop early cancels the task likewise.",
    )
    def stream(
        self,
        task: TaskT,
        prefs: Pref = ANY,
        *,
        timeout: float | None = None,
        retries: int = 0,
        priority: int = 0,
    ) -> BlockingMapIterator[Any]:
        aiter_ = self._sync(self._coord.stream, task, prefs, timeout=timeout, retries=retries, priority=priority)
        return BlockingMapIterator(self, aiter_)

    @overload
    def map(
        self,
        iterable: Iterable[TaskT] | AsyncIterable[TaskT],
        prefs: Pref = ANY,
        *,
        return_exceptions: Literal[False] = False,
        **options: Unpack[MapOptions],
    ) -> BlockingMapIterator[tuple[ResultT, Hashable]]: ...
    @overload
    def map(
        self,
        iterable: Iterable[TaskT] | AsyncIterable[TaskT],
        prefs: Pref = ANY,
        *,
        return_exceptions: bool,
        **options: Unpack[MapOptions],
    ) -> BlockingMapIterator[tuple[ResultT, Hashable] | BaseException]: ...
    @_mirrors(
        Coordinator.map,
        "a plain iterator (:class:`BlockingMapIterator`); the iterable is read on the "
        "coordinator's thread, one item at a time.",
    )
    def map(
        self,
        iterable: Iterable[TaskT] | AsyncIterable[TaskT],
        prefs: Pref = ANY,
        *,
        return_exceptions: bool = False,
        **options: Unpack[MapOptions],
    ) -> BlockingMapIterator[Any]:
        aiter_ = self._sync(self._coord.map, iterable, prefs, return_exceptions=return_exceptions, **options)
        return BlockingMapIterator(self, aiter_)

    # -- state ----------------------------------------------------------------------

    @_mirrors(Coordinator.stats)
    def stats(self) -> dict[Hashable, WorkerStats]:
        return self.run_coroutine(self._coord.stats())

    @property
    def max_pending(self) -> int | None:
        """The back-pressure limit given to the constructor (None: no limit)."""
        return self._coord.max_pending

    @property
    def pending(self) -> int:
        """Tasks submitted and not yet finished, on every worker and in the shared queue."""
        return self._coord.pending

    @property
    def closed(self) -> bool:
        """Whether ``close`` has been called."""
        return self._coord.closed

    @_mirrors(Coordinator.close, "the coordinator's thread ends too. It may be called from any thread.")
    def close(self, cancel_pending: bool = False, *, timeout: float | None = None) -> None:
        if self._runner.on_loop_thread():
            raise RuntimeError("a BlockingCoordinator cannot be closed from its own event loop")
        with self._close_lock:
            if not self._finalizer.alive:
                return
            try:
                if self._runner.thread.is_alive():
                    self.run_coroutine(self._coord.close(cancel_pending, timeout=timeout))
            except KeyboardInterrupt:
                # Interrupted while closing (a second Ctrl-C): no more waiting, for the
                # running tasks (their workers are killed) nor for the queued ones.
                terminate_workers(self._coord)
                cancel_pending = True
                raise
            finally:
                self._finalizer.detach()
                self._runner.request_stop(cancel_pending)
                join_thread(self._runner.thread)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<BlockingCoordinator {state} workers={len(self._coord)} pending={self._coord.pending}>"


async def _now(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return fn(*args, **kwargs)


@final
class BlockingMapIterator(Iterator[T]):
    """The plain iterator returned by :meth:`BlockingCoordinator.map` (and ``stream``);
    each step waits for the next outcome (or part) of the async iterator on the
    coordinator's loop.

    Leaving the ``for`` loop early (or :meth:`close`, or ``with``, or dropping it)
    cancels what it queued."""

    def __init__(self, owner: BlockingCoordinator, aiter_: MapIterator[T] | StreamIterator[T]) -> None:
        self._owner = owner
        self._aiter: MapIterator[T] | StreamIterator[T] | None = aiter_

    def __iter__(self) -> LoopView[T]:
        # The loop's own view: leaving the loop early closes this iterator, even while
        # it is held in a variable (see procoord._loops).
        return LoopView(self)

    def __next__(self) -> T:
        aiter_ = self._aiter
        if aiter_ is None:
            raise StopIteration
        try:
            return self._owner.run_coroutine(_anext(aiter_))
        except StopAsyncIteration:
            self._aiter = None
            raise StopIteration from None

    def close(self) -> None:
        """Cancel what is outstanding; the iterator then ends."""
        aiter_, self._aiter = self._aiter, None
        if aiter_ is not None and not aiter_.closed:
            # Once close() returns (or the loop's ``break`` drops the iterator), a queued
            # task can no longer start.
            self._owner._runner.call_and_wait(aiter_.close)

    def __enter__(self) -> BlockingMapIterator[T]:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<BlockingMapIterator {self._aiter!r}>"


async def _anext(aiter_: MapIterator[T] | StreamIterator[T]) -> T:
    return await aiter_.__anext__()
