"""JoinHandle: the caller's side of one queued task."""

from __future__ import annotations

from collections.abc import Callable, Generator, Hashable
from typing import TYPE_CHECKING, Any, Generic, NoReturn, Protocol, TypeVar, final

from ._task import Task

__all__ = ("JoinHandle",)

R = TypeVar("R")
S = TypeVar("S")


class TaskOwner(Protocol):
    """What a handle cancels its task through (the coordinator)."""

    def _cancel_task(self, task: Task) -> bool: ...
    def _check_loop(self) -> None: ...


@final
class JoinHandle(Generic[R]):
    """A queued task. ``await handle`` (or ``await handle.join()``) gives
    ``(result, worker_ident)``; dropping the handle without joining it is fine, the
    task still runs.

    Cancelling the asyncio task that awaits a handle does not cancel the procoord task:
    handles are not owned by their awaiters. Call :meth:`cancel` for that
    (:meth:`Coordinator.call <procoord.Coordinator.call>` owns its task and does so).
    """

    __slots__ = ("_owner", "_task", "_transform")

    def __init__(
        self,
        task: Task,
        owner: TaskOwner,
        transform: Callable[[tuple[Any, Hashable]], R] | None = None,
    ) -> None:
        self._task = task
        # Holding the coordinator keeps it (and its workers) alive while a handle of
        # it may still be awaited.
        self._owner = owner
        self._transform = transform

    @property
    def task_id(self) -> int:
        """The task's id, unique within its coordinator."""
        return self._task.id

    async def join(self) -> R:
        """Wait for the task; return ``(result, worker_ident)`` (or what :meth:`map` made of it).

        Raises the task's error: :class:`~procoord.TaskProcessError`,
        :class:`~procoord.WorkerLostError`, ..., or :class:`asyncio.CancelledError` when
        the task was cancelled.
        """
        return await self

    def __await__(self) -> Generator[Any, None, R]:
        # join() itself, as a generator: ``await handle`` makes no coroutine.
        task = self._task
        if not task.done():
            self._owner._check_loop()  # a handle is awaited on its coordinator's loop
            yield from task.wait().__await__()
        pair: tuple[Any, Hashable] = task.result()
        if self._transform is None:
            return pair  # type: ignore[return-value]
        return self._transform(pair)

    if not TYPE_CHECKING:  # to a type checker a handle stays not iterable: the mistake is caught there

        def __iter__(self) -> NoReturn:
            raise TypeError(
                "a JoinHandle is not the result: write `result, worker = await handle` "
                "(`handle = await coord.run(...)`), or `result, worker = await coord.call(...)` for both steps"
            )

    def map(self, fn: Callable[[R], S]) -> JoinHandle[S]:
        """A handle to the same task whose join returns ``fn`` of this handle's join."""
        inner = self._transform

        def transform(pair: tuple[Any, Hashable]) -> S:
            return fn(pair if inner is None else inner(pair))  # type: ignore[arg-type]

        return JoinHandle(self._task, self._owner, transform)

    def cancel(self) -> bool:
        """Cancel the task. True when it will not deliver a result: it was still queued
        (it never runs), or it runs an async ``do_work``, which is cancelled inside the
        worker. False when it already finished, or when a sync ``do_work`` is running it
        (that cannot be interrupted; it finishes and its result is delivered)."""
        return self._owner._cancel_task(self._task)

    def done(self) -> bool:
        """Whether the task has finished (with a result, an error or cancelled)."""
        return self._task.done()

    def __repr__(self) -> str:
        state = "done" if self._task.done() else "pending"
        return f"<JoinHandle task {self._task.id} {state}>"
