"""Streaming processors (their ``do_work`` is a generator), run in worker processes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import procoord
from procoord import TaskProcessor

from ._funcs import Boom, signal_beacon, wait_beacon


class SyncStreamer(TaskProcessor):
    """A plain generator ``do_work``; remembers how its last stream ended.

    Tasks: ``("count", n)`` yields 0..n-1; ``("fail_after", n)`` then raises Boom;
    ``("exit_after", n)`` then ends the process; ``("unpicklable_after", n)`` then
    yields a lock; ``("report", None)`` yields one part, ``(yielded, closed)`` of the
    stream before it (closed: it ended by being closed, not exhausted);
    ``("exit_when", (n, release))`` yields n parts, waits until ``release`` is
    signalled, then ends the process."""

    def __init__(self) -> None:
        self.yielded = 0
        self.closed = False

    def do_work(self, task: tuple[str, Any]) -> Iterator[Any]:
        kind, n = task
        if kind == "report":
            yield (self.yielded, self.closed)
            return
        release = None
        if kind == "exit_when":
            n, release = n
        self.yielded = 0
        self.closed = False
        exhausted = False
        try:
            for i in range(n):
                self.yielded += 1
                yield i
            exhausted = True
        finally:
            self.closed = not exhausted
        if release is not None:
            wait_beacon(release)
            os._exit(3)
        _after(kind)


class AsyncStreamer(TaskProcessor):
    """An async generator ``do_work``, with the tasks of :class:`SyncStreamer` and
    ``("hold_after", (n, started))``: yields n parts, signals ``started``, then waits
    until cancelled."""

    def __init__(self) -> None:
        self.yielded = 0
        self.closed = False

    async def do_work(self, task: tuple[str, Any]) -> AsyncIterator[Any]:
        kind, n = task
        if kind == "report":
            yield (self.yielded, self.closed)
            return
        started = None
        if kind == "hold_after":
            n, started = n
        self.yielded = 0
        self.closed = False
        exhausted = False
        try:
            for i in range(n):
                self.yielded += 1
                yield i
            if started is not None:
                signal_beacon(started)
                await asyncio.Event().wait()
            exhausted = True
        finally:
            self.closed = not exhausted
        _after(kind)


def _after(kind: str) -> None:
    if kind == "fail_after":
        raise Boom("after the parts")
    if kind == "exit_after":
        os._exit(3)


def not_a_generator(task: Any) -> Any:
    """A plain function: streaming it is a mistake."""
    return task


def blobs(count: int) -> Iterator[bytes]:
    """Parts of 1 KiB each."""
    for i in range(count):
        yield i.to_bytes(4, "little") * 256


def unpicklable_after(n: int) -> Iterator[Any]:
    """``n`` parts, then one that cannot be pickled."""
    yield from range(n)
    yield _lock()


def _lock() -> Any:
    import threading

    return threading.Lock()


@procoord.interface
class Tokenizer:
    async def tokens(self, text: str) -> AsyncIterator[str]:
        """The words of ``text``, one part each (implemented as an async generator)."""
        ...

    async def count(self, text: str) -> int: ...


class SplitTokenizer(Tokenizer.Processor):  # type: ignore[name-defined,misc]
    async def tokens(self, text: str) -> AsyncIterator[str]:  # type: ignore[override]
        for word in text.split():
            yield word

    async def count(self, text: str) -> int:
        return len(text.split())


def mib_blobs(count: int) -> Iterator[bytes]:
    """Parts of 1 MiB each."""
    for i in range(count):
        yield bytes([i % 256]) * (1 << 20)


def dies_once_then_counts(task: tuple[str, int, bool]) -> Iterator[int]:
    """The first time (no file at ``marker`` yet): create it and end the process, before
    any part (or, with ``after_part``, after one part); afterwards yield 0..n-1."""
    marker, n, after_part = task
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        if after_part:
            yield -1
        os._exit(3)
    yield from range(n)
