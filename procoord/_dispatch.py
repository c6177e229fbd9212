"""Dispatch: where every task waits and which worker gets it.

The :class:`Dispatcher` owns the worker registry, the shared queue (tasks bound late:
Any, and Preferred over its threshold) and the count of unfinished tasks. Each worker
slot owns its own queue; the dispatcher asks a slot to take, hand back or drop tasks
and never changes a slot's queue itself. Slots report to it through
:class:`~procoord._slot.SlotOwner`: a task finished, tasks handed back, a worker failed,
room in a window (``pump``).

The path of one task::

    Coordinator.run / run_nowait / call (coordinator.py; call's future: _call.py)
      -> Dispatcher.submit: pickle the task once (_wire.dumps_parts); fails here,
         before anything is queued; a Task record (_task.py) holds its outcome
      -> Required / Preferred-with-room: the worker's own queue (WorkerSlot.bind)
         Any (and Preferred over its threshold): the shared queue, bound late
      -> Dispatcher.pump: each worker with room in its in-flight window takes from
         its own queue, then from the shared queue as the balancer decides
         (balancer.py); WorkerSlot.write / flush (_slot.py): one write per worker
      -> LocalChannel.send (backends/_channel.py) -> PipeWriter (backends/_pipe.py)
    worker process: PipeWorker (_worker/pipe.py) reads frames; WorkerCore._run_tasks
      (_worker/core.py) unpickles and runs them one at a time, FIFO; RESULT / ERROR
      -> LocalChannel._on_readable: FrameReader (_wire.py) checks and splits frames
      -> WorkerSlot.frames_received: window and counters (balancer.Window), error
         records turned into errors (_remote.py)
      -> Dispatcher.task_finished -> Task.resolve: its outcome, a call's future, join() waiters
      -> Dispatcher.pump
    await handle (handle.py), or the call's future -> (result, worker_ident)

    A handed-back or lost task goes through Dispatcher.reroute (_loss.py decides what
    becomes of a lost worker's tasks); cancel through Dispatcher.cancel (O(1) out of a
    queue, or a CANCEL frame); workers join and leave through _membership.py, end
    through _shutdown.py and restart by _restarts.RestartPolicy.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from . import _wire, balancer
from ._ledger import TaskLedger
from ._slot import ROUTABLE_STATES, WorkerSlot
from ._task import Payload, Task, TaskQueue
from .errors import CoordinatorClosedError, NoSuchWorkerError, NoWorkersError, WorkerLostError
from .prefs import Pref, Preferred, Required, _Any
from .stats import WorkerStats

__all__ = ("Dispatcher",)


class Dispatcher:
    """The dispatch state of one coordinator; runs on its event loop."""

    def __init__(self, queue_threshold: int, ewma_floor: float, max_pending: int | None) -> None:
        self.queue_threshold = queue_threshold
        self.ewma_floor = ewma_floor
        self.slots: dict[Hashable, WorkerSlot] = {}
        self.retiring: set[WorkerSlot] = set()  # stopping, or starting: not routable, still to be ended
        self.ledger = TaskLedger(max_pending)
        self._shared = TaskQueue()
        self._ids = itertools.count(1)
        self._given = itertools.count(1)
        self._cancel_pending = False
        # The last pump found every window full. Room only comes from events that pump
        # (a result, a worker ready or gone), so until then a new task need not pump.
        self._windows_full = False
        # A pump is due at the loop's next turn: the tasks queued meanwhile (a burst of
        # run_nowait, or run calls between two turns) are written together, in one
        # write per worker, rather than one by one.
        self._pump_due = False
        # A current worker last found routable: while it still is, a new task need not
        # look through every worker to know that one may run it.
        self._routable_hint: WorkerSlot | None = None
        self.on_recycle: Callable[[WorkerSlot, str], None] | None = None  # set by the coordinator

    # -- tasks in -------------------------------------------------------------------

    def submit(
        self,
        task: Any,
        prefs: Pref,
        timeout: float | None,
        size: int,
        stream: Any = None,
        retries: int = 0,
        priority: int = 0,
        future: asyncio.Future[Any] | None = None,
    ) -> Task:
        """Pickle a task and queue it where ``prefs`` says; raise, queuing nothing,
        when it cannot be run. ``stream``: the PartQueue of a streaming task;
        ``future``: the caller's own, which the task resolves (``coord.call``'s), if any."""
        slots = self.slots
        slot: WorkerSlot | None = None
        if type(prefs) is _Any:
            if not slots:
                raise NoWorkersError()
        elif type(prefs) is Required:
            slot = slots.get(prefs.ident)
            if slot is None:
                raise NoSuchWorkerError(prefs.ident, "TaskPrefs.Required names no current worker")
        elif type(prefs) is not Preferred:
            raise TypeError(
                f"prefs must be TaskPrefs.Any, TaskPrefs.Preferred(...) or TaskPrefs.Required(...), not {prefs!r}"
            )
        elif not slots:
            raise NoWorkersError()
        else:
            preferred = slots.get(prefs.ident)
            if (
                preferred is not None
                and preferred.routable
                and balancer.preferred_fits(preferred.queue_len, self.queue_threshold)
            ):
                slot = preferred
        parts = _wire.dumps_parts(task, "task", snapshot=True)
        payload: Payload = parts[0] if len(parts) == 1 else parts  # type: ignore[assignment]
        if slot is not None and not slot.routable:
            raise _never_ran(slot)
        if slot is None:
            hint = self._routable_hint
            if (hint is None or hint.state not in ROUTABLE_STATES) and not self._any_routable():
                raise NoWorkersError("every worker has failed; add a worker")
        record = Task(next(self._ids), payload, prefs, future, timeout, retries, priority, size, stream)
        if slot is not None:
            slot.bind(record, next(self._given))
        else:
            self._shared.append(record)
        self.ledger.task_added()
        if not self._windows_full:
            if self.ledger.unfinished == 1:
                self.pump()  # the only task: written now, so a lone call waits for nothing
            elif not self._pump_due:
                self._pump_due = True
                asyncio.get_running_loop().call_soon(self.pump_if_due)
        return record

    def cancel(self, task: Task, error: BaseException | None = None) -> bool:
        """Cancel a task: see :meth:`JoinHandle.cancel <procoord.JoinHandle.cancel>`;
        with ``error``, the task ends with that error instead of cancelled."""
        if task.done():
            return False
        slot: WorkerSlot | None = task.slot
        if slot is None:
            if not self._shared.discard(task):
                return False
        elif slot.is_written(task):
            if slot.is_running(task) and not slot.is_async and task.stream is None:
                return False  # a sync do_work cannot be interrupted (a generator can, between parts)
            slot.send_cancel(task)
            task.resolve(None, error)
            return True  # it leaves the books when the worker confirms
        elif not slot.unqueue(task):
            return False
        task.resolve(None, error)
        task.payload = b""  # never written: its buffers (in shared memory, maybe) go now
        self.ledger.task_left()
        return True

    # -- workers --------------------------------------------------------------------

    def install(self, slot: WorkerSlot) -> WorkerSlot | None:
        """Make a started worker routable; return the one it replaces (whose queued
        tasks it takes over), if any."""
        old = self.slots.get(slot.ident)
        self.slots[slot.ident] = slot
        if old is self._routable_hint:
            self._routable_hint = None
        if old is not None:
            slot.adopt(old.take_queued())  # tasks bound to this ident stay with it
        self.pump()
        return old

    def unlist(self, ident: Hashable) -> WorkerSlot | None:
        """Take a worker out of the registry (no new task is bound to it); None when
        there is none of that ident."""
        self.pump_if_due()
        slot = self.slots.pop(ident, None)
        if slot is self._routable_hint:
            self._routable_hint = None
        return slot

    def withdraw(self, slot: WorkerSlot) -> None:
        """A worker leaves: route its queued tasks elsewhere (or fail them)."""
        queued = slot.take_queued()
        if queued:
            self.reroute(queued, slot)
        self._fail_unroutable()
        self.pump()

    def stats(self) -> dict[Hashable, WorkerStats]:
        """A snapshot of every worker's load, keyed by ident."""
        self.pump_if_due()
        return {ident: _snapshot(slot) for ident, slot in self.slots.items()}

    def task_time_estimate(self) -> float | None:
        """Mean measured task time of the ready workers (seconds), or None before any."""
        times = [s.ewma_s for s in self.slots.values() if s.ready and s.ewma_s is not None]
        return sum(times) / len(times) if times else None

    # -- closing --------------------------------------------------------------------

    def cancel_pending(self) -> None:
        """From now on, fail every task that is not running instead of queuing it."""
        self._cancel_pending = True
        self.fail_queued()

    def end_streams(self) -> None:
        """Closing: end every stream not finished, queued or running (its loop raises
        CoordinatorClosedError after the parts that arrived; the generator is closed in
        the worker). A stream runs only as fast as its consumer, who cannot consume
        while it waits for ``close()``: waiting for it could never end."""
        tasks = [t for t in self._shared if t.stream is not None]
        for slot in [*self.slots.values(), *self.retiring]:
            tasks.extend(slot.stream_tasks())
        for task in tasks:
            self.cancel(
                task,
                CoordinatorClosedError(
                    "the coordinator was closed while this stream was open; finish or leave its loop before closing"
                ),
            )

    def fail_queued(self) -> None:
        """Fail every queued task with CoordinatorClosedError."""
        queued = self._shared.drain()
        for slot in self.slots.values():
            queued.extend(slot.take_queued())
        for task in queued:
            self.task_finished(task, error=CoordinatorClosedError("the coordinator was closed before the task ran"))

    # -- SlotOwner ------------------------------------------------------------------

    def task_finished(self, task: Task, result: Any = None, error: BaseException | None = None) -> None:
        """A task left the system: resolve it (unless cancelled) and count it."""
        task.resolve(result, error)
        task.payload = b""  # its buffers (in shared memory, maybe) go now
        self.ledger.task_left()

    def reroute(self, tasks: Sequence[Task], lost: WorkerSlot) -> None:
        """Tasks that never started on ``lost`` go back to be routed again, in order."""
        for task in reversed(tasks):
            task.slot = None
            if self._cancel_pending:
                self.task_finished(
                    task, error=CoordinatorClosedError("the coordinator was closed with cancel_pending=True")
                )
            elif type(task.prefs) is Required:
                slot = self.slots.get(task.prefs.ident)
                if slot is None:
                    self.task_finished(task, error=NoSuchWorkerError(task.prefs.ident, "the worker was removed"))
                elif slot.routable:
                    slot.requeue(task)
                else:
                    self.task_finished(task, error=_never_ran(slot, task))
            else:
                self._shared.appendleft(task)
        self._fail_unroutable()

    def slot_failed(self, slot: WorkerSlot) -> None:
        """A worker will not be restarted: fail what only it could run."""
        for task in slot.take_queued():
            if type(task.prefs) is Required:
                self.task_finished(task, error=_never_ran(slot, task))
            else:
                self._shared.append(task)
        self._fail_unroutable()

    def recycle(self, slot: WorkerSlot, reason: str) -> None:
        """A worker is due for a fresh process (see procoord._recycle)."""
        if self.on_recycle is not None and self.slots.get(slot.ident) is slot:
            self.on_recycle(slot, reason)

    def _any_routable(self) -> bool:
        for slot in self.slots.values():
            if slot.routable:
                self._routable_hint = slot
                return True
        return False

    def _fail_unroutable(self) -> None:
        if not self._shared or self._any_routable():
            return
        for task in self._shared.drain():
            self.task_finished(task, error=NoWorkersError("no worker left to run the task: all were removed or failed"))

    def pump_if_due(self) -> None:
        """Write now what a pump due at the loop's next turn would: before a worker leaves
        the registry or the load is read, so both see the tasks as sent."""
        if self._pump_due:
            self._pump_due = False
            self.pump()

    def pump(self) -> None:
        """Fill every ready worker's in-flight window: first from its own queue, then
        from the shared queue as the balancer decides, then from its own queue again.
        A worker's own tasks of a lower priority than the shared queue's next one wait
        for that second turn."""
        slots = [s for s in self.slots.values() if s.has_room]
        if not slots:
            self._windows_full = True  # the common case while a burst is issued
            return
        self._windows_full = False
        shared = self._shared
        if not shared.size:  # only the workers' own queues to serve
            for slot in slots:
                if slot.queued:
                    slot.fill_from_queue()
                    slot.flush()
            return
        above = shared.top_priority()
        held = False
        for slot in slots:
            if slot.queued:
                slot.fill_from_queue(above)
                held = held or bool(slot.queued)
        slots = [s for s in self.slots.values() if s.ready]
        if shared.size:
            self._pull(slots, shared)
        if held:
            for slot in slots:
                if slot.queued:
                    slot.fill_from_queue()
        for slot in slots:
            slot.flush()

    def _pull(self, slots: list[WorkerSlot], shared: TaskQueue) -> None:
        """Write shared tasks to the ready ``slots`` while the balancer picks one."""
        times = balancer.routing_times([s.ewma_s for s in slots], self.ewma_floor)
        cands = [balancer.Candidate(s.queue_len, s.has_room, s.last_given) for s in slots]
        rooms = 0
        for cand in cands:
            rooms += cand.has_room
        while rooms:
            i = balancer.pick_best(cands, times)
            if i is None:
                return
            if not cands[i].has_room:  # the best worker is full: another may take it, or it waits
                i = balancer.pick_for_pull(cands, times, shared.size)
                if i is None:
                    return
            slot = slots[i]
            cand = cands[i]
            count = balancer.run_length(cands, times, i, min(slot.room, shared.size))
            seq = next(self._given)
            slot.write(shared.take(count), seq)
            if not shared.size:
                return
            cand.queue_len += count
            cand.last_given = seq
            if not slot.has_room:
                cand.has_room = False
                rooms -= 1

    def __repr__(self) -> str:
        return f"<Dispatcher workers={len(self.slots)} shared={len(self._shared)} unfinished={self.ledger.unfinished}>"


