"""The worker core: one processor, one task at a time, in order, on the running loop.

The same core runs in a local worker process (``procoord._worker.pipe``) and in a Ray
actor (``procoord._worker.ray_actor``); each says how frames come and go.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections import deque
from collections.abc import Callable
from types import AsyncGeneratorType, GeneratorType
from typing import Any

from .. import _wire
from .._wire import Batch, Kind
from ..errors import SerializationError
from ..processor import ProcessorSpec
from . import sampler, stream
from .build import build_processor
from .logs import forward_logs

__all__ = ("WorkerCore",)

# Results of these types are never awaitable: skip the (slow, ABC-based) check.
_PLAIN_TYPES = frozenset({int, float, str, bytes, bool, tuple, list, dict, set, type(None)})

# The frame kinds of every task, as module names: looking a member up on its enum class
# costs several times a global lookup.
_TASK, _RESULT = Kind.TASK, Kind.RESULT

# After a task that ran this long, read pending input before starting the next one, so
# a STOP or CANCEL sent meanwhile takes effect; shorter tasks skip the extra syscall.
CHECK_INPUT_AFTER_S = 0.001


class WorkerCore:
    """What a worker does with frames, whatever carries them: build the processor,
    report READY, queue TASKs, honour CANCEL and STOP, and run tasks one at a time, in
    order, on the running event loop.

    A subclass says how frames leave (:meth:`send`) and may take in frames that arrived
    while a long sync task held the loop (:meth:`read_pending`); incoming frames are
    given to :meth:`handle_frames`, the end of input to :meth:`end_input`.
    """

    def __init__(self) -> None:
        self.queue: deque[tuple[int, bytes]] = deque()
        self.wakeup: asyncio.Future[None] | None = None
        self.current: asyncio.Future[Any] | None = None
        self.current_id = 0
        self.cancel_requested = 0
        self.stopping = False
        self.eof = False
        self.stream_credit: dict[int, int] = {}  # queued STREAM tasks: their first credit
        self.streaming: stream.PartSender | None = None

    shares_memory = False
    """Whether big buffers come and go through shared memory (said in READY)."""

    def send(self, kind: Kind, task_id: int = 0, number: float = 0.0, payload: bytes = b"") -> None:
        """Send one frame to the parent (from any thread)."""
        raise NotImplementedError

    def send_parts(self, kind: Kind, task_id: int, number: float, parts: list[bytes | memoryview]) -> None:
        """Send one frame whose payload comes in parts (out-of-band buffers)."""
        self.send(kind, task_id, number, b"".join(parts))

    def before_ready(self) -> None:
        """Called once the processor is built, just before READY is sent (a first load
        sample goes out here, so the parent has one as soon as the worker is ready)."""

    def started(self) -> None:
        """Called once READY is sent, on the loop, before the first task."""

    def read_pending(self) -> None:
        """Take in frames that arrived while a task held the loop (before the next task)."""

    # -- input ----------------------------------------------------------------------

    def handle_frames(self, frames: list[tuple[int, int, float, bytes]]) -> None:
        """Act on frames from the parent, in order; call on the loop."""
        for kind, task_id, number, payload in frames:
            if kind == _TASK:
                self.queue.append((task_id, payload))
            elif kind == Kind.STREAM:
                self.queue.append((task_id, payload))
                self.stream_credit[task_id] = _wire.read_stream_credit((kind, task_id, number, payload))
            elif kind == Kind.CREDIT:
                streaming = self.streaming
                credit_id, parts = _wire.read_credit((kind, task_id, number, payload))
                if streaming is not None and streaming.task_id == credit_id:
                    streaming.grant(parts)
            elif kind == Kind.CANCEL:
                self._cancel(task_id)
            elif kind == Kind.STOP:
                self.stopping = True
                for queued_id, _ in self.queue:
                    self.send(Kind.RETURNED, queued_id)
                self.queue.clear()
                self.stream_credit.clear()
        self._wake()

    def end_input(self) -> None:
        """The parent is gone: drop queued tasks and end once the running one returns."""
        self.eof = True
        self.queue.clear()
        self._wake()

    # -- main loop ------------------------------------------------------------------

    async def serve(self, spec: ProcessorSpec) -> None:
        """Build the processor, report READY (or why not), then run tasks until told to stop."""
        forward_logs(self.send, spec.log_level)
        try:
            do_work, is_async = build_processor(spec)
        except BaseException as exc:
            self.send(*_wire.start_failed_frame(exc))
            return
        self.before_ready()
        self.send(*_wire.ready_frame(os.getpid(), is_async, self.shares_memory))
        self.started()
        await self._run_tasks(do_work, is_async, spec.sample_after_task)

    def _wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    def _cancel(self, task_id: int) -> None:
        if self.current is not None and self.current_id == task_id:
            self.cancel_requested = task_id
            self.current.cancel()
            return
        for i, (queued_id, _) in enumerate(self.queue):
            if queued_id == task_id:
                del self.queue[i]
                self.stream_credit.pop(task_id, None)
                self.send(Kind.CANCELLED, task_id)
                return
        # Already finished: its result is on its way; the parent ignores it.

    async def _run_tasks(self, do_work: Callable[[Any], Any], is_async: bool, sample_after_task: bool) -> None:
        loop = asyncio.get_running_loop()
        queue = self.queue
        ran_long = False
        while True:
            if not queue:
                if self.stopping or self.eof:
                    return
                self.wakeup = loop.create_future()
                await self.wakeup
                self.wakeup = None
                continue
            task_id, payload = queue.popleft()
            if ran_long:
                # A STOP or CANCEL may have arrived while a long sync task held the
                # loop: honour it before starting the next task.
                queue.appendleft((task_id, payload))
                ran_long = False
                self.read_pending()
                continue
            credit = self.stream_credit.pop(task_id, 0) if self.stream_credit else 0
            try:
                task = _wire.load_payload(payload)
            except BaseException as exc:  # sys.exit() in __setstate__ too: that task fails
                self.send(Kind.BAD_TASK, task_id, 0.0, _wire.pack_error(exc, "task"))
                continue
            started = time.perf_counter()
            try:
                if type(task) is Batch:
                    result = _run_batch(do_work, is_async, task)
                else:
                    result = do_work(task)
                if (is_async and type(result) is not AsyncGeneratorType) or (
                    type(result) not in _PLAIN_TYPES and inspect.isawaitable(result)
                ):
                    self.current = asyncio.ensure_future(result)
                    self.current_id = task_id
                    try:
                        result = await self.current
                    finally:
                        self.current = None
                if type(result) not in _PLAIN_TYPES and stream.is_generator(result):
                    result = await self._drain(task_id, result, credit)
                elif credit:
                    raise stream.not_a_generator(result)
            except asyncio.CancelledError as exc:
                if self.cancel_requested == task_id:
                    self.send(Kind.CANCELLED, task_id)
                    continue
                elapsed = time.perf_counter() - started  # raised by do_work itself
                self.send(Kind.ERROR, task_id, elapsed, _wire.pack_error(exc, "error"))
                continue
            except BaseException as exc:  # SystemExit, KeyboardInterrupt, GeneratorExit...: that task fails
                elapsed = time.perf_counter() - started
                ran_long = elapsed > CHECK_INPUT_AFTER_S
                if sample_after_task:
                    self._send_memory()
                self.send(Kind.ERROR, task_id, elapsed, _wire.pack_error(exc, "error"))
                continue
            elapsed = time.perf_counter() - started
            ran_long = elapsed > CHECK_INPUT_AFTER_S
            if sample_after_task:
                self._send_memory()
            if type(result) is stream.Streamed:
                self.send(*result.frame(task_id, elapsed))
                continue
            try:
                try:
                    parts = _wire.dumps_parts(result, "result")
                except SerializationError:
                    if type(task) is not Batch:
                        raise
                    parts = _wire.dumps_parts(_picklable_outcomes(result), "result")
            except SerializationError as exc:
                self.send(Kind.BAD_RESULT, task_id, elapsed, _wire.pack_error(exc, "result"))
                continue
            except BaseException as exc:  # sys.exit() in __reduce__: as an unpicklable result
                error = SerializationError("result", f"{type(exc).__name__}: {exc}")
                self.send(Kind.BAD_RESULT, task_id, elapsed, _wire.pack_error(error, "result"))
                continue
            if len(parts) == 1:
                self.send(_RESULT, task_id, elapsed, parts[0])  # type: ignore[arg-type]
            else:
                self.send_parts(_RESULT, task_id, elapsed, parts)

    def _send_memory(self) -> None:
        """Send the process's memory now, ahead of a task's outcome (for ``max_rss``:
        the parent checks it as the outcome arrives)."""
        self.send(*_wire.load_frame(*sampler.sample_now()))

    async def _drain(self, task_id: int, gen: Any, credit: int) -> Any:
        """Stream a generator's parts (a STREAM task, ``credit`` > 0), or collect them
        into a list (a plain TASK), as the cancellable current task."""
        sender = stream.PartSender(self, task_id, credit) if credit else None
        self.current = asyncio.ensure_future(stream.collect(gen) if sender is None else sender.run(gen))
        self.current_id = task_id
        self.streaming = sender
        try:
            return await self.current
        finally:
            self.current = None
            self.streaming = None


def _run_batch(do_work: Callable[[Any], Any], is_async: bool, items: Batch) -> Any:
    """Run every item of a batch in order. Returns its outcomes as ``(results,
    failures)``: one result per item (None where it failed) and None, or a dict of
    index -> (False, error record) when any failed (see _remote.batch_outcomes); for an
    async processor a coroutine of them (so the batch can be cancelled like any task)."""
    if is_async:
        return _run_batch_async(do_work, items)
    results: list[Any] = []
    failures: dict[int, tuple[bool | None, bytes]] | None = None
    for item in items:
        try:
            result = do_work(item)
            if type(result) is GeneratorType:  # a generator task: the list of its parts
                result = list(result)
            elif type(result) not in _PLAIN_TYPES and (inspect.isawaitable(result) or stream.is_generator(result)):
                raise TypeError(f"a sync processor returned {type(result).__qualname__} inside a batch")
        except BaseException as exc:
            if failures is None:
                failures = {}
            failures[len(results)] = (False, _wire.pack_error(exc, "error"))
            result = None
        results.append(result)
    return results, failures


async def _run_batch_async(do_work: Callable[[Any], Any], items: Batch) -> Any:
    results: list[Any] = []
    failures: dict[int, tuple[bool | None, bytes]] | None = None
    for item in items:
        try:
            result = do_work(item)
            result = result if type(result) is AsyncGeneratorType else await result
            if type(result) not in _PLAIN_TYPES and stream.is_generator(result):
                result = await stream.collect(result)  # a generator task: the list of its parts
        except asyncio.CancelledError:
            raise  # the batch itself is cancelled
        except BaseException as exc:
            if failures is None:
                failures = {}
            failures[len(results)] = (False, _wire.pack_error(exc, "error"))
            result = None
        results.append(result)
    return results, failures


def _picklable_outcomes(outcomes: tuple[list[Any], dict[int, tuple[bool | None, bytes]] | None]) -> Any:
    """Replace results that cannot be pickled by a (None, error record) failure, so one
    bad result does not fail the whole batch."""
    results, failures = outcomes
    checked = dict(failures or {})
    for i, value in enumerate(results):
        if i in checked:
            continue
        try:
            _wire.dumps(value, "result")
        except SerializationError as exc:
            checked[i] = (None, _wire.pack_error(exc, "result"))
    return [None if i in checked else value for i, value in enumerate(results)], checked
