"""procoord.Executor: a :class:`concurrent.futures.Executor` on procoord's workers.

Anything written for an executor (``ProcessPoolExecutor`` code, ``loop.run_in_executor``,
libraries that take an ``executor=``) can run on procoord workers::

    with procoord.Executor(max_workers=4) as ex:
        print(ex.submit(pow, 2, 10).result())           # 1024

Each worker is one process running :func:`_execute`, a processor that calls the submitted
function with its arguments. Calls are routed as ``TaskPrefs.Any`` tasks of a
:class:`~procoord.BlockingCoordinator`, whose event loop runs in a thread of its own:
``submit`` hands the call to that loop and returns a future at once. A worker that dies
fails only the call it was running (:class:`~procoord.WorkerLostError`) and is restarted;
the executor never breaks as a whole.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from ._loop_thread import block_signals
from .backends._base import Backend
from .blocking import BlockingCoordinator
from .errors import RemoteTraceback, TaskProcessError
from .stats import WorkerStats

__all__ = ("Executor",)

P = ParamSpec("P")
T = TypeVar("T")

# Workers are named after their position, so stats() reads naturally.
WORKER_PREFIX = "executor-"


def _close_quietly(blocking: BlockingCoordinator) -> None:
    """Close in a thread of its own that leaves signals (Ctrl-C) to the program's threads."""
    block_signals()
    blocking.close()


def _execute(call: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]) -> Any:
    """The processor of every executor worker: call the function with its arguments."""
    fn, args, kwargs = call
    return fn(*args, **kwargs)


def _apply_chunk(fn: Callable[..., T], chunk: list[tuple[Any, ...]]) -> list[T]:
    """Run ``fn`` over one chunk of ``map``'s argument tuples, in the worker."""
    return [fn(*args) for args in chunk]


class _Future(concurrent.futures.Future[T]):
    """A future whose ``cancel()`` also cancels the procoord task behind it.

    It is True when the call will never deliver: still queued, or not yet handed to a
    worker. A call a worker is running cannot be interrupted: then it is False, as for
    any executor's running future.
    """

    def __init__(self, executor: Executor) -> None:
        super().__init__()
        self._executor = executor
        self._handle: Any = None  # the JoinHandle, once the coordinator queued the call
        self._cancel_requested = False  # cancelled before it was queued: never queue it

    def cancel(self) -> bool:
        if self.done():
            return self.cancelled()
        if not self._executor._cancel_task(self):
            return False
        return super().cancel()


