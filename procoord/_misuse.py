"""Common mistakes with an async API, and errors that say what to write instead.

A coroutine used without ``await``, ``with`` where ``async with`` is meant, ``for`` over
an async iterator, or an event loop that is not asyncio's all fail in Python with terse
messages (``'coroutine' object has no attribute 'join'``, ``no running event loop``);
the helpers here turn them into messages that name the fix.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import warnings
from collections.abc import Callable, Coroutine, Generator
from typing import Any, NoReturn, TypeVar

__all__ = (
    "LoopBinding",
    "NotAwaited",
    "async_with_needed",
    "async_for_needed",
    "bound_loop",
    "require_asyncio",
    "running_loop",
)

T = TypeVar("T")

# Attributes of what an awaited call gives (a JoinHandle, a result pair): reaching for
# one on the un-awaited call is the mistake to explain.
_HANDLE_ATTRIBUTES = frozenset({"join", "cancel", "done", "task_id", "map", "result", "exception"})


class _Started(Coroutine[Any, Any, T]):
    """What a :class:`NotAwaited` becomes once awaited, sent a value or closed: the same
    coroutine, without the finalizer that warns (only one never awaited pays for it)."""

    __slots__ = ("_args", "_call", "_iterator", "_steps")

    def __init__(self, steps: Callable[..., Generator[Any, None, T]], args: tuple[Any, ...], call: str) -> None:
        self._steps = steps
        self._args = args
        self._call = call
        self._iterator: Generator[Any, None, T] | None = None

    def _start(self) -> Generator[Any, None, T]:
        self.__class__ = _Started
        iterator = self._iterator = self._steps(*self._args)
        return iterator

    def send(self, value: Any) -> Any:
        return (self._iterator or self._start()).send(value)

    def throw(self, *args: Any) -> Any:
        return (self._iterator or self._start()).throw(*args)

    def close(self) -> None:
        (self._iterator or self._start()).close()

    def __await__(self) -> Generator[Any, None, T]:
        if self._iterator is not None:
            raise RuntimeError(f"{self._call}(...) was awaited already: call it again for another one")
        self.__class__ = _Started  # _start, written out: this runs once per call
        iterator = self._iterator = self._steps(*self._args)
        return iterator

    def __getattr__(self, name: str) -> NoReturn:
        if name in _HANDLE_ATTRIBUTES:
            raise AttributeError(
                f"{self._call}(...) was not awaited: it gives a coroutine; write "
                f"`handle = await {self._call}(...)`, then `handle.{name}`"
            )
        raise AttributeError(f"'coroutine' object has no attribute {name!r}")

    def __iter__(self) -> NoReturn:
        raise TypeError(f"{self._call}(...) must be awaited: `await {self._call}(...)`, inside a coroutine")

    def __repr__(self) -> str:
        return f"<coroutine {self._call}(...)>"


class NotAwaited(_Started[T]):
    """A coroutine, ``steps(*args)``, that explains itself when it is used as what
    awaiting it would give (``call`` names it in the errors).

    ``h = coord.run(task)`` then ``h.join()`` raises an AttributeError saying to write
    ``h = await coord.run(task)``; dropped without being awaited, it warns in the same
    terms. Everything else behaves as a coroutine does (``await``,
    ``asyncio.create_task``, ``gather``). Its body is the generator ``steps(*args)``,
    made when it is first awaited (or sent a value): awaiting it makes no coroutine of
    its own, and its end returns rather than raises StopIteration.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<not awaited: {self._call}(...)>"

    def __del__(self) -> None:
        gives = "handle" if self._call.endswith("run") else "result, worker"
        warnings.warn(
            f"{self._call}(...) was never awaited, so its task was not queued: write "
            f"`{gives} = await {self._call}(...)`, inside a coroutine",
            RuntimeWarning,
            stacklevel=1,
        )


def async_with_needed(cls: type) -> NoReturn:
    """The error for ``with`` on a class meant for ``async with``."""
    name = cls.__name__
    raise TypeError(
        f"{name} is an async context manager: write `async with {name}(...) as coord:` inside a "
        "coroutine; code without asyncio uses `with procoord.BlockingCoordinator(...) as coord:` "
        "or `with procoord.Executor() as executor:`"
    )


def async_for_needed(what: str) -> NoReturn:
    """The error for a plain ``for`` over an async iterator."""
    raise TypeError(
        f"{what} is an async iterator: write `async for result, worker in {what}:` inside a "
        "coroutine; code without asyncio gets a plain iterator from BlockingCoordinator.map "
        "(or procoord.Executor.map)"
    )


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop, or None outside one."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def require_asyncio(what: str) -> asyncio.AbstractEventLoop:
    """The running asyncio loop, or a RuntimeError saying procoord needs one."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    if _under_trio():
        raise RuntimeError(
            f"{what}: procoord runs on asyncio, and this is trio. Run the async code with "
            "anyio on its asyncio backend (anyio.run(main, backend='asyncio')) or asyncio.run(); "
            "from trio, use procoord.BlockingCoordinator (its own asyncio loop in a thread) "
            "through trio.to_thread.run_sync"
        ) from None
    raise RuntimeError(
        f"{what} needs a running asyncio event loop: call it from a coroutine started by "
        "asyncio.run() (or uvloop.run()); code without asyncio uses procoord.BlockingCoordinator "
        "or procoord.Executor"
    ) from None


def bound_loop(bound: asyncio.AbstractEventLoop | None, what: str) -> asyncio.AbstractEventLoop:
    """The running loop, when it is ``bound`` (or nothing is bound yet); else a
    RuntimeError naming the fix: an object driven by one event loop used from another
    loop or thread."""
    loop = require_asyncio(what)
    if bound is not None and loop is not bound:
        raise RuntimeError(
            f"this {what} is used from another event loop than the one it runs on: a {what} "
            "belongs to the event loop it first ran on (its workers' channels are driven by "
            "that loop). Use procoord.BlockingCoordinator to share one between threads, or "
            f"create one {what} per event loop"
        )
    return loop


def _under_trio() -> bool:
    trio = sys.modules.get("trio")
    if trio is None:
        return False
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


class LoopBinding:
    """The event loop an object belongs to, bound on first use, and the thread running it."""

    __slots__ = ("loop", "thread", "what")

    def __init__(self, what: str) -> None:
        self.what = what
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = 0

    def check(self) -> asyncio.AbstractEventLoop:
        """Bind to the running loop on first use; raise (see :func:`bound_loop`) on any other."""
        loop = bound_loop(self.loop, self.what)
        self.loop = loop
        self.thread = threading.get_ident()
        return loop

    def here(self) -> bool:
        """Whether this runs on the bound loop: its thread, while it runs (one loop runs in
        a thread at a time). Unlike asyncio.get_running_loop, no system call."""
        loop = self.loop
        return loop is not None and threading.get_ident() == self.thread and loop.is_running()
