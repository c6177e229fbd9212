"""The parent-side books of one worker: its queue, its in-flight window, its EWMA and
counters; what it writes to its process and what it makes of what comes back (results,
timeouts, the loss of the process).

The life of the process itself (start, stop, restart) is its base,
:class:`~procoord._slot_life.SlotLife`. Routing decisions belong to the coordinator
(through :class:`SlotOwner`); a slot only keeps its own books and talks to its channel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Hashable, Sequence

from . import _logs, _remote, _wire, balancer
from ._loss import describe_death, settle_loss
from ._misuse import running_loop
from ._recycle import Counts, RecyclePolicy
from ._slot_life import SlotLife, SlotOwner
from ._stream import STREAM_CREDIT
from ._task import Task, TaskQueue
from ._wire import Frame, Kind
from .backends._base import Backend
from .errors import TaskTimeoutError, WorkerLostError
from .prefs import Required
from .processor import ProcessorSpec

__all__ = ("ROUTABLE_STATES", "SlotOwner", "WorkerSlot")

logger = logging.getLogger("procoord")

# The frame kinds read for every frame, as module names: looking a member up on its
# enum class costs several times a global lookup.
_LOAD, _LOG, _PART, _RESULT, _END, _ERROR = Kind.LOAD, Kind.LOG, Kind.PART, Kind.RESULT, Kind.END, Kind.ERROR
ROUTABLE_STATES = frozenset(("ready", "starting", "restarting"))  # new tasks may be bound to it


class WorkerSlot(SlotLife):
    """One worker as the coordinator sees it."""

    def __init__(
        self,
        owner: SlotOwner[WorkerSlot],
        ident: Hashable,
        spec: ProcessorSpec,
        backend: Backend,
        *,
        restart: bool,
        restart_limit: int,
        restart_window_s: float,
        recycle: RecyclePolicy | None = None,
    ) -> None:
        super().__init__(
            owner,
            ident,
            spec,
            backend,
            restart=restart,
            restart_limit=restart_limit,
            restart_window_s=restart_window_s,
        )
        self.recycle_policy = recycle if recycle is not None and recycle != RecyclePolicy() else None
        self._queue = TaskQueue()
        self.inflight: dict[int, Task] = {}
        self.window = balancer.Window()
        self.counts = Counts()  # shared with its successors when it is recycled
        self.tasks_run = 0  # by the current process: what max_tasks counts
        self.recycling = False
        self._handing_over = False
        self._idle: asyncio.Future[None] | None = None
        self.last_given = 0
        self.cpu_percent = 0.0
        self.rss_bytes = 0
        self._out: list[bytes | memoryview] = []
        self._head: Task | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timed_out: Task | None = None
        self._loop = running_loop()  # whose thread its tasks are resolved on

    # Its counters live in ``counts``, which a recycled worker's successor carries on.
    completed = property(lambda self: self.counts.completed, lambda self, n: setattr(self.counts, "completed", n))
    failed = property(lambda self: self.counts.failed, lambda self, n: setattr(self.counts, "failed", n))
    restarts = property(lambda self: self.counts.restarts, lambda self, n: setattr(self.counts, "restarts", n))
    parts_streamed = property(
        lambda self: self.counts.parts_streamed, lambda self, n: setattr(self.counts, "parts_streamed", n)
    )

    async def hand_over(self) -> None:
        """Write no more tasks here, and wait until those written have finished (or
        the process is gone): then nothing is left to hand back, and a successor runs
        this ident's tasks in order."""
        self._handing_over = True
        if self.inflight and self.channel is not None:
            if self._idle is None:
                self._idle = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._idle)

    def _wake_idle(self) -> None:
        if self._idle is not None:
            self._idle.set_result(None)
            self._idle = None

    @property
    def routable(self) -> bool:
        """Whether new tasks may be bound to this worker (now or after its restart)."""
        return self.state in ROUTABLE_STATES

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    @property
    def has_room(self) -> bool:
        return len(self.inflight) < self.window.depth and self.state == "ready" and not self._handing_over

    @property
    def room(self) -> int:
        """How many more tasks its in-flight window takes now."""
        if self.state != "ready" or self._handing_over:
            return 0
        return max(0, self.window.depth - len(self.inflight))

    @property
    def queue_len(self) -> int:
        return self._queue.size + len(self.inflight)

    @property
    def queued(self) -> int:
        """Tasks bound to this worker and not yet written to it."""
        return self._queue.size

    @property
    def is_async(self) -> bool:
        return self.channel is not None and self.channel.is_async

    # -- sending --------------------------------------------------------------------

    def bind(self, task: Task, seq: int) -> None:
        """Give a task to this worker's queue (it is written when there is room)."""
        task.slot = self
        self.last_given = seq
        self._queue.append(task)

    def requeue(self, task: Task) -> None:
        """Put a task that was handed back at the head of this worker's queue."""
        task.slot = self
        self._queue.appendleft(task)

    def adopt(self, tasks: list[Task]) -> None:
        """Take over tasks bound to an earlier worker of the same ident, in order."""
        for task in tasks:
            task.slot = self
        self._queue.extend(tasks)

    def take_queued(self) -> list[Task]:
        """Take back every task bound here and not yet written, in order (unbound)."""
        tasks = self._queue.drain()
        for task in tasks:
            task.slot = None
        return tasks

    def unqueue(self, task: Task) -> bool:
        """Take back one task not yet written (O(1)); False when it is not queued here."""
        if not self._queue.discard(task):
            return False
        task.slot = None
        return True

    def is_written(self, task: Task) -> bool:
        """Whether the task has been written to the worker (and not finished)."""
        return task.id in self.inflight

    def write(self, tasks: Sequence[Task], seq: int) -> None:
        """Write tasks to the worker now, in order (the caller checked ``room``);
        ``seq`` marks when it was given them, for the balancer's ties."""
        self.last_given = seq
        for task in tasks:
            task.slot = self
        self._write(tasks)

    def _write(self, tasks: Sequence[Task]) -> None:
        now = time.perf_counter()
        inflight = self.inflight
        out = self._out
        for task in tasks:
            task.written_at = now
            # Written to an idle worker, it starts as it arrives; otherwise when the task
            # ahead of it finishes (see _update_head).
            task.started_at = now if not inflight else 0.0
            inflight[task.id] = task
            _wire.add_task_frame(out, task.id, task.payload, 0 if task.stream is None else STREAM_CREDIT)

    def top_priority(self) -> int | None:
        """The priority of the next task in this worker's queue (None: empty)."""
        return self._queue.top_priority()

    def fill_from_queue(self, above: int | None = None) -> None:
        """Write queued tasks while there is room; with ``above``, only tasks of at
        least that priority (a higher one waits in the shared queue)."""
        queue = self._queue
        if above is None:  # all of them, highest priority first: as many as there is room for
            if queue:
                self._write(queue.take(self.room))
            return
        while queue and self.has_room and (queue.top_priority() or 0) >= above:
            self._write((queue.popleft(),))

    def flush(self) -> None:
        if self._out:
            out, self._out = self._out, []
            if self.channel is not None:
                self.channel.send(out)
            self._update_head()

    def stream_tasks(self) -> list[Task]:
        """The streaming tasks bound to this worker and not finished (queued or written)."""
        return [t for t in (*self._queue, *self.inflight.values()) if t.stream is not None]

    def send_credit(self, task: Task, parts: int) -> None:
        """Let the worker streaming ``task`` send ``parts`` more parts."""
        if self.channel is not None:
            self.channel.send([_wire.credit_frame(task.id, parts)])

    def send_cancel(self, task: Task) -> None:
        if self.channel is not None:
            self.channel.send([_wire.frame(Kind.CANCEL, task.id)])

    def is_running(self, task: Task) -> bool:
        """Whether the task is (as far as the parent can tell) the one running now."""
        return self._head is task

    # -- the head of the window is the running task: its timeout ------------------

    def _update_head(self) -> None:
        head = next(iter(self.inflight.values()), None)
        if head is self._head:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._head = head
        if head is not None:
            if not head.started_at:
                head.started_at = time.perf_counter()
            if head.timeout is not None:
                self._timer = asyncio.get_running_loop().call_later(head.timeout, self._on_timeout, head)

    def _on_timeout(self, task: Task) -> None:
        self._timer = None
        if self.inflight.get(task.id) is not task or self.channel is None:
            return
        del self.inflight[task.id]
        self._head = None
        self._timed_out = task
        retry = task.may_retry()
        logger.warning(
            "worker %r (pid %s): task %d timed out after %g s (attempt %d); restarting%s",
            self.ident,
            self.pid,
            task.id,
            task.timeout,
            task.attempts,
            ", the task runs again" if retry else "",
        )
        if not retry:  # a retried task goes back to routing once the process is gone
            self.failed += 1
            self.owner.task_finished(task, error=TaskTimeoutError(self.ident, task.timeout or 0.0, task.attempts))
        self.channel.kill()

    # -- receiving (ChannelHandler) ------------------------------------------------

    def frames_received(self, frames: Sequence[Frame]) -> None:
        owner = self.owner
        inflight = self.inflight
        counts = self.counts
        window = self.window
        returned: list[Task] = []
        now = time.perf_counter()  # the frames of one read arrived together
        ident = self.ident
        for received in frames:
            kind, task_id, number, payload = received
            if kind == _RESULT:  # the common frame first
                task = inflight.pop(task_id, None)
                if task is None:
                    continue  # finished already (timed out)
                size = task.size
                self.tasks_run += size or 1
                # As _measured does, written out.
                run_s = number / size if size else number
                written_at = task.written_at
                window.measured(run_s, now - written_at - run_s if task.started_at == written_at else None)
                try:
                    value = _wire.load_payload(payload)
                except BaseException as exc:  # a result that exits on unpickling must not stop the loop
                    counts.failed += 1
                    owner.task_finished(task, None, _remote.unloadable_result(exc))
                    continue
                if size:
                    value = _remote.batch_outcomes(ident, value)
                    failed = len(value[1])
                    counts.completed += len(value[0]) - failed
                    counts.failed += failed
                else:
                    counts.completed += 1
                owner.task_finished(task, (value, ident))
                continue
            if kind == _LOAD:
                self.rss_bytes, self.cpu_percent = _wire.read_load(received)
                continue
            if kind == _LOG:
                _logs.deliver(ident, payload)
                continue
            if kind == _PART:
                streaming = inflight.get(task_id)
                if streaming is not None:
                    counts.parts_streamed += 1
                    streaming.stream.put(payload)
                continue
            task = inflight.pop(task_id, None)
            if task is None:
                continue  # finished already (timed out)
            if kind == _END:
                run_s, parts = _wire.read_end(received)
                self._measured(task, run_s, now)
                counts.completed += 1
                owner.task_finished(task, result=(parts, ident))
            elif kind == _ERROR:
                self.tasks_run += task.size or 1  # what max_tasks counts: RESULT and ERROR
                self._measured(task, number, now)
                counts.failed += 1
                owner.task_finished(task, error=_remote.task_error(ident, payload))
            elif kind == Kind.BAD_TASK or kind == Kind.BAD_RESULT:
                counts.failed += 1
                owner.task_finished(task, error=_remote.bad_frame_error(kind, payload, task.stream is not None))
            elif kind == Kind.CANCELLED:
                owner.task_finished(task)
            elif kind == Kind.RETURNED:
                returned.append(task)
        window.settle()
        if returned:
            owner.reroute(returned, self)
        self._update_head()
        if not inflight:
            self._wake_idle()
            if self.state == "stopping":
                self._send_stop()
        if self.recycle_policy is not None and not self.recycling and self.state == "ready":
            reason = self.recycle_policy.reason(self.tasks_run, self.rss_bytes)
            if reason is not None:
                owner.recycle(self, reason)
        owner.pump()

    def _measured(self, task: Task, run_s: float, now: float) -> None:
        """Give the window a task's run time, and the channel's share of its round trip
        when it was written to an idle worker (then it started as it arrived)."""
        idle = task.started_at == task.written_at  # written to an idle worker: a round trip
        self.window.measured(run_s, now - task.written_at - run_s if idle else None)

    def channel_lost(self, exitcode: int | None) -> None:
        if self.state in ("stopped", "failed"):  # terminated from outside the loop
            self.channel = None
            self._fail_inflight(exitcode)
            return
        channel_pid = self.pid
        self.channel = None
        inflight = self._take_inflight()
        timed_out, self._timed_out = self._timed_out, None
        killed_by, self._killed_by = self._killed_by, ""
        stopping = self.state == "stopping"
        delay = None
        if not stopping:
            now = time.monotonic()
            if timed_out is None:
                self.restart_policy.crashed(now)
            delay = self.restart_policy.next_delay(now)
        loss = settle_loss(
            self.ident,
            channel_pid,
            exitcode,
            inflight,
            timed_out,
            stopping=stopping,
            killed_by=killed_by,
            restarts=delay is not None,
        )
        for task, error in loss.failed:
            self.failed += 1
            self.owner.task_finished(task, error=error)
        self._count_retries(loss.retried)
        if stopping:
            if loss.retried or loss.rerouted:
                self.owner.reroute(loss.retried + loss.rerouted, self)
            logger.info("worker %r (pid %s) stopped", self.ident, channel_pid)
            self.state = "stopped"
            self._resolve_stopped("stopped")
            return
        death = describe_death(self.ident, channel_pid, exitcode, loss, timed_out)
        if death is not None:
            logger.warning("%s", death)
        # Tasks written but not started, and Any/Preferred tasks bound here, go elsewhere;
        # Required ones wait for the restart.
        queued = self._queue.drain()
        movable = loss.retried + loss.rerouted + [t for t in queued if type(t.prefs) is not Required]
        self._queue.extend([t for t in queued if type(t.prefs) is Required])
        self._after_loss(delay)
        if movable:
            self.owner.reroute(movable, self)
        self.owner.pump()

    def terminate_sync(self, grace_s: float) -> None:
        super().terminate_sync(grace_s)
        inflight = list(self.inflight.values())  # read from another thread: a snapshot
        if inflight and (loop := self._loop) is not None and not loop.is_closed():
            try:  # on the loop, ahead of whatever the caller asks of it next (a close)
                loop.call_soon_threadsafe(self._fail_inflight, None)
            except RuntimeError:  # the loop closed meanwhile: nobody waits for them
                pass

    def _take_inflight(self) -> list[Task]:
        """The process is gone: take back what was written to it (running task first),
        with its timeout and the wait of a hand-over."""
        self._wake_idle()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._head = None
        inflight = list(self.inflight.values())
        self.inflight.clear()
        return inflight

    def _fail_inflight(self, exitcode: int | None) -> None:
        """Fail what was written to a worker ended from outside the loop
        (``terminate_workers``): nothing restarts it, so none of it will finish."""
        for i, task in enumerate(self._take_inflight()):
            self.failed += 1
            error = WorkerLostError(
                self.ident, self.pid, exitcode, "its coordinator ended it", "terminate_workers", ran=i == 0
            )
            self.owner.task_finished(task, error=error)

    def _count_retries(self, tasks: list[Task]) -> None:
        for task in tasks:
            task.attempts += 1
        self.counts.retries += len(tasks)

    # -- stats ----------------------------------------------------------------------

    @property
    def ewma_s(self) -> float | None:
        """The EWMA of this worker's task times (seconds), None before the first."""
        return self.window.ewma_s

    def __repr__(self) -> str:
        return (
            f"<WorkerSlot {self.ident!r} {self.state} pid={self.pid} "
            f"queue={len(self._queue)} inflight={len(self.inflight)}>"
        )