class Executor(concurrent.futures.Executor):
    """A :class:`concurrent.futures.Executor` whose calls run on procoord workers.

    Args:
        max_workers: how many worker processes (default: the number of CPUs).
        backend: where the workers run (default: local processes; a
            :class:`~procoord.backends.RayBackend` puts each in a Ray actor).
        **coordinator_options: passed to :class:`~procoord.BlockingCoordinator`
            (``task_timeout``, ``max_pending``, ``restart_limit``, ...).

    It follows the executor contract: :meth:`submit`, :meth:`map` with ``timeout`` and
    ``chunksize``, :meth:`shutdown` with ``wait`` and ``cancel_futures``, futures usable
    with :func:`concurrent.futures.wait` and :func:`~concurrent.futures.as_completed`.
    Functions, arguments and results are pickled (cloudpickle when plain pickle cannot),
    so lambdas and closures work too. An exception raised by the function is raised by
    ``future.result()`` as itself, with the worker's traceback chained as its cause (as
    ``ProcessPoolExecutor`` does), or as :class:`~procoord.TaskProcessError` when it
    cannot be rebuilt in the parent. A worker process that dies fails only the call it
    was running, with :class:`~procoord.WorkerLostError`, and is restarted.

    Leaving a ``with`` block by Ctrl-C does not wait for the calls as a plain exit does
    (the workers do not get the terminal's Ctrl-C): calls not yet running are
    cancelled, running ones get a few seconds (as with ``BlockingCoordinator``), then
    their workers are killed; a second Ctrl-C kills them at once.
    """

    def __init__(self, max_workers: int | None = None, *, backend: Backend | None = None, **coordinator_options: Any):
        if max_workers is None:
            max_workers = os.cpu_count() or 1
        if max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        self._max_workers = max_workers
        self._lock = threading.Lock()
        self._shutdown = False
        self._futures: set[_Future[Any]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._blocking = BlockingCoordinator(backend=backend, **coordinator_options)
        try:
            self._blocking.run_coroutine(self._start_workers())
        except BaseException:
            self._blocking.close(cancel_pending=True)
            raise

    async def _start_workers(self) -> None:
        coord = self._blocking.coordinator
        await asyncio.gather(*(coord.add_worker(f"{WORKER_PREFIX}{i}", _execute) for i in range(self._max_workers)))

    # -- the executor contract -------------------------------------------------------

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> concurrent.futures.Future[T]:
        """Schedule ``fn(*args, **kwargs)`` on a worker; a future of its result.

        Returns at once. What cannot be pickled, like what the function raises, is
        raised by ``future.result()``."""
        future: _Future[T] = _Future(self)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._futures.add(future)
        future.add_done_callback(self._forget)
        try:
            self._blocking.loop.call_soon_threadsafe(self._start, future, (fn, args, kwargs))
        except RuntimeError:  # the loop is gone: the executor was collected or the interpreter is exiting
            self._forget(future)
            raise RuntimeError("cannot schedule new futures after shutdown") from None
        return future

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[T]:
        """``map(fn, *iterables)`` on the workers, results in input order.

        Every call is submitted at once; ``chunksize`` groups that many calls into one
        task (fewer round trips for cheap calls). The iterator raises
        :class:`TimeoutError` when the next result is not ready ``timeout`` seconds
        after this call, and raises a call's exception where its result would be;
        leaving it early cancels the calls not yet run."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        end_time = None if timeout is None else timeout + time.monotonic()
        argument_tuples = zip(*iterables, strict=False)
        futures: list[concurrent.futures.Future[list[T]]] = []
        while chunk := _take(argument_tuples, chunksize):
            futures.append(self.submit(_apply_chunk, fn, chunk))
        return _results(futures, end_time)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            self._stop_accepting(cancel_futures=True)
            self._blocking.__exit__(exc_type, exc, tb)  # the grace, then the kill
        else:
            self.shutdown(wait=True)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Accept no more calls and stop the workers once the submitted calls are done.

        ``cancel_futures=True`` first cancels every call not yet running. ``wait=False``
        returns at once; the workers stop in the background when their calls are done
        (the interpreter waits for that at exit)."""
        self._stop_accepting(cancel_futures)
        if wait:
            self._blocking.close()
        else:
            threading.Thread(target=_close_quietly, args=(self._blocking,), name="procoord-executor-shutdown").start()

    def _stop_accepting(self, cancel_futures: bool) -> None:
        """Refuse new calls; with ``cancel_futures``, cancel those not running yet."""
        with self._lock:
            self._shutdown = True
            pending = list(self._futures)
        if cancel_futures:
            for future in pending:
                future.cancel()

    # -- more than the contract ---------------------------------------------------------

    @property
    def max_workers(self) -> int:
        """How many worker processes the executor runs."""
        return self._max_workers

    @property
    def coordinator(self) -> BlockingCoordinator:
        """The :class:`~procoord.BlockingCoordinator` the calls run on."""
        return self._blocking

    def stats(self) -> dict[Hashable, WorkerStats]:
        """Every worker's load (see :meth:`Coordinator.stats <procoord.Coordinator.stats>`)."""
        return self._blocking.stats()

    def __repr__(self) -> str:
        state = "shut down" if self._shutdown else "running"
        return f"<procoord.Executor {state} max_workers={self._max_workers} pending={len(self._futures)}>"

    # -- on the coordinator's loop --------------------------------------------------------

    def _start(self, future: _Future[Any], call: tuple[Any, ...]) -> None:
        task = asyncio.ensure_future(self._drive(future, call))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drive(self, future: _Future[Any], call: tuple[Any, ...]) -> None:
        if future._cancel_requested:
            return
        try:
            handle = await self._blocking.coordinator.run(call)
        except BaseException as exc:  # nothing was queued: SerializationError, closed, ...
            _deliver(future, exc=exc)
            return
        future._handle = handle
        try:
            result, _ = await handle.join()
        except asyncio.CancelledError:  # cancelled by future.cancel(), which finishes the future
            return
        except TaskProcessError as exc:
            _deliver(future, exc=_as_raised(exc))
        except BaseException as exc:
            _deliver(future, exc=exc)
        else:
            _deliver(future, result=result)

    def _cancel_task(self, future: _Future[Any]) -> bool:
        """Cancel the task behind ``future`` (from any thread); True when it will not deliver."""

        def cancel() -> bool:
            if future.done():
                return False
            if future._handle is None:
                future._cancel_requested = True
                return True
            return bool(future._handle.cancel())

        runner = self._blocking._runner
        if runner.on_loop_thread():
            return cancel()
        answer: concurrent.futures.Future[bool] = concurrent.futures.Future()

        def run() -> None:
            try:
                answer.set_result(cancel())
            except BaseException as exc:  # pragma: no cover - cancel() does not raise
                answer.set_exception(exc)

        try:
            self._blocking.loop.call_soon_threadsafe(run)
        except RuntimeError:  # the loop has closed: every task is over
            return False
        return answer.result()

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._futures.discard(future)


def _deliver(future: _Future[Any], *, result: Any = None, exc: BaseException | None = None) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


def _as_raised(error: TaskProcessError) -> BaseException:
    """What ``future.result()`` raises for a call that raised: the original exception
    (its cause is the worker's traceback), or the TaskProcessError when there is none."""
    cause = error.__cause__
    if cause is None or isinstance(cause, RemoteTraceback):
        return error
    return cause


def _take(iterator: Iterator[tuple[Any, ...]], n: int) -> list[tuple[Any, ...]]:
    chunk = []
    for args in iterator:
        chunk.append(args)
        if len(chunk) == n:
            break
    return chunk


def _results(futures: list[concurrent.futures.Future[list[T]]], end_time: float | None) -> Iterator[T]:
    try:
        futures.reverse()  # pop from the end, so the list drops each future once yielded
        while futures:
            future = futures.pop()
            try:
                chunk = future.result(None if end_time is None else end_time - time.monotonic())
            finally:
                if not future.done():
                    future.cancel()
            yield from chunk
    finally:
        for future in futures:
            future.cancel()
