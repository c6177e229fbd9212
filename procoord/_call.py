"""What ``coord.call(task)`` gives: the task's future, which is also a coroutine.

``await coord.call(t)``, ``asyncio.gather(*(coord.call(t) for t in ts))``,
``asyncio.wait_for(coord.call(t), 1)`` and ``asyncio.create_task(coord.call(t))`` all
work as with a coroutine, but gather and wait_for take it as the future it is: no
asyncio Task and no coroutine frame per call. The task is queued when ``call`` is
called; cancelling the future (directly, or by cancelling whoever awaits it) cancels the
task as :meth:`JoinHandle.cancel <procoord.JoinHandle.cancel>` does.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, NoReturn, Self, TypeVar

__all__ = ("CallFuture", "call_when_room", "new_call")

T = TypeVar("T")
R = TypeVar("R")
A = TypeVar("A")


class CallFuture(asyncio.Future[T], Coroutine[Any, Any, T]):
    """A future of ``(result, worker_ident)`` that can be awaited, gathered or passed to
    ``asyncio.create_task`` like the coroutine ``call`` used to be."""

    # A gather of many calls keeps every pending future alive, so each Python-level
    # step and each object more per call counts: the cancel hook is a function and its
    # argument rather than a closure (four objects for the cyclic garbage collector),
    # and there is no __init__ (the C future's is all it takes; these slots are set
    # when first needed and read with getattr where they may not be yet). A call's
    # future starts as an _UnawaitedCall, which becomes a CallFuture when it is first
    # awaited or given a callback: only a future never awaited pays for a __del__.
    __slots__ = ("_cancel_arg", "_cancel_with", "_iterator")

    _cancel_with: Callable[[Any], object] | None
    _cancel_arg: Any
    _iterator: Generator[Any, None, T] | None

    def on_cancel(self, hook: Callable[[A], object], arg: A) -> None:
        """Call ``hook(arg)`` (once) when the future is cancelled before it is done."""
        self._cancel_with = hook
        self._cancel_arg = arg

    def cancel(self, msg: Any = None) -> bool:
        hook, arg = getattr(self, "_cancel_with", None), getattr(self, "_cancel_arg", None)
        self._cancel_with = self._cancel_arg = None
        if hook is not None and not self.done():
            hook(arg)  # may cancel this future itself (a queued task never runs)
        if self.done():
            return self.cancelled()
        return super().cancel(msg)

    # -- the coroutine protocol, over the future's own await ------------------------

    def send(self, value: Any) -> Any:
        iterator = getattr(self, "_iterator", None)
        if iterator is None:
            iterator = self._iterator = self.__await__()
        return iterator.send(value)

    def throw(self, *args: Any) -> Any:
        iterator = getattr(self, "_iterator", None)
        if iterator is None:
            iterator = self._iterator = self.__await__()
        return iterator.throw(*args)

    def close(self) -> None:
        self._iterator = None

    def __iter__(self) -> NoReturn:
        raise TypeError("coord.call(...) must be awaited: `result, worker = await coord.call(...)`, inside a coroutine")


class _UnawaitedCall(CallFuture[T]):
    """A call's future until it is awaited, gathered or closed (then it becomes a plain
    CallFuture): dropped before that, it warns, as a coroutine never awaited does."""

    __slots__ = ()

    def result(self) -> T:
        if not self.done():
            raise asyncio.InvalidStateError(
                "coord.call(...) has not finished: write `result, worker = await coord.call(...)`"
            )
        return super().result()

    def add_done_callback(self, fn: Callable[[Self], object], *, context: Any = None) -> None:
        self.__class__ = CallFuture  # type: ignore[assignment]
        asyncio.Future.add_done_callback(self, fn, context=context)

    def __await__(self) -> Generator[Any, None, T]:
        self.__class__ = CallFuture  # type: ignore[assignment]
        return asyncio.Future.__await__(self)

    def close(self) -> None:
        # Closed on purpose (asyncio does so for a coroutine it refuses): no warning.
        self.__class__ = CallFuture  # type: ignore[assignment]
        CallFuture.close(self)

    def __del__(self) -> None:
        warnings.warn(
            "coord.call(...) was never awaited: its task ran (or runs) but its result is dropped; "
            "write `await coord.call(...)`, or use run_nowait() for a task whose result is not wanted",
            RuntimeWarning,
            stacklevel=1,
        )
        super().__del__()


def new_call(loop: asyncio.AbstractEventLoop) -> CallFuture[Any]:
    """A call's future, not yet awaited (it warns if it is dropped so): the caller
    queues its task, or sets its error, and gives it its cancel hook (``on_cancel``)."""
    return _UnawaitedCall(loop=loop)


def call_when_room(
    loop: asyncio.AbstractEventLoop,
    room: Callable[[], Awaitable[None]],
    submit: Callable[[CallFuture[T], tuple[Any, ...]], R],
    args: tuple[Any, ...],
    cancel: Callable[[R], object],
) -> CallFuture[T]:
    """A call's future whose task waits for room (``max_pending`` reached):
    ``submit(future, args)`` queues it once ``room()`` is done; an error either raises
    is the future's. Cancelling the future before that queues nothing; after, it is
    ``cancel(task)``. (A call with room queues its task at once: see ``Coordinator.call``.)"""
    future: CallFuture[T] = new_call(loop)
    waiting = loop.create_task(_submit_when_room(future, room, submit, args, cancel))
    future.on_cancel(asyncio.Task.cancel, waiting)
    return future


def _submit(
    future: CallFuture[T],
    submit: Callable[[CallFuture[T], tuple[Any, ...]], R],
    args: tuple[Any, ...],
    cancel: Callable[[R], object],
) -> None:
    try:
        task = submit(future, args)
    except Exception as exc:
        future.set_exception(exc)
        return
    future.on_cancel(cancel, task)


async def _submit_when_room(
    future: CallFuture[T],
    room: Callable[[], Awaitable[None]],
    submit: Callable[[CallFuture[T], tuple[Any, ...]], R],
    args: tuple[Any, ...],
    cancel: Callable[[R], object],
) -> None:
    try:
        await room()
    except Exception as exc:
        future.set_exception(exc)
        return
    if not future.done():
        _submit(future, submit, args, cancel)