def _never_ran(slot: WorkerSlot, task: Task | None = None) -> WorkerLostError:
    """The error of a task bound to a worker that failed for good; one that waited to
    run again (``retries``) ran before."""
    if task is not None and task.attempts > 1:
        slot.counts.retries -= 1  # counted when it was lost; it does not run again
        return WorkerLostError(
            slot.ident,
            slot.pid,
            None,
            "the task was lost with it, and it is not run again: the worker failed and is not restarted",
            attempts=task.attempts - 1,
        )
    return WorkerLostError(slot.ident, slot.pid, None, "the worker failed and is not restarted", ran=False)


def _snapshot(slot: WorkerSlot) -> WorkerStats:
    state: Any = slot.state
    if state == "ready" or state == "stopping":
        state = "busy" if slot.inflight else "idle"
    alive = slot.alive
    return WorkerStats(
        ident=slot.ident,
        pid=slot.pid,
        state=state,
        queue_len=slot.queue_len,
        in_flight=len(slot.inflight),
        completed=slot.completed,
        failed=slot.failed,
        ewma_ms=None if slot.ewma_s is None else slot.ewma_s * 1000.0,
        cpu_percent=slot.cpu_percent if alive else 0.0,
        rss_bytes=slot.rss_bytes if alive else 0,
        uptime_s=time.monotonic() - slot.ready_at if alive else 0.0,
        restarts=slot.restarts,
        factory=slot.spec.factory,
        backend=slot.backend.name,
        parts_streamed=slot.parts_streamed,
        recycles=slot.counts.recycles,
        retries=slot.counts.retries,
    )
