"""Workers as local OS processes, talking over a pair of pipes.

Workers are forked by procoord's launcher (``procoord._worker.launcher``): a fresh
interpreter per backend and event loop that imports only the worker side and forks a
worker per request, so no process that runs an event loop or threads is ever forked
and the user's main module is never imported again. The parent's ends of the pipes
are driven by the event loop, so it never blocks on them.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import select
import signal
import sys
from collections.abc import Hashable, Sequence

from .. import _remote, _wire
from .._wire import Frame, FrameReader, Kind
from .._worker import protocol
from .._worker.protocol import DEFAULT_SAMPLE_INTERVAL_S
from ..errors import WorkerStartError, describe_exit, describe_limit
from ..processor import ProcessorSpec
from ._base import ChannelHandler
from ._launcher import Launcher, SpawnError, open_launcher, pidfd_open
from ._pipe import PipeWriter

__all__ = ("LocalBackend", "LocalChannel")

# 1 MiB pipes (Linux's default cap for unprivileged users) move large tasks and
# results in fewer wake-ups than the 64 KiB default.
PIPE_SIZE = 1 << 20

# How long a worker may take from process start to READY (importing the user's
# modules, building the processor) before it is declared failed.
DEFAULT_READY_TIMEOUT_S = 60.0

# After a worker's exit is seen, how long to wait for its pipe's EOF (a grandchild may
# hold the pipe open) before declaring it lost anyway.
EOF_GRACE_S = 1.0

# After a worker's exit is seen, how long to wait for its exit status from the launcher.
STATUS_GRACE_S = 1.0

# A worker sends a load sample every sample interval, whatever its processor does: with
# no frame and next to no bytes for this long, its channel is taken for stalled or
# corrupt and the worker is ended (``LocalBackend(liveness_timeout=...)``).
DEFAULT_LIVENESS_TIMEOUT_S = 10.0

# While a big frame arrives, bytes at this rate or more count as signs of life.
LIVE_BYTES_PER_S = 64 * 1024

# The start methods LocalBackend takes: all start workers with procoord's launcher.
START_METHODS = ("forkserver", "spawn")


class LocalBackend:
    """Run each worker as a process on this machine.

    Workers are forked, on request, by a launcher process of this backend's own (one
    per event loop that uses it): a fresh interpreter that imports only procoord's
    worker side. It starts with the first worker and ends with :meth:`close`, with the
    backend's garbage collection or at interpreter exit. A launcher that dies or stops
    is replaced; the workers it started keep running.

    Args:
        start_method: "forkserver" (the default) or "spawn": both start workers with
            procoord's launcher, which is a fork server that never re-imports the main
            module. "fork" is refused.
        ready_timeout: seconds a worker may take to build its processor.
        sample_interval: seconds between CPU/memory samples sent by each worker.
        liveness_timeout: a ready worker from which neither a frame nor a stream of
            bytes arrives for this many seconds (while it sends a load sample every
            ``sample_interval``) has a stalled or corrupt channel: its running task
            fails with WorkerLostError saying so and the worker is restarted. None
            turns the check off (a worker stopped with SIGSTOP then waits forever).
    """

    name = "local"

    def __init__(
        self,
        start_method: str | None = None,
        *,
        ready_timeout: float = DEFAULT_READY_TIMEOUT_S,
        sample_interval: float = DEFAULT_SAMPLE_INTERVAL_S,
        liveness_timeout: float | None = DEFAULT_LIVENESS_TIMEOUT_S,
    ) -> None:
        if start_method is None:
            start_method = "forkserver"
        if start_method not in START_METHODS:
            raise ValueError(
                f"start_method must be 'forkserver' or 'spawn', not {start_method!r}: a worker "
                "must not be forked from a process that runs an event loop"
            )
        if ready_timeout <= 0 or sample_interval <= 0:
            raise ValueError("ready_timeout and sample_interval must be positive")
        if liveness_timeout is not None and liveness_timeout <= 2 * sample_interval:
            raise ValueError(
                f"liveness_timeout must be None or more than twice sample_interval ({sample_interval:g} s), "
                f"not {liveness_timeout!r}"
            )
        self.liveness_timeout = liveness_timeout
        self.start_method = start_method
        self.ready_timeout = ready_timeout
        self.sample_interval = sample_interval
        self._launchers: list[Launcher] = []
        self._starting: dict[asyncio.AbstractEventLoop, asyncio.Future[Launcher]] = {}

    def __repr__(self) -> str:
        return f"LocalBackend(start_method={self.start_method!r})"

    def close(self) -> None:
        """End this backend's launchers, and with them any worker still running. The
        next worker started starts a fresh launcher."""
        launchers, self._launchers = self._launchers, []
        for launcher in launchers:
            launcher.close()

    async def _launcher(self, loop: asyncio.AbstractEventLoop) -> Launcher:
        self._launchers = [la for la in self._launchers if la.alive and not la.loop.is_closed()]
        for launcher in self._launchers:
            if launcher.loop is loop:
                return launcher
        starting = self._starting.get(loop)
        if starting is not None:  # another start on this loop is getting one
            return await asyncio.shield(starting)
        starting = self._starting[loop] = loop.create_future()
        try:
            launcher = await open_launcher(loop, self.ready_timeout)
        except BaseException as exc:
            starting.set_exception(exc)
            starting.exception()  # retrieved: whoever waits on it gets it too
            raise
        finally:
            del self._starting[loop]
        self._launchers.append(launcher)
        starting.set_result(launcher)
        return launcher

    async def start(self, ident: Hashable, spec: ProcessorSpec, handler: ChannelHandler) -> LocalChannel:
        """Start a worker process and return once it reports ready."""
        fds: list[int] = []
        try:
            launcher = await self._launcher(asyncio.get_running_loop())
            fds.extend(os.pipe())
            fds.extend(os.pipe())
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            raise WorkerStartError(ident, describe_limit(exc)) from None
        except SpawnError as exc:
            raise WorkerStartError(ident, exc.reason) from None
        p2c_r, p2c_w, c2p_r, c2p_w = fds
        for fd in (p2c_w, c2p_w):
            _grow_pipe(fd)
        channel = LocalChannel(launcher, p2c_w, c2p_r)
        try:
            try:
                spawned = launcher.spawn(p2c_r, c2p_w, f"procoord {ident}", _title(ident))
            finally:
                # Our copies of the child's ends must go, or its death would never show as EOF.
                os.close(p2c_r)
                os.close(c2p_w)
            channel.open()
            channel.send([protocol.encode_setup(_setup(spec, self.sample_interval))])
            channel.follow(spawned)
            await channel.wait_ready(ident, self.ready_timeout)
        except SpawnError as exc:
            channel.release_pipes()
            raise WorkerStartError(ident, exc.reason) from None
        except BaseException:
            channel.kill()
            channel.release_pipes()  # nobody will read this worker again
            raise
        channel.set_handler(handler)
        if self.liveness_timeout is not None:
            channel.watch_liveness(self.liveness_timeout, self.sample_interval)
        return channel


def _title(ident: Hashable) -> str:
    return f"procoord worker {ident} (coordinator pid {os.getpid()})"


def _setup(spec: ProcessorSpec, sample_interval_s: float) -> protocol.WorkerSetup:
    try:
        cwd = os.getcwd()
    except OSError:  # the parent's directory was removed: the worker keeps the launcher's
        cwd = ""
    return protocol.WorkerSetup(spec, spec.environment(), list(sys.path), cwd, sample_interval_s)


def _grow_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError):
        pass


class LocalChannel:
    """The parent's end of one worker process.

    The worker is lost once its pipe has reached end of file (or a grace period after
    its exit, if a process it started holds the pipe) and its exit is known: from the
    launcher's EXITED record with the exit status, or, if the launcher is gone, from the
    process's pidfd alone (exit status unknown).
    """

    def __init__(self, launcher: Launcher, write_fd: int, read_fd: int) -> None:
        self._launcher = launcher
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
            self._deliver(frames)
        if self._frames.corrupt is not None and self._reading:
            self._stop_reading()  # nothing more it sends can be understood
            self._broken(
                f"its channel stopped making sense: {self._frames.corrupt}, so something other than "
                "procoord wrote to the worker's result pipe"
            )

    def watch_liveness(self, timeout_s: float, sample_interval_s: float) -> None:
        """Check, every quarter of ``timeout_s``, that the worker still sends: a frame
        (its load samples come every ``sample_interval_s``) or, while a big frame
        arrives, bytes at a steady rate."""
        period = timeout_s / 4
        state = {"frames": -1, "bytes": 0, "quiet_since": self._loop.time()}

        def check() -> None:
            self._liveness = None
            if self._lost or not self._reading:
                return
            frames, received, now = self._frames.frames_read, self._frames.bytes_read, self._loop.time()
            if frames != state["frames"] or received - state["bytes"] >= LIVE_BYTES_PER_S * period:
                state["quiet_since"] = now
            state["frames"], state["bytes"] = frames, received
            if now - state["quiet_since"] >= timeout_s:
                self._broken(
                    f"no frame came from the worker for {timeout_s:g} s although it sends a load sample every "
                    f"{sample_interval_s:g} s: its channel is stalled or corrupt (or the process is stopped)"
                )
                return
            self._liveness = self._loop.call_later(period, check)

        self._liveness = self._loop.call_later(period, check)

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
        if self._pid is not None:
            self._launcher.unwatch(self._pid)

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
