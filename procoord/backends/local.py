"""Workers as local OS processes, talking over a pair of pipes.

Each worker is started with ``forkserver`` (the default on Linux: a fresh interpreter
with procoord preloaded forks it, cheaply) or ``spawn``; never a bare ``fork`` of a
process that runs an event loop. The parent's ends of the pipes are driven by asyncio
transports, so the event loop never blocks on them.
"""

from __future__ import annotations

import asyncio
import fcntl
import multiprocessing
import os
from collections import deque
from collections.abc import Hashable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from .. import _child, _remote, _wire
from .._child import DEFAULT_SAMPLE_INTERVAL_S
from .._wire import FrameReader, Kind
from ..errors import WorkerStartError, describe_exit
from ..processor import ProcessorSpec
from ._base import ChannelHandler, Frame

__all__ = ("LocalBackend", "LocalChannel")

# 1 MiB pipes (Linux's default cap for unprivileged users) move large tasks and
# results in fewer wake-ups than the 64 KiB default.
PIPE_SIZE = 1 << 20

# At most this many buffers per writev call (Linux's IOV_MAX is 1024).
MAX_IOV = 512

# How long a worker may take from process start to READY (importing the user's
# modules, building the processor) before it is declared failed.
DEFAULT_READY_TIMEOUT_S = 60.0


# After a worker's exit is seen, how long to wait for its pipe's EOF (a grandchild may
# hold the pipe open) before declaring it lost anyway.
EOF_GRACE_S = 1.0


class LocalBackend:
    """Run each worker as a process on this machine.

    Args:
        start_method: "forkserver" (default where available) or "spawn".
        ready_timeout: seconds a worker may take to build its processor.
        sample_interval: seconds between CPU/memory samples sent by each worker.
    """

    name = "local"

    def __init__(
        self,
        start_method: str | None = None,
        *,
        ready_timeout: float = DEFAULT_READY_TIMEOUT_S,
        sample_interval: float = DEFAULT_SAMPLE_INTERVAL_S,
    ) -> None:
        available = multiprocessing.get_all_start_methods()
        if start_method is None:
            start_method = "forkserver" if "forkserver" in available else "spawn"
        if start_method not in ("forkserver", "spawn"):
            raise ValueError(
                f"start_method must be 'forkserver' or 'spawn', not {start_method!r}: a worker "
                "must not be forked from a process that runs an event loop"
            )
        if start_method not in available:
            raise ValueError(f"start method {start_method!r} is not available on this platform")
        if ready_timeout <= 0 or sample_interval <= 0:
            raise ValueError("ready_timeout and sample_interval must be positive")
        self.start_method = start_method
        self.ready_timeout = ready_timeout
        self.sample_interval = sample_interval

    def __repr__(self) -> str:
        return f"LocalBackend(start_method={self.start_method!r})"

    async def start(self, ident: Hashable, spec: ProcessorSpec, handler: ChannelHandler) -> LocalChannel:
        """Start a worker process and return once it reports ready."""
        ctx: Any = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            ctx.set_forkserver_preload(["procoord._child"])
        p2c_r, p2c_w = os.pipe()
        c2p_r, c2p_w = os.pipe()
        for fd in (p2c_w, c2p_w):
            _grow_pipe(fd)
        child_read = Connection(p2c_r, writable=False)
        child_write = Connection(c2p_w, readable=False)
        proc = ctx.Process(
            target=_child.worker_main,
            args=(child_read, child_write, spec, self.sample_interval),
            name=f"procoord-worker-{ident}",
            daemon=True,
        )
        try:
            await asyncio.to_thread(proc.start)
        except BaseException:
            for fd in (p2c_w, c2p_r):
                os.close(fd)
            raise
        finally:
            # Our copies of the child's ends must go, or its death would never show as EOF.
            child_read.close()
            child_write.close()
        channel = LocalChannel(proc, p2c_w, c2p_r)
        try:
            await channel.open()
            await channel.wait_ready(ident, self.ready_timeout)
        except BaseException:
            channel.kill()
            channel.release_pipes()  # nobody will read this worker again
            raise
        channel.set_handler(handler)
        return channel


