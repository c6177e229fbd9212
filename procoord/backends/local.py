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
import sys
from collections.abc import Hashable

from .._worker import protocol
from .._worker.protocol import DEFAULT_SAMPLE_INTERVAL_S
from ..errors import WorkerStartError, describe_limit
from ..processor import ProcessorSpec
from ._base import ChannelHandler
from ._channel import LocalChannel
from ._launcher import Launcher, SpawnError, open_launcher
from ._seed import start_seed
from ._shm import ChannelShared

__all__ = ("LocalBackend", "LocalChannel")

# 1 MiB pipes (Linux's default cap for unprivileged users) move large tasks and
# results in fewer wake-ups than the 64 KiB default.
PIPE_SIZE = 1 << 20

# How long a worker may take from process start to READY (importing the user's
# modules, building the processor) before it is declared failed.
DEFAULT_READY_TIMEOUT_S = 60.0


# A worker sends a load sample every sample interval, whatever its processor does: with
# no frame, next to no bytes and next to no CPU for this long, its channel is taken for
# stalled or corrupt and the worker is ended (``LocalBackend(liveness_timeout=...)``).
DEFAULT_LIVENESS_TIMEOUT_S = 10.0


# The start methods LocalBackend takes: all start workers with procoord's launcher.
START_METHODS = ("forkserver", "spawn")


class LocalBackend:
    """Run each worker as a process on this machine.

    Workers are forked, on request, by a launcher process of this backend's own (one
    per event loop that uses it): a fresh interpreter that imports only procoord's
    worker side. It starts with the first worker and ends with :meth:`close`, with the
    backend's garbage collection or at interpreter exit. A launcher that dies or stops
    is replaced; the workers it started keep running. Big buffers of tasks and results go
    through shared memory, not the pipes (``PROCOORD_SHM_BYTES`` sizes it; see the README's
    "Big payloads").

    Args:
        start_method: "forkserver" (the default) or "spawn": both start workers with
            procoord's launcher, which is a fork server that never re-imports the main
            module. "fork" is refused.
        ready_timeout: seconds a worker may take to build its processor.
        sample_interval: seconds between CPU/memory samples sent by each worker.
        liveness_timeout: a ready worker from which neither a frame nor a stream of
            bytes arrives for this many seconds (while it sends a load sample every
            ``sample_interval``), and which uses next to no CPU meanwhile, has a
            stalled or corrupt channel: its running task
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
        start_seed()

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
        shared = ChannelShared.open()
        channel = LocalChannel(launcher, p2c_w, c2p_r, shared)
        try:
            try:
                spawned = launcher.spawn(p2c_r, c2p_w, f"procoord {ident}", _title(ident))
            finally:
                # Our copies of the child's ends must go, or its death would never show as EOF.
                os.close(p2c_r)
                os.close(c2p_w)
            channel.open()
            channel.send([protocol.encode_setup(_setup(spec, self.sample_interval, shared))])
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


def _setup(spec: ProcessorSpec, sample_interval_s: float, shared: ChannelShared | None) -> protocol.WorkerSetup:
    try:
        cwd = os.getcwd()
    except OSError:  # the parent's directory was removed: the worker keeps the launcher's
        cwd = ""
    return protocol.WorkerSetup(
        spec, spec.environment(), list(sys.path), cwd, sample_interval_s, None if shared is None else shared.setup
    )


def _grow_pipe(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except (OSError, AttributeError):
        pass
