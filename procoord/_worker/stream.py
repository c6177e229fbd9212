"""Streaming in the worker: the parts of a generator ``do_work``, sent as they come.

A task queued with ``Coordinator.stream`` arrives as a STREAM frame carrying a credit:
how many parts the worker may send before the parent has taken any. Each PART sent
uses one; CREDIT frames from the parent give more as the consumer takes parts. With
none left the generator is not resumed until credit comes, so a fast generator waits
for a slow consumer instead of filling the parent's memory. Cancelling the task closes
the generator here, in the worker (its ``finally`` blocks run).

A generator task queued with ``run`` or ``call`` is drained into a list instead.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncGenerator, Generator
from types import AsyncGeneratorType, GeneratorType
from typing import Any, Protocol

from .. import _wire
from .._wire import Kind, OutFrame
from ..errors import SerializationError

__all__ = ("PartSender", "Streamed", "collect", "is_generator", "not_a_generator")

# A generator that yields without ever awaiting would hold the loop: give it a turn
# this often (seconds), so a CANCEL or a STOP sent meanwhile is read.
YIELD_TO_LOOP_S = 0.001


class FrameSink(Protocol):
    """Where a worker's frames go (the worker core)."""

    def send(self, kind: Kind, task_id: int = 0, number: float = 0.0, payload: bytes = b"") -> None: ...
    def send_parts(self, kind: Kind, task_id: int, number: float, parts: list[bytes | memoryview]) -> None: ...


def is_generator(result: Any) -> bool:
    """Whether ``do_work`` gave a generator (plain or async): a streaming task."""
    return isinstance(result, GeneratorType | AsyncGeneratorType)


def not_a_generator(result: Any) -> TypeError:
    """The error for a task streamed whose ``do_work`` returned something else."""
    return TypeError(
        f"do_work returned {type(result).__qualname__}, not a generator: stream() is for a do_work "
        "that yields its parts (an async or plain generator); use run() or call() for one result"
    )


async def collect(gen: Generator[Any, None, None] | AsyncGenerator[Any, None]) -> list[Any]:
    """Every part of a generator, as one list (a generator task queued with ``run``)."""
    if isinstance(gen, GeneratorType):
        return list(gen)
    assert isinstance(gen, AsyncGeneratorType)
    return [part async for part in gen]


class Streamed:
    """What a streamed task ends with: the frame to send after its last part."""

    __slots__ = ("parts", "unpicklable")

    def __init__(self, parts: int, unpicklable: SerializationError | None) -> None:
        self.parts = parts
        self.unpicklable = unpicklable

    def frame(self, task_id: int, run_s: float) -> OutFrame:
        """END, or BAD_RESULT when a part could not be pickled (the stream stopped there)."""
        if self.unpicklable is not None:
            return (Kind.BAD_RESULT, task_id, run_s, _wire.pack_error(self.unpicklable, "result"))
        return _wire.end_frame(task_id, run_s, self.parts)


class PartSender:
    """Sends the parts of one streaming task while it has credit."""

    __slots__ = ("_last_turn", "_unacked", "_unacked_bytes", "_unpicklable", "credit", "sink", "task_id", "waiter")

    def __init__(self, sink: FrameSink, task_id: int, credit: int) -> None:
        self.sink = sink
        self.task_id = task_id
        self.credit = credit
        self.waiter: asyncio.Future[None] | None = None
        self._unpicklable: SerializationError | None = None
        self._unacked: deque[int] = deque()  # sizes of the parts sent and not yet acknowledged
        self._unacked_bytes = 0
        self._last_turn = time.perf_counter()

    def grant(self, parts: int) -> None:
        """The parent took parts: send up to ``parts`` more (on the loop)."""
        self.credit += parts
        unacked = self._unacked
        for _ in range(min(parts, len(unacked))):
            self._unacked_bytes -= unacked.popleft()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def run(self, gen: Generator[Any, None, None] | AsyncGenerator[Any, None]) -> Streamed:
        """Send every part of ``gen``; close it however this ends (a cancel included)."""
        sent = 0
        try:
            if isinstance(gen, GeneratorType):
                for part in gen:
                    if not await self._send(part):
                        return Streamed(sent, self._unpicklable)
                    sent += 1
            else:
                assert isinstance(gen, AsyncGeneratorType)
                async for part in gen:
                    if not await self._send(part):
                        return Streamed(sent, self._unpicklable)
                    sent += 1
            return Streamed(sent, None)
        finally:
            if isinstance(gen, GeneratorType):
                gen.close()
            elif isinstance(gen, AsyncGeneratorType):
                await gen.aclose()

    async def _send(self, part: Any) -> bool:
        """Send one part, then wait until there is credit for the next one; False when
        the part cannot be pickled (the stream ends with that error)."""
        try:
            payload = _wire.part_payload(part)
        except SerializationError as exc:
            self._unpicklable = exc
            return False
        if len(payload) == 1:
            self.sink.send(Kind.PART, self.task_id, 0.0, payload[0])  # type: ignore[arg-type]
        else:
            self.sink.send_parts(Kind.PART, self.task_id, 0.0, payload)
        self.credit -= 1
        size = _wire.parts_size(payload)
        self._unacked.append(size)
        self._unacked_bytes += size
        if self.credit <= 0 or self._unacked_bytes >= _wire.STREAM_BYTES:
            loop = asyncio.get_running_loop()
            while self.credit <= 0 or self._unacked_bytes >= _wire.STREAM_BYTES:
                self.waiter = loop.create_future()
                try:
                    await self.waiter
                finally:
                    self.waiter = None
            self._last_turn = time.perf_counter()
        else:
            now = time.perf_counter()
            if now - self._last_turn >= YIELD_TO_LOOP_S:
                self._last_turn = now
                await asyncio.sleep(0)
        return True