def _grow_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError):
        pass


class LocalChannel:
    """The parent's end of one worker process."""

    def __init__(self, proc: BaseProcess, write_fd: int, read_fd: int) -> None:
        self._proc = proc
        self._write_fd = write_fd
        self._read_fd = read_fd
        self._loop = asyncio.get_running_loop()
        self._writer: _PipeWriter | None = None
        self._reading = False
        self._frames = FrameReader()
        self._handler: ChannelHandler | None = None
        self._early: list[Frame] = []
        self._ready: asyncio.Future[None] = self._loop.create_future()
        self._eof = False
        self._exited = False
        self._exitcode: int | None = None
        self._lost = False
        self._pid: int | None = proc.pid
        self._is_async = False

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def is_async(self) -> bool:
        return self._is_async

    async def open(self) -> None:
        loop = self._loop
        self._writer = _PipeWriter(loop, self._write_fd)
        os.set_blocking(self._read_fd, False)
        loop.add_reader(self._read_fd, self._on_readable)
        self._reading = True
        loop.add_reader(self._proc.sentinel, self._on_exit)

    async def wait_ready(self, ident: Hashable, timeout: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except TimeoutError:
            raise WorkerStartError(ident, f"not ready within {timeout:g} s") from None
        except _StartFailed as failed:
            raise _remote.start_error(ident, failed.payload) from None
        except _DiedAtStart as died:
            raise WorkerStartError(
                ident,
                f"the process died during start-up {describe_exit(died.exitcode)}; its stderr may say why "
                "(a script that starts workers at import time must guard that code with "
                "`if __name__ == '__main__':`, as with any multiprocessing pool)",
            ) from None

    def set_handler(self, handler: ChannelHandler) -> None:
        self._handler = handler
        early, self._early = self._early, []
        if early:
            handler.frames_received(early)
        if self._lost:
            handler.channel_lost(self._exitcode)

    # -- events ---------------------------------------------------------------------

    def _deliver(self, frames: list[Frame]) -> None:
        if self._handler is not None:
            self._handler.frames_received(frames)
            return
        for i, received in enumerate(frames):
            if self._ready.done():
                self._early.extend(frames[i:])
                return
            if received[0] == Kind.READY:
                self._pid, self._is_async = _wire.read_ready(received)
                self._ready.set_result(None)
            elif received[0] == Kind.START_FAILED:
                self._ready.set_exception(_StartFailed(received[3]))

    def _on_readable(self) -> None:
        try:
            frames = self._frames.read_from(self._read_fd)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            frames = None
        if frames is None:
            self._stop_reading()
            self._on_eof()
            return
        if frames:
            self._deliver(frames)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._read_fd)
            os.close(self._read_fd)

    def _on_eof(self) -> None:
        if not self._eof:
            self._eof = True
            self._maybe_lost()

    def _on_exit(self) -> None:
        self._loop.remove_reader(self._proc.sentinel)
        self._exitcode = self._proc.exitcode
        if self._exitcode is None:  # spawn: the sentinel closes just before the reap
            self._proc.join(0.5)
            self._exitcode = self._proc.exitcode
        self._exited = True
        if not self._eof:
            self._loop.call_later(EOF_GRACE_S, self._on_eof)
        self._maybe_lost()

    def _maybe_lost(self) -> None:
        if self._lost or not (self._eof and self._exited):
            return
        self._lost = True
        if self._writer is not None:
            self._writer.abort()
        self._stop_reading()
        if not self._ready.done():
            self._ready.set_exception(_DiedAtStart(self._exitcode))
            self._ready.exception()
        elif self._handler is not None:
            self._handler.channel_lost(self._exitcode)

    # -- commands -------------------------------------------------------------------

    def send(self, frames: Sequence[bytes | memoryview]) -> None:
        if not self._lost and self._writer is not None:
            self._writer.write(frames)

    def kill(self) -> None:
        if not self._exited:
            try:
                self._proc.kill()
            except (ProcessLookupError, ValueError, AttributeError):
                pass

    def terminate_sync(self, grace_s: float) -> None:
        proc = self._proc
        try:
            if proc.exitcode is None:
                proc.terminate()
                proc.join(grace_s)
            if proc.exitcode is None:
                proc.kill()
                proc.join(grace_s)
        except (ValueError, AssertionError, ProcessLookupError, AttributeError):
            pass
        loop = self._loop
        if loop.is_closed() or _running_loop() is loop:
            self.release_pipes()
        else:  # called from another thread (garbage collection there, or exit)
            try:
                loop.call_soon_threadsafe(self.release_pipes)
            except RuntimeError:  # closed meanwhile
                self.release_pipes()

    def release_pipes(self) -> None:
        """Close the parent's ends now (on the loop's thread, or with the loop closed)."""
        if self._lost:
            return
        self._lost = True
        live = not self._loop.is_closed()
        if self._writer is not None:
            self._writer.abort()
        if self._reading:
            self._reading = False
            if live:
                self._loop.remove_reader(self._read_fd)
            os.close(self._read_fd)
        if live:
            self._loop.remove_reader(self._proc.sentinel)

    def __repr__(self) -> str:
        return f"<LocalChannel pid={self._pid} lost={self._lost}>"


