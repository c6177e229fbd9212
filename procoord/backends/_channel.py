"""The parent's end of one local worker process: its pipes, its exit, its liveness.

Frames from the worker are read without blocking the event loop and handed to the
channel's handler (the worker's slot); the worker counts as lost once its pipe has
reached end of file and its exit is known.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
from collections.abc import Hashable, Sequence

from .. import _remote, _wire
from .._wire import Frame, FrameReader, Kind
from ..errors import WorkerStartError, describe_exit
from ._base import ChannelHandler
from ._launcher import Launcher, pidfd_open
from ._pipe import PipeWriter
from ._shm import ChannelShared

__all__ = ("LocalChannel",)

# After a worker's exit is seen, how long to wait for its pipe's EOF (a grandchild may
# hold the pipe open) before declaring it lost anyway.
EOF_GRACE_S = 1.0

# After a worker's exit is seen, how long to wait for its exit status from the launcher.
STATUS_GRACE_S = 1.0

# While a big frame arrives, bytes at this rate or more count as signs of life.
LIVE_BYTES_PER_S = 64 * 1024

# A worker using at least this share of a CPU is busy, not stalled, even when it sends
# nothing: its main thread may hold the GIL in one long C call (a sort of a huge list,
# a big copy), which keeps the sampler thread from sending.
LIVE_CPU_SHARE = 0.1


class LocalChannel:
    """The parent's end of one worker process.

    The worker is lost once its pipe has reached end of file (or a grace period after
    its exit, if a process it started holds the pipe) and its exit is known: from the
    launcher's EXITED record with the exit status, or, if the launcher is gone, from the
    process's pidfd alone (exit status unknown).
    """

    def __init__(self, launcher: Launcher, write_fd: int, read_fd: int, shared: ChannelShared | None = None) -> None:
        self._launcher = launcher
        self._shared = shared  # big buffers through shared memory, once the worker says it mapped it
        self._shares = False
        self._owner = os.getpid()  # a fork of this process must not stop our worker
        self._write_fd = write_fd
        self._read_fd = read_fd
        self._loop = asyncio.get_running_loop()
        self._writer: PipeWriter | None = None
        self._reading = False
        self._frames = FrameReader(_wire.FROM_WORKER_KINDS)
        self._handler: ChannelHandler | None = None
        self._liveness: asyncio.TimerHandle | None = None
        self._early: list[Frame] = []
        self._ready: asyncio.Future[None] = self._loop.create_future()
        self._eof = False
        self._exited = False
        self._status_done = False
        self._exitcode: int | None = None
        self._lost = False
        self._pid: int | None = None
        self._pidfd: int | None = None
        self._is_async = False

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def is_async(self) -> bool:
        return self._is_async

    def open(self) -> None:
        self._writer = PipeWriter(self._loop, self._write_fd)
        os.set_blocking(self._read_fd, False)
        self._loop.add_reader(self._read_fd, self._on_readable)
        self._reading = True

    def follow(self, spawned: asyncio.Future[int]) -> None:
        """Learn the worker's pid (or why there is none) from the launcher's reply."""
        spawned.add_done_callback(self._on_spawned)

    async def wait_ready(self, ident: Hashable, timeout: float) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except TimeoutError:
            launcher = self._launcher
            if self._pid is None and launcher.alive:
                stopped = launcher.stopped()
                if stopped or launcher.answered:
                    launcher.kill()  # the next start gets a fresh one
                    raise WorkerStartError(
                        ident,
                        f"the worker launcher (pid {launcher.pid}) did not answer within {timeout:g} s "
                        f"({'it is stopped' if stopped else 'it hangs'}); it was replaced, so the next "
                        "add_worker starts a fresh one",
                    ) from None
                raise WorkerStartError(
                    ident,
                    f"not ready within {timeout:g} s: the worker launcher (pid {launcher.pid}) was still "
                    "starting (a busy machine?); a larger LocalBackend(ready_timeout=...) gives it time",
                ) from None
            raise WorkerStartError(ident, f"not ready within {timeout:g} s") from None
        except _StartFailed as failed:
            raise _remote.start_error(ident, failed.payload) from None
        except _SpawnFailed as failed:
            raise WorkerStartError(ident, failed.reason) from None
        except _DiedAtStart as died:
            raise WorkerStartError(
                ident, f"the process died during start-up {describe_exit(died.exitcode)}; its stderr may say why"
            ) from None

    def set_handler(self, handler: ChannelHandler) -> None:
        self._handler = handler
        early, self._early = self._early, []
        if early:
            handler.frames_received(early)
        if self._lost:
            handler.channel_lost(self._exitcode)

    # -- events ---------------------------------------------------------------------

    def _on_spawned(self, spawned: asyncio.Future[int]) -> None:
        if spawned.cancelled():
            return
        error = spawned.exception()
        if error is None:
            self._set_pid(spawned.result())
        elif not self._ready.done():
            self._ready.set_exception(_SpawnFailed(str(error)))
            self._ready.exception()

    def _set_pid(self, pid: int) -> None:
        if self._pid is not None or self._lost:
            return
        self._pid = pid
        self._pidfd = pidfd_open(pid)
        if self._pidfd is not None:
            self._loop.add_reader(self._pidfd, self._on_exit)
        self._launcher.watch(pid, self)

    def _deliver(self, frames: list[Frame]) -> None:
        if self._handler is not None:
            self._handler.frames_received(frames)
            return
        for i, received in enumerate(frames):
            if self._ready.done():
                self._early.extend(frames[i:])
                return
            if received[0] == Kind.READY:
                pid, self._is_async = _wire.read_ready(received)
                self._shares = self._shared is not None and _wire.read_ready_shares_memory(received)
                if not self._shares:
                    self._release_shared()
                self._set_pid(pid)
                self._ready.set_result(None)
            elif received[0] == Kind.LOG:  # logged while the processor was built: keep it for the slot
                self._early.append(received)
            elif received[0] == Kind.START_FAILED:
                self._ready.set_exception(_StartFailed(received[3]))
            elif received[0] == Kind.LOAD:  # the first sample, sent with READY
                self._early.append(received)

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
            if self._shares:
                frames = self._shared.results.receive(frames)  # type: ignore[union-attr]
            self._deliver(frames)
        if self._frames.corrupt is not None and self._reading:
            self._stop_reading()  # nothing more it sends can be understood
            self._broken(
                f"its channel stopped making sense: {self._frames.corrupt}, so something other than "
                "procoord wrote to the worker's result pipe"
            )

    def watch_liveness(self, timeout_s: float, sample_interval_s: float) -> None:
        """Check, every quarter of ``timeout_s``, that the worker still sends: a frame
        (its load samples come every ``sample_interval_s``), or bytes at a steady rate
        while a big frame arrives, or else that it is busy on a CPU."""
        period = timeout_s / 4
        seen_frames, seen_bytes, seen_cpu = -1, 0, self._cpu_seconds()
        quiet_since = last_check = self._loop.time()

        def check() -> None:
            nonlocal seen_frames, seen_bytes, seen_cpu, quiet_since, last_check
            self._liveness = None
            if self._lost or not self._reading:
                return
            frames, received, now = self._frames.frames_read, self._frames.bytes_read, self._loop.time()
            cpu = self._cpu_seconds()
            if (
                frames != seen_frames
                or received - seen_bytes >= LIVE_BYTES_PER_S * period
                or cpu - seen_cpu >= LIVE_CPU_SHARE * (now - last_check)
            ):
                quiet_since = now
            seen_frames, seen_bytes, seen_cpu, last_check = frames, received, cpu, now
            if now - quiet_since >= timeout_s:
                self._broken(
                    f"no frame came from the worker for {timeout_s:g} s although it sends a load sample every "
                    f"{sample_interval_s:g} s, and it used next to no CPU: its channel is stalled or corrupt "
                    "(or the process is stopped)"
                )
                return
            self._liveness = self._loop.call_later(period, check)

        self._liveness = self._loop.call_later(period, check)

    def _cpu_seconds(self) -> float:
        """CPU seconds the worker process has used so far (0.0 once it is gone)."""
        import psutil  # only here: the parent's import stays light

        if self._pid is None:
            return 0.0
        try:
            times = psutil.Process(self._pid).cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    def _stop_liveness(self) -> None:
        if self._liveness is not None:
            self._liveness.cancel()
            self._liveness = None

    def _broken(self, reason: str) -> None:
        self._stop_liveness()
        if self._handler is not None and not self._lost:
            self._handler.channel_broken(reason)

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
        """The pidfd: the process has ended (its status comes from the launcher)."""
        self._close_pidfd()
        if not self._status_done:
            self._loop.call_later(STATUS_GRACE_S, self.launcher_gone)
        self._mark_exited()

    def exit_status(self, status: int) -> None:
        """From the launcher: the worker was reaped with this wait status."""
        self._exitcode = os.waitstatus_to_exitcode(status)
        self._status_done = True
        self._mark_exited()

    def launcher_gone(self) -> None:
        """No exit status will come: the exit is known from the pidfd (or never)."""
        if not self._status_done:
            self._status_done = True
            if self._pidfd is None and self._pid is not None:
                self._mark_exited()  # no pidfd to wait on: the pipe's end of file decides
            self._maybe_lost()

    def _mark_exited(self) -> None:
        if not self._exited:
            self._exited = True
            if not self._eof:
                self._loop.call_later(EOF_GRACE_S, self._on_eof)
        self._maybe_lost()

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            if not self._loop.is_closed():
                self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def _maybe_lost(self) -> None:
        if self._lost or not self._eof:
            return
        if self._pid is not None and not (self._exited and self._status_done):
            return
        if self._pid is None and self._launcher.alive and not self._ready.done():
            return  # the launcher's answer (the pid, or why not) is on its way
        self._lost = True
        self._stop_liveness()
        if self._writer is not None:
            self._writer.abort()
        self._stop_reading()
        self._close_pidfd()
        self._release_shared()
        if not self._ready.done():
            self._ready.set_exception(_DiedAtStart(self._exitcode))
            self._ready.exception()
        elif self._handler is not None:
            self._handler.channel_lost(self._exitcode)

    # -- commands -------------------------------------------------------------------

    def send(self, frames: Sequence[bytes | memoryview]) -> None:
        if not self._lost and self._writer is not None:
            if self._shares:
                frames = self._shared.send(frames)  # type: ignore[union-attr]
            self._writer.write(frames)

    def kill(self) -> None:
        """SIGKILL the worker and its process group (what it started is ended too)."""
        if self._pid is not None and not self._exited and os.getpid() == self._owner:
            _kill_group(self._pid, signal.SIGKILL)

    def terminate_sync(self, grace_s: float) -> None:
        pid = self._pid
        if os.getpid() != self._owner:  # inherited through a fork of the coordinator's process
            return
        if pid is not None and not self._exited:
            watch = pidfd_open(pid)
            try:
                if watch is not None:
                    try:
                        os.kill(pid, signal.SIGTERM)
                    except OSError:
                        pass
                    if not _wait_readable(watch, grace_s):
                        _kill_group(pid, signal.SIGKILL)
                        _wait_readable(watch, grace_s)
            finally:
                if watch is not None:
                    os.close(watch)
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
        if live:
            self._stop_liveness()
        if self._writer is not None:
            self._writer.abort()
        if self._reading:
            self._reading = False
            if live:
                self._loop.remove_reader(self._read_fd)
            os.close(self._read_fd)
        self._close_pidfd()
        self._release_shared()
        if self._pid is not None:
            self._launcher.unwatch(self._pid)

    def _release_shared(self) -> None:
        shared, self._shared = self._shared, None
        self._shares = False
        if shared is not None:
            shared.close()

    def __repr__(self) -> str:
        return f"<LocalChannel pid={self._pid} lost={self._lost}>"


def _kill_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:  # not (yet) the leader of its own group
        try:
            os.kill(pid, signum)
        except OSError:
            pass
    except OSError:
        pass


def _wait_readable(fd: int, timeout_s: float) -> bool:
    watcher = select.poll()
    watcher.register(fd, select.POLLIN)
    return bool(watcher.poll(int(timeout_s * 1000)))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _StartFailed(Exception):
    def __init__(self, payload: bytes) -> None:
        self.payload = payload


class _SpawnFailed(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


class _DiedAtStart(Exception):
    def __init__(self, exitcode: int | None) -> None:
        self.exitcode = exitcode
