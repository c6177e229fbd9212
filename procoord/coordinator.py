"""The Coordinator: the public API over workers, dispatch and life cycle.

The path of one task, hop by hop, is in ``procoord._dispatch``; ``map`` and ``stream``
come from ``procoord._work_shapes``, adding and removing workers goes through
``procoord._membership``.

Everything here runs on the caller's event loop; process and pipe details live behind
the backend interface (``procoord.backends``).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator, Hashable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, Unpack, final

from . import _wire
from ._call import CallFuture, call_when_room, new_call
from ._dispatch import Dispatcher
from ._membership import WorkerDefaults, add_many, free_idents, retire, start_worker
from ._misuse import LoopBinding, NotAwaited, async_with_needed, require_asyncio
from ._options import CoordinatorOptions, check_timeout, settings
from ._recycler import Recycler
from ._remote import BatchValue, outcome_pairs
from ._shutdown import Closer, terminate_all
from ._task import Task, check_task_options
from ._typing import ResultT, TaskT
from ._work_shapes import WorkShapes
from .backends._base import Backend
from .backends.local import LocalBackend
from .errors import CoordinatorClosedError
from .handle import JoinHandle
from .prefs import ANY, Pref
from .processor import Factory, ProcessorLike
from .stats import WorkerStats

__all__ = ("Coordinator",)

# Leaving ``async with`` on an exception: how long running tasks get before their
# workers are killed.
ERROR_EXIT_GRACE_S = 5.0

# run() lets the event loop turn once every this many calls: often enough that workers
# are fed while a burst is issued, rarely enough to cost nothing measurable.
YIELD_EVERY_RUNS = 64


# What a task given to a closed coordinator raises.
_CLOSED = "the coordinator is closed; create a new one"


@final
class Coordinator(WorkShapes[TaskT, ResultT]):
    """Load-balances tasks over stateful workers, one OS process each.

    ``Coordinator[T, R]()`` is one whose workers take tasks of type ``T`` and give
    results of type ``R``, for type checkers: ``add_worker`` accepts only processors of
    those types and ``run``, ``call`` and ``map`` give ``R``. ``Coordinator()`` is
    ``Coordinator[Any, Any]``.

    Use it as an async context manager (``async with Coordinator() as coord``), or call
    :meth:`close` yourself. A coordinator left open is stopped when it is garbage
    collected or at interpreter exit: its worker processes never outlive it.

    Args:
        queue_threshold: ``Preferred(ident)`` uses that worker while fewer than this
            many tasks are queued to it.
        backend: where workers run by default (``LocalBackend()`` when None).
        ewma_floor: task times below this (seconds, default 0.001) count as this for
            routing.
        max_pending: when set, ``run`` waits while this many tasks are unfinished
            (and ``run_nowait`` raises).
        task_timeout: default per-task timeout in seconds (None: no timeout).
        restart_limit: a worker that crashes more than this many times (default 5)
            within ``restart_window`` seconds (default 60) is marked failed instead
            of restarted.
        restart_window: see ``restart_limit``.
        max_tasks_per_worker: recycle every worker after this many tasks (None:
            never); ``add_worker(max_tasks=...)`` overrides it for one worker.
        max_rss_per_worker: recycle a worker once its memory (RSS, bytes) exceeds
            this after a task (None: never); ``add_worker(max_rss=...)`` overrides it.
    """

    def __init__(self, queue_threshold: int = 3, **options: Unpack[CoordinatorOptions]) -> None:
        chosen = settings(queue_threshold, options)
        self.queue_threshold = chosen.queue_threshold
        # A backend made here is closed here (its launcher ends with the coordinator).
        self._own_backend: LocalBackend | None = None
        backend = chosen.backend
        if backend is None:
            backend = self._own_backend = LocalBackend()
        self.backend: Backend = backend
        self.ewma_floor = chosen.ewma_floor
        self.task_timeout = chosen.task_timeout
        self.restart_limit = chosen.restart_limit
        self.restart_window = chosen.restart_window
        self.max_tasks_per_worker = chosen.max_tasks_per_worker
        self.max_rss_per_worker = chosen.max_rss_per_worker
        self._dispatch = Dispatcher(chosen.queue_threshold, chosen.ewma_floor, chosen.max_pending)
        self._cancel_call = self._dispatch.cancel  # bound once: a call keeps it while pending
        self._slots = self._dispatch.slots
        self._ledger = self._dispatch.ledger
        self._recycler = Recycler(self._dispatch)
        self._dispatch.on_recycle = self._recycler.start
        self._factories: dict[str, Factory] = {}
        self._runs_since_yield = 0
        self._closer = Closer(self._dispatch, self._recycler.settle, self._own_backend)
        self._binding = LoopBinding("Coordinator")
        # Whatever happens to this object, its processes go with it.
        self._finalizer = weakref.finalize(self, terminate_all, self._slots, self._dispatch.retiring)

    # -- context manager ------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._check_loop()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            await self.close()
        else:
            # Leaving on an error (or Ctrl-C): nobody will use the queued results, and a
            # long running task must not hold the way out.
            await self.close(cancel_pending=True, timeout=ERROR_EXIT_GRACE_S)

    if not TYPE_CHECKING:  # `with` by mistake: an error that names `async with`

        def __enter__(self) -> None:
            async_with_needed(type(self))

        def __exit__(self, *exc_info: object) -> None:
            pass

    # -- workers --------------------------------------------------------------------

    def register(self, name: str, factory: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        """Register a processor factory under ``name``, with arguments bound to it.

        ``add_worker(ident, name)`` then calls ``factory(*args, **kwargs)`` inside the
        worker process, so the processor may hold things that cannot be pickled.
        Registering a name again replaces the factory for workers added afterwards.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"a factory name must be a non-empty str, not {name!r}")
        if not callable(factory):
            raise TypeError(f"factory {name!r} must be callable, not {type(factory).__qualname__}")
        self._factories[name] = Factory(name, factory, args, kwargs)

    async def add_worker(
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
        """Start a worker process running ``processor`` and return once it can take tasks.

        ``processor`` is a :class:`~procoord.TaskProcessor` instance, a callable taking
        one task (sync or async), or the name of a registered factory. Returns True when
        it replaced a worker with the same ident (which is retired as ``remove_worker``
        retires it). With ``restart=False`` a crashed worker is marked failed instead
        of restarted. ``env`` sets (str) or removes (None) environment variables for
        this worker, on top of ``os.environ`` as it is now; a restart keeps them.

        ``max_tasks`` / ``max_rss`` (bytes) recycle the worker: after that many tasks,
        or once its memory (measured after every task) exceeds ``max_rss``, a fresh process
        with the same ident and processor is started while the old one goes on, then
        takes over its queue; no task fails or is lost because of it. None takes the
        coordinator's ``max_tasks_per_worker`` / ``max_rss_per_worker``.

        Raises:
            WorkerStartError: the worker could not start (unknown factory name, the
                processor raised while being built, the process died).
            SerializationError: the processor cannot be pickled.
            CoordinatorClosedError: after ``close``.
        """
        self._check_open()
        require_asyncio("add_worker")
        return await start_worker(
            self._dispatch,
            self._factories,
            self._worker_defaults(),
            ident,
            processor,
            restart=restart,
            backend=backend,
            env=env,
            max_tasks=max_tasks,
            max_rss=max_rss,
        )

    def _worker_defaults(self) -> WorkerDefaults:
        return WorkerDefaults(
            self.backend, self.restart_limit, self.restart_window, self.max_tasks_per_worker, self.max_rss_per_worker
        )

    async def add_workers(
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
        """Start ``count`` workers of the registered factory ``factory`` in parallel.

        Their idents are ``"<factory>-<n>"``, numbered from 0 and skipping idents in use.
        Returns the new idents once all are ready. If any cannot start, the others are
        removed again and the first WorkerStartError is raised.
        """
        idents = free_idents(self._slots, factory, count)

        def add(ident: str) -> Awaitable[bool]:
            return self.add_worker(
                ident, factory, restart=restart, backend=backend, env=env, max_tasks=max_tasks, max_rss=max_rss
            )

        return await add_many(idents, add, self.remove_worker)

    async def remove_worker(self, ident: Hashable) -> bool:
        """Retire a worker: it finishes its running task and the tasks already sent to
        it, its queued tasks go to other workers (Any / Preferred) or fail with
        NoSuchWorkerError (Required), and its process exits before this returns. False
        for an unknown ident. Cancelling the call leaves the retirement going on (and
        ``close`` still waits for it)."""
        self._check_loop()
        return await retire(self._dispatch, ident)

    def workers(self) -> list[Hashable]:
        """The idents of the current workers, in the order they were added."""
        return list(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, ident: object) -> bool:
        return ident in self._slots

    # -- tasks ----------------------------------------------------------------------

    def run(
        self, task: TaskT, prefs: Pref = ANY, *, timeout: float | None = None, retries: int = 0, priority: int = 0
    ) -> Coroutine[Any, Any, JoinHandle[tuple[ResultT, Hashable]]]:
        """Queue a task and return its :class:`JoinHandle` at once: ``h = await coord.run(task)``.

        It waits only while ``max_pending`` tasks are unfinished, when that is set.
        ``timeout`` (seconds, from when the task starts running) overrides the
        coordinator's ``task_timeout``. ``retries``: how many more times the task runs
        when its worker dies under it or it times out (never when it raises); the
        final error's ``attempts`` says how many runs were made. ``priority``: among
        tasks waiting in the coordinator, higher ones are written to workers first,
        FIFO within one priority; a running task is never preempted.

        Raises, without queuing anything:
            SerializationError: the task cannot be pickled.
            NoSuchWorkerError: ``Required`` names an unknown worker.
            NoWorkersError: there is no worker.
            CoordinatorClosedError: after ``close``.
        """
        return NotAwaited(self._run_steps, (task, prefs, timeout, retries, priority), "coord.run")

    def _run_steps(
        self, task: TaskT, prefs: Pref, timeout: float | None, retries: int, priority: int
    ) -> Generator[Any, None, JoinHandle[tuple[ResultT, Hashable]]]:
        """What ``await coord.run(...)`` does, as a generator (see NotAwaited)."""
        if not self._binding.here():  # _check_open, inline: this runs once per task
            self._binding.check()
        if self._closer.closing:
            raise CoordinatorClosedError(_CLOSED)
        if self._ledger.full():
            yield from self._ledger.wait_for_space(self._check_open).__await__()
            self._check_open()
        handle: JoinHandle[tuple[ResultT, Hashable]] = JoinHandle(
            self._submit_task(task, prefs, timeout, 0, retries, priority), self
        )
        self._runs_since_yield += 1
        if self._runs_since_yield >= YIELD_EVERY_RUNS:
            # A caller issuing a burst in a loop never lets the event loop turn: let the
            # results in now and then, so workers are fed while tasks are still issued.
            # (A bare yield is asyncio.sleep(0): the awaiting task lets the loop turn once.)
            self._runs_since_yield = 0
            yield
        return handle

    def run_nowait(
        self, task: TaskT, prefs: Pref = ANY, *, timeout: float | None = None, retries: int = 0, priority: int = 0
    ) -> JoinHandle[tuple[ResultT, Hashable]]:
        """Like :meth:`run`, but never waits: when ``max_pending`` tasks are unfinished it
        raises :class:`asyncio.QueueFull` (as ``Queue.put_nowait`` does), so a service
        can answer "busy" at once. Must be called on the coordinator's event loop."""
        if not self._binding.here():  # _check_open, inline: this runs once per task
            self._binding.check()
        if self._closer.closing:
            raise CoordinatorClosedError(_CLOSED)
        if self._ledger.full():
            raise asyncio.QueueFull(
                f"{self._ledger.unfinished} tasks are unfinished (max_pending={self._ledger.max_pending}); "
                "await run() to wait for room, or try again later"
            )
        return JoinHandle(self._submit_task(task, prefs, timeout, 0, retries, priority), self)

    async def run_batch(
        self,
        tasks: Sequence[TaskT],
        prefs: Pref = ANY,
        *,
        timeout: float | None = None,
        retries: int = 0,
        priority: int = 0,
    ) -> JoinHandle[tuple[list[tuple[bool, Any]], Hashable]]:
        """Queue several tasks as one unit: one pickle, one frame, one worker, run in order.

        The handle's join gives ``(outcomes, worker)``, one outcome per task:
        ``(True, result)`` or ``(False, exception)``. Routing, timeouts (for the whole
        batch), retries, priority, cancellation and crashes apply to the batch as a whole. Cheap tasks
        gain the most: the per-task cost of the channel is paid once per batch.
        """
        chunk = await self._run_chunk(tasks, prefs, timeout=timeout, retries=retries, priority=priority)
        return chunk.map(outcome_pairs)

    async def _run_chunk(
        self,
        tasks: Sequence[Any],
        prefs: Pref = ANY,
        *,
        timeout: float | None = None,
        retries: int = 0,
        priority: int = 0,
    ) -> JoinHandle[tuple[BatchValue, Hashable]]:
        """``run_batch`` giving ``((results, errors by index), worker)`` (what ``map`` takes)."""
        self._check_open()
        if not tasks:
            raise ValueError("run_batch needs at least one task")
        if self._ledger.full():
            await self._ledger.wait_for_space(self._check_open)
            self._check_open()
        return self._submit(_wire.Batch(tasks), prefs, timeout, len(tasks), retries, priority)

    def _submit(
        self, task: Any, prefs: Pref, timeout: float | None, size: int, retries: int = 0, priority: int = 0
    ) -> JoinHandle[Any]:
        return JoinHandle(self._submit_task(task, prefs, timeout, size, retries, priority), self)

    def _as_sink(self) -> Coordinator[TaskT, ResultT]:
        return self

    def _cancel_task(self, task: Task) -> bool:
        return self._dispatch.cancel(task)

    def _submit_task(
        self,
        task: Any,
        prefs: Pref,
        timeout: float | None,
        size: int,
        retries: int,
        priority: int,
        future: asyncio.Future[Any] | None = None,
    ) -> Task:
        """Queue a task on a coordinator that the caller found open, on its loop."""
        if timeout is None:
            timeout = self.task_timeout
        else:
            check_timeout(timeout)
        if retries or priority:
            check_task_options(retries, priority)
        return self._dispatch.submit(task, prefs, timeout, size, None, retries, priority, future)

    def call(
        self, task: TaskT, prefs: Pref = ANY, *, timeout: float | None = None, retries: int = 0, priority: int = 0
    ) -> CallFuture[tuple[ResultT, Hashable]]:
        """``run`` the task and wait for it: ``result, worker = await coord.call(task)``.

        On the coordinator's event loop the task is queued at once and what comes back
        is its future (also usable as a coroutine: ``asyncio.gather``, ``wait_for`` and
        ``create_task`` all take it), so a gather of many calls costs no asyncio Task
        per call. The call owns its task: cancelling the caller (``asyncio.timeout``, a
        client that went away) or the future cancels the task as :meth:`JoinHandle.cancel`
        does, so a queued task never runs and a running async ``do_work`` is cancelled in
        its worker. Errors that ``run`` raises are raised when the call is awaited."""
        loop = self._binding.loop
        if loop is None or not self._binding.here():
            # Binds the loop, or reports a wrong loop or thread, when awaited.
            return NotAwaited(self._call_steps, (task, prefs, timeout, retries, priority), "coord.call")  # type: ignore[return-value]

        if self._ledger.full() and not self._closer.closing:
            args = (self, task, prefs, timeout, retries, priority)
            return call_when_room(loop, self._wait_for_room, _submit_call, args, self._cancel_call)
        # Queued now, with no helper in between: this runs once per call.
        future: CallFuture[tuple[ResultT, Hashable]] = new_call(loop)
        try:
            if self._closer.closing:  # _check_not_closed, inline: this runs once per call
                raise CoordinatorClosedError(_CLOSED)
            record = self._submit_task(task, prefs, timeout, 0, retries, priority, future)
        except Exception as exc:
            future.set_exception(exc)
            return future
        future.on_cancel(self._cancel_call, record)
        return future

    def _wait_for_room(self) -> Awaitable[None]:
        return self._ledger.wait_for_space(self._check_open)

    def _call_steps(
        self, task: TaskT, prefs: Pref, timeout: float | None, retries: int, priority: int
    ) -> Generator[Any, None, tuple[ResultT, Hashable]]:
        """What ``await coord.call(...)`` does off the coordinator's loop (where it raises)
        or before it is bound: ``run`` then ``join``."""
        handle = yield from self._run_steps(task, prefs, timeout, retries, priority)
        try:
            return (yield from handle.__await__())
        except asyncio.CancelledError:
            if not handle.done():  # the caller was cancelled, not the task
                handle.cancel()
            raise

    # -- stats ----------------------------------------------------------------------

    async def stats(self) -> dict[Hashable, WorkerStats]:
        """A snapshot of every worker's load, keyed by ident. Never waits on a worker:
        load figures are those the workers last reported (every 0.25 s by default)."""
        self._check_loop()
        return self._dispatch.stats()

    @property
    def max_pending(self) -> int | None:
        """The back-pressure limit given to the constructor (None: no limit)."""
        return self._ledger.max_pending

    @property
    def pending(self) -> int:
        """Tasks submitted and not yet finished, on every worker and in the shared queue."""
        return self._ledger.unfinished

    # -- closing --------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether ``close`` has been called."""
        return self._closer.closing

    def _check_loop(self) -> None:
        """Bind the coordinator to the running event loop on first use; refuse any other."""
        self._binding.check()

    def _check_open(self) -> None:
        if not self._binding.here():
            self._binding.check()
        if self._closer.closing:  # _check_not_closed, inline: this runs once per task
            raise CoordinatorClosedError(_CLOSED)

    def _check_not_closed(self) -> None:
        if self._closer.closing:
            raise CoordinatorClosedError(_CLOSED)

    async def close(self, cancel_pending: bool = False, *, timeout: float | None = None) -> None:
        """Stop accepting tasks, let queued and running tasks finish, and stop every
        worker process. After this returns no worker process of this coordinator is
        alive. Calling it while another call is at work waits for that one; a call
        that was cancelled (``asyncio.wait_for``) leaves the job to the next one, which
        finishes it (with its own ``timeout``).

        Args:
            cancel_pending: fail queued tasks with CoordinatorClosedError instead of
                running them (running tasks still finish).
            timeout: seconds to wait for that; then workers still busy are killed
                (their running tasks fail with WorkerLostError) and tasks not started
                fail with CoordinatorClosedError. None waits as long as it takes.
        """
        self._check_loop()
        check_timeout(timeout)
        await self._closer.close(cancel_pending, timeout, self._finalizer.detach)

    def __repr__(self) -> str:
        state = "closed" if self._closer.closing else "open"
        return f"<Coordinator {state} workers={len(self._slots)} pending={self._ledger.unfinished}>"


def _submit_call(future: CallFuture[Any], args: tuple[Any, ...]) -> Task:
    """Queue the task of ``coord.call`` (on its loop: checked by call) with its future."""
    coord: Coordinator[Any, Any] = args[0]
    task, prefs, timeout, retries, priority = args[1:]
    coord._check_not_closed()
    return coord._submit_task(task, prefs, timeout, 0, retries, priority, future)


def terminate_workers(coord: Coordinator) -> None:
    """End every worker process of ``coord`` now, from any thread (SIGTERM, then SIGKILL
    after a short grace); for a caller that cannot wait for ``close`` any more."""
    coord._finalizer()