class _PipeWriter:
    """Writes frames to a non-blocking pipe: at once with ``os.writev`` (no joining
    copy), and the rest when the pipe has room again. It owns the file descriptor."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._loop = loop
        self._fd: int | None = fd
        self._pending: deque[memoryview] = deque()
        os.set_blocking(fd, False)

    def write(self, parts: Sequence[bytes | memoryview]) -> None:
        fd = self._fd
        if fd is None:
            return
        if self._pending:
            self._pending.extend(memoryview(p) for p in parts)
            return
        if len(parts) <= MAX_IOV:  # the common case: the pipe takes it all at once
            try:
                written = os.writev(fd, parts)
            except (BlockingIOError, InterruptedError):
                written = 0
            except OSError:  # the worker is gone; its loss is seen on the read side
                return
            for part in parts:
                size = len(part) if isinstance(part, bytes) else part.nbytes
                if written >= size:
                    written -= size
                    continue
                self._pending.append(memoryview(part)[written:])
                written = 0
            if not self._pending:
                return
        else:
            self._pending.extend(memoryview(p) for p in parts)
        if self._flush():
            self._loop.add_writer(fd, self._on_writable)

    def _flush(self) -> bool:
        """Write what the pipe takes; True when something is left."""
        pending = self._pending
        fd = self._fd
        while pending and fd is not None:
            batch = [pending[i] for i in range(min(len(pending), MAX_IOV))]
            try:
                written = os.writev(fd, batch)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:  # the worker is gone; its loss is seen on the read side
                pending.clear()
                return False
            while written:
                head = pending[0]
                if written >= head.nbytes:
                    written -= head.nbytes
                    pending.popleft()
                else:
                    pending[0] = head[written:]
                    written = 0
        return False

    def _on_writable(self) -> None:
        if self._flush():
            return
        if self._fd is not None:
            self._loop.remove_writer(self._fd)

    def abort(self) -> None:
        """Close now, dropping what is not written."""
        fd, self._fd = self._fd, None
        self._pending.clear()
        if fd is None:
            return
        if not self._loop.is_closed():
            self._loop.remove_writer(fd)
        os.close(fd)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _StartFailed(Exception):
    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class _DiedAtStart(Exception):
    def __init__(self, exitcode: int | None) -> None:
        self.exitcode = exitcode
