"""Work shapes over a coordinator's tasks: ``map``, a bounded window of tasks over any
iterable, and ``stream``, the parts of a generator task as the worker yields them.

:class:`WorkShapes` is the part of :class:`~procoord.Coordinator` that offers them; it
reaches the rest of the coordinator through the few members it declares.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Hashable, Iterable
from typing import TYPE_CHECKING, Any, Generic, Literal, Unpack, overload

from ._bulk import MapIterator, TaskSink
from ._options import MapOptions, check_timeout
from ._stream import PartQueue, StreamIterator
from ._task import Task, check_task_options
from ._typing import ResultT, TaskT
from .prefs import ANY, Pref

if TYPE_CHECKING:
    from ._dispatch import Dispatcher
    from ._ledger import TaskLedger

__all__ = ("WorkShapes",)


class WorkShapes(Generic[TaskT, ResultT]):
    """``map`` and ``stream`` of :class:`~procoord.Coordinator`."""

    task_timeout: float | None
    _dispatch: Dispatcher
    _ledger: TaskLedger

    def _check_open(self) -> None:
        raise NotImplementedError

    def _as_sink(self) -> TaskSink:
        raise NotImplementedError

    def stream(
        self,
        task: TaskT,
        prefs: Pref = ANY,
        *,
        timeout: float | None = None,
        retries: int = 0,
        priority: int = 0,
    ) -> StreamIterator[Any]:
        """Run a task whose ``do_work`` is a generator (async or plain) and iterate over
        its parts as the worker yields them: ``async for part in coord.stream(task)``.

        The task is routed like :meth:`run` and queued when the iteration starts (which
        raises what ``run`` raises). At most a bounded number of parts wait in the
        parent unconsumed: the worker pauses the generator until the consumer catches
        up. Leaving the loop early (``break``, an error, cancellation) cancels the task
        and closes the generator in the worker. An error of the task is raised from the
        loop after the parts that came before it: ``TaskProcessError`` when the
        generator raised, ``WorkerLostError`` when the worker died, ``TaskTimeoutError``
        when ``timeout`` (seconds, for the whole stream, from when it starts) ran out.
        ``run``, ``call``, ``map`` and ``run_batch`` on such a task give the list of all its
        parts. ``close()``
        ends a stream still open (its loop raises ``CoordinatorClosedError`` after the
        parts that arrived): finish or leave the loop before closing. ``priority``
        orders it among waiting tasks as in :meth:`run`; ``retries`` runs it again as in
        :meth:`run` only while no part has arrived (the parts it gave cannot be taken
        back): after one, its loop raises the error.
        """
        check_timeout(timeout)
        check_task_options(retries, priority)
        return StreamIterator(
            lambda queue: self._open_stream(task, prefs, timeout, queue, retries, priority), self._dispatch.cancel
        )

    async def _open_stream(
        self, task: TaskT, prefs: Pref, timeout: float | None, queue: PartQueue, retries: int, priority: int
    ) -> Task:
        self._check_open()
        if self._ledger.full():
            await self._ledger.wait_for_space(self._check_open)
        self._check_open()
        timeout = self.task_timeout if timeout is None else timeout
        return self._dispatch.submit(task, prefs, timeout, 0, queue, retries=retries, priority=priority)

    @overload
    def map(
        self,
        iterable: Iterable[TaskT] | AsyncIterable[TaskT],
        prefs: Pref = ANY,
        *,
        return_exceptions: Literal[False] = False,
        **options: Unpack[MapOptions],
    ) -> MapIterator[tuple[ResultT, Hashable]]: ...
    @overload
    def map(
        self,
        iterable: Iterable[TaskT] | AsyncIterable[TaskT],
        prefs: Pref = ANY,
        *,
        return_exceptions: bool,
        **options: Unpack[MapOptions],
    ) -> MapIterator[tuple[ResultT, Hashable] | BaseException]: ...
    def map(
        self,
        iterable: Iterable[TaskT] | AsyncIterable[TaskT],
        prefs: Pref = ANY,
        *,
        return_exceptions: bool = False,
        **options: Unpack[MapOptions],
    ) -> MapIterator[Any]:
        """Run every item of ``iterable`` (sync or async) as a task; an async iterator of
        ``(result, worker_ident)``, in input order (``ordered=True``) or as they finish.

        Keyword options:
            ordered: yield in input order (default True), else as tasks finish.
            window: at most this many tasks are outstanding at once (submitted and
                not yet yielded), so memory stays flat over a huge or endless iterable,
                which is read lazily. Default: 1024, or 8192 while tasks take under
                0.1 ms (they then travel in chunks of up to 2048 items).
            progress: draw a progress bar on stderr (tqdm when installed); a dict
                gives tqdm's options (``progress=dict(desc="pages")``).
            return_exceptions: yield a failed task's error in its place instead of
                raising it from the loop.
            timeout, retries, priority: apply to each task, as in :meth:`run` (a chunk
                of cheap items is retried as a whole).

        Leaving the loop early cancels what it queued (a queued task never runs)::

            async for result, worker in coord.map(range(1000), window=32):
                ...
        """
        return MapIterator(
            self._as_sink(),
            self._dispatch.task_time_estimate,
            iterable,
            prefs,
            return_exceptions=return_exceptions,
            **options,
        )
