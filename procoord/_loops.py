"""What a loop iterates over when it iterates a stream or a map: a view that closes its
source when the loop is left early.

``async for`` (and ``for``) holds the object ``__aiter__`` (``__iter__``) returns and
drops it when the loop ends. When that object is the source itself, a ``break`` out of
a loop over a source still referenced elsewhere (held in a variable) closes nothing:
a stream's worker would wait for credit forever. A view is referenced by its loop
alone, so its end is the loop's end: it closes the source (which does nothing when the
source ran to its end), on the source's event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Protocol, TypeVar, final

__all__ = ("AsyncLoopView", "LoopView")

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class _AsyncSource(Protocol[T_co]):
    def __anext__(self) -> Awaitable[T_co]: ...
    def _drop(self) -> None: ...


class _Source(Protocol[T_co]):
    def __next__(self) -> T_co: ...
    def close(self) -> None: ...


class AsyncLoopView(AsyncIterator[T]):
    """The parts (or results) of ``source`` for one ``async for`` loop (a subclass may
    take what is ready without calling the source: see procoord._bulk)."""

    __slots__ = ("_source",)

    def __init__(self, source: _AsyncSource[T]) -> None:
        self._source = source

    def __aiter__(self) -> AsyncLoopView[T]:
        return self

    def __anext__(self) -> Awaitable[T]:
        return self._source.__anext__()

    def __del__(self) -> None:
        self._source._drop()


@final
class LoopView(Iterator[T]):
    """The parts (or results) of a blocking ``source`` for one ``for`` loop."""

    __slots__ = ("_source",)

    def __init__(self, source: _Source[T]) -> None:
        self._source = source

    def __iter__(self) -> LoopView[T]:
        return self

    def __next__(self) -> T:
        return self._source.__next__()

    def __del__(self) -> None:
        self._source.close()
