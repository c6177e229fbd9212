"""The worker inside a Ray actor: the same core as a local worker process, fed by
actor calls instead of a pipe.

Imports no ray: ``procoord.backends.ray`` wraps :class:`ProcoordWorker` with
``ray.remote``. The actor is a threaded one (its methods are plain functions, each run
in a thread of Ray's, in the concurrency group the parent calls it in); the worker core
runs on an event loop of its own, in a thread, so a sync ``do_work`` never stops the
actor from taking a CANCEL or a STOP, or from handing over results and load samples.

The parent calls :meth:`ProcoordWorker.start` once. It sends frames with
:meth:`ProcoordWorker.push`: a push carrying tasks may wait for the next result and
return it (with every frame before it) as its reply, one call for a task's round trip.
Frames no push waits for (load samples, stream parts, logs, results of tasks sent while
another push waits) go by :meth:`ProcoordWorker.poll`, a long poll kept pending at a
time. Every reply that carries frames is numbered, so the parent hands them on in the
order they were sent, whichever call carried them.
"""

from __future__ import annotations

import asyncio
import os
import struct
import threading

import uvloop

from .. import _wire
from .._wire import Frame, Kind
from ..processor import ProcessorSpec
from . import sampler
from .core import WorkerCore

__all__ = ("ENDS_A_TASK", "REPLY", "SEQ", "ProcoordWorker")

SEQ = struct.Struct("<Q")
"""What the bytes given to ``push`` and ``call`` start with: their number, from 1 (the
frames' wire bytes follow)."""

REPLY = struct.Struct("<QBi")
"""What the bytes returned by ``start``, ``call`` and ``poll`` start with (the frames'
wire bytes follow): the number of this batch of frames (from 1; 0 for a reply that
carries nothing), 1 once the worker has ended (told once, in the batch after its last
frame) and then its exit code."""

ENDS_A_TASK: frozenset[int] = frozenset(
    {Kind.RESULT, Kind.ERROR, Kind.BAD_TASK, Kind.BAD_RESULT, Kind.CANCELLED, Kind.RETURNED, Kind.END}
)
"""The kinds of frame that end a task: what a waiting push returns on."""


class _Outbox:
    """Frames for the parent (as wire bytes), filled from any thread, taken in order by
    a waiting ``call``, by ``poll`` or by ``start``. Only the latest load sample is kept.

    A call waiting for a result wakes on a frame that ends a task; ``poll`` wakes on any
    other frame, or on a result while no call waits for one."""

    def __init__(self) -> None:
        lock = threading.Lock()
        self._for_call = threading.Condition(lock)
        self._for_poll = threading.Condition(lock)
        self._chunks: list[bytes] = [b""]  # the first: room for the reply's header
        self._load: bytes | None = None
        self._ends = 0  # frames ending a task among _chunks
        self._others = 0  # the other frames among _chunks
        self._waiting = 0  # calls waiting for a result
        self._batches = 0
        self._exitcode: int | None = None
        self._told_exit = False
        self._ready = False  # READY or START_FAILED was put

    def put(self, kind: int, task_id: int, number: float, payload: bytes) -> None:
        encoded = _wire.header(kind, task_id, number, len(payload))
        with self._for_call:
            if self._exitcode is not None:
                return
            if kind == Kind.LOAD:
                self._load = encoded
            else:
                self._chunks.append(encoded)
                if payload:
                    self._chunks.append(payload)
                if kind in ENDS_A_TASK:
                    self._ends += 1
                    if self._waiting:
                        self._for_call.notify()
                        return
                else:
                    self._others += 1
                    if kind == Kind.READY or kind == Kind.START_FAILED:
                        self._ready = True
            self._for_poll.notify()

    def finish(self, exitcode: int) -> None:
        """The worker core has ended: the next batch says so, after the last frames."""
        with self._for_call:
            self._exitcode = exitcode
            self._for_call.notify_all()
            self._for_poll.notify_all()

    def _take(self) -> bytes:
        chunks, self._chunks = self._chunks, [b""]
        if self._load is not None:
            chunks.append(self._load)
            self._load = None
        self._ends = self._others = 0
        ended, exitcode = 0, 0
        if self._exitcode is not None and not self._told_exit:
            ended, exitcode, self._told_exit = 1, self._exitcode, True
        elif len(chunks) == 1:
            return REPLY.pack(0, 0, 0)
        self._batches += 1
        chunks[0] = REPLY.pack(self._batches, ended, exitcode)
        return b"".join(chunks)

    def expect(self) -> None:
        """A call is about to deliver tasks and wait for a result (before they are
        delivered, so that their result cannot come first)."""
        with self._for_call:
            self._waiting += 1

    def take_result(self) -> bytes:
        """Wait for a frame that ends a task (or the worker's end); take every frame."""
        with self._for_call:
            while not self._ends and self._exitcode is None:
                self._for_call.wait()
            self._waiting -= 1
            return self._take()

    def take_any(self) -> bytes:
        """Wait for a frame no call waits for (or the worker's end); take every frame.
        Returns nothing only once the worker's end has been told."""
        with self._for_poll:
            while not (
                self._others
                or self._load is not None
                or (self._ends and not self._waiting)
                or self._exitcode is not None
            ):
                self._for_poll.wait()
            return self._take()

    def take_first(self) -> bytes:
        """Wait for READY or START_FAILED (after the logs of the build), or the worker's
        end; take every frame."""
        with self._for_poll:
            while not self._ready and self._exitcode is None:
                self._for_poll.wait()
            return self._take()


