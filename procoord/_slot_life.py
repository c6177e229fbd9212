"""The life of one worker's process, as its slot sees it: start, stop (with the grace
before a process that does not exit is killed), kill, and restart after a crash under
the worker's restart policy.

:class:`SlotLife` is the base of :class:`~procoord._slot.WorkerSlot`, which keeps the
books (queue, in-flight window, counters) and decides what a loss means for its tasks;
:class:`SlotOwner` is what a slot reports to.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from typing import Any, Protocol, Self, TypeVar

from . import _wire
from ._recycle import Counts
from ._restarts import RestartPolicy
from ._task import Task
from ._wire import Frame, Kind
from .backends._base import Backend, WorkerChannel
from .errors import CoordinatorClosedError, WorkerStartError
from .processor import ProcessorSpec
from .stats import WorkerState

__all__ = ("STOP_EXIT_GRACE_S", "SlotLife", "SlotOwner")

logger = logging.getLogger("procoord")

# A worker told to stop that has nothing left to run gets this long to exit before it is
# killed: a processor's non-daemon thread, for one, keeps its process from exiting.
STOP_EXIT_GRACE_S = 2.0

SlotT_contra = TypeVar("SlotT_contra", contravariant=True)


class SlotOwner(Protocol[SlotT_contra]):
    """What a slot needs from its coordinator."""

    def task_finished(self, task: Task, result: Any = None, error: BaseException | None = None) -> None: ...
    def reroute(self, tasks: Sequence[Task], lost: SlotT_contra) -> None: ...
    def pump(self) -> None: ...
    def slot_failed(self, slot: SlotT_contra) -> None: ...
    def recycle(self, slot: SlotT_contra, reason: str) -> None: ...


class SlotLife(ABC):
    """The process behind one worker slot: its channel, its state, and its way in and out."""

    # Kept by the slot's books (procoord._slot); read here.
    inflight: dict[int, Task]
    counts: Counts
    tasks_run: int
    cpu_percent: float

    def __init__(
        self,
        owner: SlotOwner[Self],
        ident: Hashable,
        spec: ProcessorSpec,
        backend: Backend,
        *,
        restart: bool,
        restart_limit: int,
        restart_window_s: float,
    ) -> None:
        # Weak, so that an open coordinator nobody refers to can be collected (its
        # finalizer then stops the processes): the event loop keeps slots alive.
        self._owner = weakref.ref(owner)
        self.ident = ident
        self.spec = spec
        self.backend = backend
        self.restart_policy = RestartPolicy(restart, restart_limit, restart_window_s)
        self.channel: WorkerChannel | None = None
        self.state: WorkerState | str = "starting"
        self.ready_at = 0.0
        self.pid: int | None = None
        self._killed_by = ""
        self._restart_task: asyncio.Task[None] | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._drain = False  # stopping: run what was written to the worker before STOP
        self._stop_sent = False
        self._exit_timer: asyncio.TimerHandle | None = None

    @property
    def owner(self) -> SlotOwner[Self]:
        owner = self._owner()
        return _ORPHANED if owner is None else owner

    @abstractmethod
    def frames_received(self, frames: Sequence[Frame]) -> None:
        """Frames from the worker, in order (see ChannelHandler)."""

    @abstractmethod
    def channel_lost(self, exitcode: int | None) -> None:
        """The worker's process is gone (see ChannelHandler)."""

    # -- start ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start the process; raise WorkerStartError if it cannot, and
        CoordinatorClosedError if it was told to stop meanwhile (its process is then
        gone when this returns)."""
        try:
            channel = await self.backend.start(self.ident, self.spec, self)
        except BaseException:
            self._resolve_stopped("stopped")
            raise
        if self._stopped is not None:  # stopped while it started: end it before going on
            self.channel = channel
            self.pid = channel.pid
            self.state = "stopping"
            channel.kill()
            await asyncio.shield(self._stopped)
            raise CoordinatorClosedError("the coordinator was closed while the worker was starting")
        self._attach(channel)
        logger.info("worker %r started (pid %s)", self.ident, self.pid)

    def _attach(self, channel: WorkerChannel) -> None:
        self.channel = channel
        self.pid = channel.pid
        self.state = "ready"
        self.ready_at = time.monotonic()
        self.cpu_percent = 0.0
        self.tasks_run = 0

    # -- stop -----------------------------------------------------------------------

    def begin_stop(self, drain: bool = False) -> None:
        """Ask the worker to stop (see ``stop``). Idempotent; a stop without ``drain``
        overrides a draining one (close after remove_worker)."""
        if self._restart_task is not None:
            self._restart_task.cancel()
            self._restart_task = None
        if self.state == "starting":
            if self._stopped is None:  # start() ends it once its process is there
                self._stopped = asyncio.get_running_loop().create_future()
            return
        if self.state in ("stopped", "failed") or self.channel is None:
            self.state = "stopped" if self.state != "failed" else "failed"
            return
        if self._stopped is None:
            self._stopped = asyncio.get_running_loop().create_future()
            self.state = "stopping"
            self._drain = drain
        elif not drain:
            self._drain = False
        if not (self._drain and self.inflight):
            self._send_stop()

    def _send_stop(self) -> None:
        if not self._stop_sent and self.channel is not None:
            self._stop_sent = True
            self.channel.send([_wire.frame(Kind.STOP)])
        self._arm_exit_timer()

    def _arm_exit_timer(self) -> None:
        if self._stop_sent and not self.inflight and self._exit_timer is None:
            self._exit_timer = asyncio.get_running_loop().call_later(STOP_EXIT_GRACE_S, self._exit_overdue)

    def _exit_overdue(self) -> None:
        self._exit_timer = None
        if self.channel is not None:
            logger.warning(
                "worker %r (pid %s) did not exit %g s after it stopped (a non-daemon thread?); killing it",
                self.ident,
                self.pid,
                STOP_EXIT_GRACE_S,
            )
            self.channel.kill()

    def _resolve_stopped(self, state: WorkerState | str) -> None:
        if self._exit_timer is not None:
            self._exit_timer.cancel()
            self._exit_timer = None
        if self._stopped is not None and not self._stopped.done():
            self.state = state
            self._stopped.set_result(None)

    async def stop(self, drain: bool = False) -> None:
        """Stop the worker and wait for its process to exit. It finishes its running
        task; the tasks written to it behind that one run too with ``drain`` (a task the
        worker has received is run), else it hands them back to be routed again."""
        self.begin_stop(drain)
        if self._stopped is not None and self.state not in ("stopped", "failed"):
            await asyncio.shield(self._stopped)

    def kill(self, killed_by: str = "") -> None:
        """End the process now (used when a stop takes too long); ``killed_by`` goes into
        the WorkerLostError of the task it was running."""
        self._killed_by = killed_by
        if self.channel is not None:
            self.channel.kill()

    def channel_broken(self, reason: str) -> None:
        """The channel no longer makes sense (see ChannelHandler): end the process."""
        logger.warning("worker %r (pid %s): %s; ending it", self.ident, self.pid, reason)
        self.kill(f"procoord because {reason}")

    def terminate_sync(self, grace_s: float) -> None:
        """Stop the process from outside the event loop (garbage collection, exit)."""
        self.state = "stopped"
        if self._restart_task is not None:
            self._restart_task.cancel()
        if self.channel is not None:
            self.channel.terminate_sync(grace_s)
        stopped = self._stopped
        if stopped is not None and not stopped.get_loop().is_closed():
            try:  # wake a stop() waiting for it (futures belong to their loop's thread)
                stopped.get_loop().call_soon_threadsafe(self._resolve_stopped, "stopped")
            except RuntimeError:  # the loop closed meanwhile: nobody waits
                pass

    # -- restart --------------------------------------------------------------------

    def _after_loss(self, delay: float | None) -> None:
        """Restart after ``delay`` seconds (the restart policy's ``next_delay``), or give
        the worker up when it is None."""
        if delay is None:
            self.state = "failed"
            logger.warning("worker %r failed (%s); no more restarts", self.ident, self.restart_policy.why_given_up())
            self.owner.slot_failed(self)
            return
        self.state = "restarting"
        self._restart_task = asyncio.get_running_loop().create_task(self._restart(delay))

    async def _restart(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        try:
            channel = await self.backend.start(self.ident, self.spec, self)
        except WorkerStartError as exc:
            logger.warning("worker %r could not restart: %s", self.ident, exc.reason)
            self._restart_task = None
            now = time.monotonic()
            self.restart_policy.crashed(now)
            self._after_loss(self.restart_policy.next_delay(now))
            return
        self._restart_task = None
        if self.state != "restarting":  # stopped meanwhile
            channel.kill()
            return
        self.counts.restarts += 1
        self._attach(channel)
        logger.info("worker %r restarted (pid %s, restart %d)", self.ident, self.pid, self.counts.restarts)
        self.owner.pump()

    @property
    def alive(self) -> bool:
        """Whether its process is up (not starting, restarting or gone)."""
        return self.state in ("ready", "stopping")


class _Orphaned:
    """Stands in for a coordinator that was garbage-collected: nothing to report to."""

    def task_finished(self, task: Task, result: Any = None, error: BaseException | None = None) -> None:
        pass

    def reroute(self, tasks: Sequence[Task], lost: object) -> None:
        pass

    def pump(self) -> None:
        pass

    def slot_failed(self, slot: object) -> None:
        pass

    def recycle(self, slot: object, reason: str) -> None:
        pass


_ORPHANED = _Orphaned()
