"""The worker inside a Ray actor: the same core as a local worker process, fed by
actor calls instead of a pipe.

Imports no ray: ``procoord.backends.ray`` wraps :class:`ProcoordWorker` with
``ray.remote``. Ray runs the actor's ``async`` methods on its own event loop; the worker
core runs on a loop of its own, in a thread, so a sync ``do_work`` never stops the actor
from taking a CANCEL or a STOP, or from handing over results and load samples.

The parent calls :meth:`ProcoordWorker.start` once, then keeps one
:meth:`ProcoordWorker.poll` pending at a time (a long poll: it returns as soon as there
are frames for the parent) and sends frames with :meth:`ProcoordWorker.push`.
"""

from __future__ import annotations

import asyncio
import os
import threading

import uvloop

from .. import _wire
from .._wire import Frame, Kind
from ..processor import ProcessorSpec
from . import sampler
from .core import WorkerCore

__all__ = ("ProcoordWorker",)


class _Outbox:
    """Frames for the parent, filled from any thread, emptied by ``poll`` on the actor's
    loop. Only the latest load sample is kept."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frames: list[Frame] = []
        self._load: Frame | None = None
        self._exitcode: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake ``poll`` on ``loop`` (the actor's loop) when frames arrive."""
        self._loop = loop
        self._event = asyncio.Event()

    def put(self, frame: Frame) -> None:
        with self._lock:
            was_empty = not self._frames and self._load is None
            if frame[0] == Kind.LOAD:
                self._load = frame
            else:
                self._frames.append(frame)
        if was_empty:
            self._notify()

    def finish(self, exitcode: int) -> None:
        """The worker core has ended: ``poll`` says so after the last frames."""
        with self._lock:
            self._exitcode = exitcode
        self._notify()

    def _notify(self) -> None:
        loop, event = self._loop, self._event
        if loop is not None and event is not None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the actor's loop is closing
                pass

    async def take(self) -> tuple[list[Frame], int | None]:
        """Wait until there is something for the parent; return the frames and, once the
        worker has ended, its exit code (None until then)."""
        event = self._event
        assert event is not None
        while True:
            event.clear()
            with self._lock:
                frames, self._frames = self._frames, []
                if self._load is not None:
                    frames.append(self._load)
                    self._load = None
                exitcode = self._exitcode
            if frames or exitcode is not None:
                return frames, exitcode
            await event.wait()


class _ActorCore(WorkerCore):
    """The worker core, its frames going to an outbox and coming from an inbox."""

    def __init__(self, outbox: _Outbox) -> None:
        super().__init__()
        self.outbox = outbox
        self.inbox: list[Frame] = []
        self.inbox_lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None

    def send(self, kind: Kind, task_id: int = 0, number: float = 0.0, payload: bytes = b"") -> None:
        self.outbox.put((int(kind), task_id, number, payload))

    def before_ready(self) -> None:
        self.outbox.put(_wire.load_frame(*sampler.sample_once()))

    def deliver(self, frames: list[Frame]) -> None:
        """Hand frames to the core (from the actor's loop)."""
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
        self._next_seq = 1
        self._early: dict[int, bytes] = {}
        self._stop_sampling = threading.Event()

    async def start(self) -> list[Frame]:
        """Build the processor in a thread of its own; return the first frames (READY,
        or START_FAILED with the reason)."""
        self._outbox.bind(asyncio.get_running_loop())
        threading.Thread(target=self._run_core, name="procoord-worker", daemon=True).start()
        frames, _exitcode = await self._outbox.take()
        if any(kind == Kind.READY for kind, *_ in frames):
            threading.Thread(target=self._sample_forever, name="procoord-sampler", daemon=True).start()
        return frames

    async def push(self, seq: int, data: bytes) -> None:
        """Frames from the parent (their wire bytes), numbered from 1 so they are taken
        in the order they were sent even if the calls run out of order."""
        if seq != self._next_seq:
            self._early[seq] = data
            return
        chunks = [data]
        self._next_seq += 1
        while self._next_seq in self._early:
            chunks.append(self._early.pop(self._next_seq))
            self._next_seq += 1
        frames = self._reader.feed(b"".join(chunks))
        if frames:
            self._core.deliver(frames)

    async def poll(self) -> tuple[list[Frame], int | None]:
        """Wait for frames for the parent; with them, the worker's exit code once it has
        ended (0 after a STOP, once the running task returned), else None."""
        frames, exitcode = await self._outbox.take()
        if exitcode is not None:
            self._stop_sampling.set()
        return frames, exitcode

    def _run_core(self) -> None:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(self._core.run(self._spec))

    def _sample_forever(self) -> None:
        sampler.sample_forever(
            self._sample_interval_s,
            lambda rss, cpu: self._outbox.put(_wire.load_frame(rss, cpu)),
            self._stop_sampling.wait,
        )