class _ActorCore(WorkerCore):
    """The worker core, its frames going to an outbox and coming from an inbox."""

    def __init__(self, outbox: _Outbox) -> None:
        super().__init__()
        self.outbox = outbox
        self.inbox: list[Frame] = []
        self.inbox_lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None

    def send(self, kind: Kind, task_id: int = 0, number: float = 0.0, payload: bytes = b"") -> None:
        self.outbox.put(kind, task_id, number, payload)

    def before_ready(self) -> None:
        self.outbox.put(*_wire.load_frame(*sampler.sample_once()))

    def deliver(self, frames: list[Frame]) -> None:
        """Hand frames to the core (from any thread)."""
        with self.inbox_lock:
            was_empty = not self.inbox
            self.inbox.extend(frames)
        if was_empty and self.loop is not None:
            try:
                self.loop.call_soon_threadsafe(self.read_pending)
            except RuntimeError:  # the core has ended (after a STOP): nothing to do
                pass

    def read_pending(self) -> None:
        with self.inbox_lock:
            frames, self.inbox = self.inbox, []
        if frames:
            self.handle_frames(frames)

    async def run(self, spec: ProcessorSpec) -> None:
        self.loop = asyncio.get_running_loop()
        exitcode = 1
        try:
            await self.serve(spec)
            exitcode = 0
        except SystemExit as exc:  # outside do_work (which fails only its task)
            exitcode = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            self.outbox.finish(exitcode)


class ProcoordWorker:
    """One procoord worker as a Ray actor (wrapped by ``ray.remote`` in the parent).

    Args:
        spec: what to build the processor from.
        sample_interval_s: seconds between CPU/memory samples sent to the parent.
    """

    def __init__(self, spec: ProcessorSpec, sample_interval_s: float) -> None:
        # The actor's process is its own: the worker's variables go into its environment
        # (the parent's own environment stays on the parent's machine).
        for name, value in spec.env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._spec = spec
        self._sample_interval_s = sample_interval_s
        self._outbox = _Outbox()
        self._core = _ActorCore(self._outbox)
        self._reader = _wire.FrameReader()
        self._input_lock = threading.Lock()
        self._next_seq = 1
        self._early: dict[int, bytes] = {}
        self._stop_sampling = threading.Event()

    def start(self) -> bytes:
        """Build the processor in a thread of its own; return the first frames (READY,
        or START_FAILED with the reason)."""
        threading.Thread(target=self._run_core, name="procoord-worker", daemon=True).start()
        reply = self._outbox.take_first()
        threading.Thread(target=self._sample_forever, name="procoord-sampler", daemon=True).start()
        return reply

    def push(self, data: bytes) -> None:
        """Frames from the parent: their number (:data:`SEQ`), then their wire bytes.
        Numbered from 1, they are taken in the order they were sent even if the calls
        run out of order."""
        seq = SEQ.unpack_from(data)[0]
        with self._input_lock:
            if seq != self._next_seq:
                self._early[seq] = data
                return
            chunks = [memoryview(data)[SEQ.size :]]
            self._next_seq += 1
            while self._next_seq in self._early:
                chunks.append(memoryview(self._early.pop(self._next_seq))[SEQ.size :])
                self._next_seq += 1
            frames = self._reader.feed(b"".join(chunks))
            if frames:
                self._core.deliver(frames)

    def call(self, data: bytes) -> bytes:
        """Frames carrying tasks, as for :meth:`push`; return at the next frame that ends
        a task, with every frame for the parent until then."""
        self._outbox.expect()
        self.push(data)
        return self._outbox.take_result()

    def poll(self) -> bytes:
        """Wait for frames no call waits for; with them, the worker's exit code once it
        has ended (0 after a STOP, once the running task returned)."""
        return self._outbox.take_any()

    def _run_core(self) -> None:
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(self._core.run(self._spec))
        finally:
            self._stop_sampling.set()

    def _sample_forever(self) -> None:
        sampler.sample_forever(
            self._sample_interval_s,
            lambda rss, cpu: self._outbox.put(*_wire.load_frame(rss, cpu)),
            self._stop_sampling.wait,
        )
