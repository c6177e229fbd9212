"""Workers that run in the parent's own event loop: no process, the same frames.

An :class:`InlineBackend` worker is the worker core of a real worker process (the same
READY handshake, FIFO queue, CANCEL and STOP handling, error records), fed with the
bytes the coordinator would write to a pipe and answering with the frames a pipe would
carry. Routing, dispatch and life-cycle logic can so be exercised in milliseconds and
deterministically, without processes; it is also a debugging aid (a breakpoint in
``do_work`` stops in the caller's process).

What it cannot do is isolate: a processor shares the parent's memory and loop (a sync
``do_work`` holds the loop while it runs), there is no pid and no load sample, and a
processor that exits the process (``sys.exit``, ``os._exit``, a crash) ends the caller.
Use :class:`~procoord.backends.LocalBackend` for anything else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence

from .. import _remote, _wire
from .._wire import Frame, FrameReader, Kind
from .._worker.core import WorkerCore
from ..errors import WorkerStartError
from ..processor import ProcessorSpec
from ._base import ChannelHandler

__all__ = ("InlineBackend", "InlineChannel")

# The exit code reported for a worker ended by kill(), as for a process killed by SIGKILL.
KILLED_EXITCODE = -9


class InlineBackend:
    """Run each worker's processor in the coordinator's own event loop (for tests and
    debugging: no isolation, see the module docstring)."""

    name = "inline"

    def __repr__(self) -> str:
        return "InlineBackend()"

    async def start(self, ident: Hashable, spec: ProcessorSpec, handler: ChannelHandler) -> InlineChannel:
        """Build the processor and return once it is ready to take tasks."""
        channel = InlineChannel(handler)
        try:
            await channel.open(spec)
        except _StartFailed as failed:
            raise _remote.start_error(ident, failed.payload) from None
        except _Ended:
            raise WorkerStartError(ident, "the worker core ended during start-up") from None
        return channel


class _Core(WorkerCore):
    """The worker core, its frames going to the channel instead of a pipe."""

    def __init__(self, channel: InlineChannel) -> None:
        super().__init__()
        self.channel = channel

    def send(self, kind: Kind, task_id: int = 0, number: float = 0.0, payload: bytes = b"") -> None:
        self.channel.from_worker((int(kind), task_id, number, bytes(payload)))

    def read_pending(self) -> None:
        self.channel.to_worker()


class InlineChannel:
    """The parent's end of one inline worker."""

    def __init__(self, handler: ChannelHandler) -> None:
        self._loop = asyncio.get_running_loop()
        self._handler = handler
        self._core = _Core(self)
        self._reader = FrameReader()
        self._inbox: list[Frame] = []  # parsed from what the parent wrote, not yet taken
        self._outbox: list[Frame] = []  # sent by the worker, not yet delivered
        self._ready: asyncio.Future[None] = self._loop.create_future()
        self._serving: asyncio.Task[None] | None = None
        self._is_async = False
        self._exitcode: int | None = None
        self._lost = False

    @property
    def pid(self) -> int | None:
        """None: an inline worker has no process of its own."""
        return None

    @property
    def is_async(self) -> bool:
        return self._is_async

    async def open(self, spec: ProcessorSpec) -> None:
        self._serving = self._loop.create_task(self._core.serve(spec), name="procoord-inline-worker")
        self._serving.add_done_callback(self._on_end)
        await asyncio.shield(self._ready)

    # -- worker to parent -------------------------------------------------------------

    def from_worker(self, received: Frame) -> None:
        if not self._ready.done():
            if received[0] == Kind.READY:
                _pid, self._is_async = _wire.read_ready(received)
                self._ready.set_result(None)
                return
            if received[0] == Kind.START_FAILED:
                self._ready.set_exception(_StartFailed(received[3]))
                return
        was_empty = not self._outbox
        self._outbox.append(received)
        if was_empty:  # delivered on a later turn of the loop, as from a pipe
            self._loop.call_soon(self._deliver)

    def _deliver(self) -> None:
        frames, self._outbox = self._outbox, []
        if frames and not self._lost:
            self._handler.frames_received(frames)
        if self._exitcode is not None:
            self._end()

    def _on_end(self, serving: asyncio.Task[None]) -> None:
        if serving.cancelled():
            exitcode = KILLED_EXITCODE
        elif serving.exception() is not None:
            exitcode = 1
        else:
            exitcode = 0
        if self._exitcode is None:
            self._exitcode = exitcode
        if not self._ready.done():
            self._ready.set_exception(_Ended())
            self._ready.exception()
        if self._ready.exception() is not None:  # it never started: nobody to tell
            self._lost = True
            return
        self._loop.call_soon(self._deliver)  # the frames it sent, then its end

    def _end(self) -> None:
        if not self._lost:
            self._lost = True
            self._handler.channel_lost(self._exitcode)

    # -- parent to worker -------------------------------------------------------------

    def send(self, frames: Sequence[bytes | memoryview]) -> None:
        if self._lost or self._exitcode is not None:
            return
        was_empty = not self._inbox
        self._inbox.extend(self._reader.feed(b"".join(frames)))
        if was_empty and self._inbox:
            self._loop.call_soon(self.to_worker)

    def to_worker(self) -> None:
        """Hand what the parent wrote to the worker core."""
        frames, self._inbox = self._inbox, []
        if frames and self._exitcode is None:
            self._core.handle_frames(frames)

    def kill(self) -> None:
        if self._serving is not None and not self._serving.done():
            self._exitcode = KILLED_EXITCODE
            self._serving.cancel()

    def terminate_sync(self, grace_s: float) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self.kill()
            return
        try:
            self._loop.call_soon_threadsafe(self.kill)
        except RuntimeError:  # the loop is closed: nothing runs the worker any more
            pass

    def __repr__(self) -> str:
        return f"<InlineChannel lost={self._lost}>"


class _StartFailed(Exception):
    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class _Ended(Exception):
    pass
