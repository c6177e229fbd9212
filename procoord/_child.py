"""The worker process: one processor, one task at a time, on its own uvloop loop.

Imports nothing of the parent's machinery (coordinator, backends, ray), so a worker
starts light. The loop thread reads frames and runs tasks in FIFO order; a small
sampler thread reports CPU and memory on the same channel (also while a sync
``do_work`` holds the loop) and ends the process as soon as the parent's end of the
pipe closes, whatever the loop is doing.
"""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import psutil
import uvloop

from . import _wire
from ._wire import Batch, Kind
from .errors import SerializationError
from .processor import ProcessorSpec, build_processor

PR_SET_PDEATHSIG = 1

# How often a worker reports CPU and memory by default: fresher stats against wake-ups.
DEFAULT_SAMPLE_INTERVAL_S = 0.25

# Results of these types are never awaitable: skip the (slow, ABC-based) check.
_PLAIN_TYPES = frozenset({int, float, str, bytes, bool, tuple, list, dict, set, type(None)})

# After a task that ran this long, read pending input before starting the next one, so
# a STOP or CANCEL sent meanwhile takes effect; shorter tasks skip the extra syscall.
CHECK_INPUT_AFTER_S = 0.001


def worker_main(read_conn: Connection, write_conn: Connection, spec: ProcessorSpec, sample_interval_s: float) -> None:
    """Entry point of a worker process (the target of its ``multiprocessing.Process``)."""
    rfd, wfd = os.dup(read_conn.fileno()), os.dup(write_conn.fileno())
    read_conn.close()
    write_conn.close()
    _release_forkserver()
    _die_with_parent()
    # Ctrl-C reaches the whole process group; shutting down is the parent's decision.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The parent marks workers daemonic so multiprocessing reaps them at exit; a worker
    # itself may still start processes of its own.
    multiprocessing.current_process().daemon = False
    worker = _Worker(rfd, wfd, sample_interval_s)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(worker.serve(spec))


def _release_forkserver() -> None:
    # Every forkserver child inherits the write end of the forkserver's liveness pipe;
    # holding it would keep the forkserver alive after the coordinator's process dies,
    # and so keep PR_SET_PDEATHSIG from ever firing.
    from multiprocessing import forkserver

    server: Any = getattr(forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
        server._forkserver_alive_fd = None
        server._forkserver_pid = None
        server._forkserver_address = None


def _die_with_parent() -> None:
    """Backstop for the pipe's EOF: ask Linux to SIGKILL us when our parent dies."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


class WorkerCore:
    """What a worker does with frames, whatever carries them: build the processor,
    report READY, queue TASKs, honour CANCEL and STOP, and run tasks one at a time, in
    order, on the running event loop.

    A subclass says how frames leave (:meth:`send`) and may take in frames that arrived
    while a long sync task held the loop (:meth:`read_pending`); incoming frames are
    given to :meth:`handle_frames`, the end of input to :meth:`end_input`.
    """

    def __init__(self) -> None:
        self.queue: deque[tuple[int, bytes]] = deque()
        self.wakeup: asyncio.Future[None] | None = None
        self.current: asyncio.Future[Any] | None = None
        self.current_id = 0
        self.cancel_requested = 0
        self.stopping = False
        self.eof = False

    def send(self, kind: Kind, task_id: int = 0, number: float = 0.0, payload: bytes = b"") -> None:
        """Send one frame to the parent (from any thread)."""
        raise NotImplementedError

    def send_parts(self, kind: Kind, task_id: int, number: float, parts: list[bytes | memoryview]) -> None:
        """Send one frame whose payload comes in parts (out-of-band buffers)."""
        self.send(kind, task_id, number, b"".join(parts))

    def started(self) -> None:
        """Called once READY is sent, on the loop, before the first task."""

    def read_pending(self) -> None:
        """Take in frames that arrived while a task held the loop (before the next task)."""

    # -- input ----------------------------------------------------------------------

    def handle_frames(self, frames: list[tuple[int, int, float, bytes]]) -> None:
        """Act on frames from the parent, in order; call on the loop."""
        for kind, task_id, _number, payload in frames:
            if kind == Kind.TASK:
                self.queue.append((task_id, payload))
            elif kind == Kind.CANCEL:
                self._cancel(task_id)
            elif kind == Kind.STOP:
                self.stopping = True
                for queued_id, _ in self.queue:
                    self.send(Kind.RETURNED, queued_id)
                self.queue.clear()
        self._wake()

    def end_input(self) -> None:
        """The parent is gone: drop queued tasks and end once the running one returns."""
        self.eof = True
        self.queue.clear()
        self._wake()

    # -- main loop ------------------------------------------------------------------

    async def serve(self, spec: ProcessorSpec) -> None:
        """Build the processor, report READY (or why not), then run tasks until told to stop."""
        try:
            do_work, is_async = build_processor(spec)
        except BaseException as exc:
            self.send(*_wire.start_failed_frame(exc))
            return
        self.send(*_wire.ready_frame(os.getpid(), is_async))
        self.started()
        await self._run_tasks(do_work, is_async)

    def _wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    def _cancel(self, task_id: int) -> None:
        if self.current is not None and self.current_id == task_id:
            self.cancel_requested = task_id
            self.current.cancel()
            return
        for i, (queued_id, _) in enumerate(self.queue):
            if queued_id == task_id:
                del self.queue[i]
                self.send(Kind.CANCELLED, task_id)
                return
        # Already finished: its result is on its way; the parent ignores it.

    async def _run_tasks(self, do_work: Callable[[Any], Any], is_async: bool) -> None:
        loop = asyncio.get_running_loop()
        queue = self.queue
        ran_long = False
        while True:
            if not queue:
                if self.stopping or self.eof:
                    return
                self.wakeup = loop.create_future()
                await self.wakeup
                self.wakeup = None
                continue
            task_id, payload = queue.popleft()
            if ran_long:
                # A STOP or CANCEL may have arrived while a long sync task held the
                # loop: honour it before starting the next task.
                queue.appendleft((task_id, payload))
                ran_long = False
                self.read_pending()
                continue
            try:
                task = _wire.load_payload(payload)
            except Exception as exc:
                self.send(Kind.BAD_TASK, task_id, 0.0, _wire.pack_error(exc, "task"))
                continue
            started = time.perf_counter()
            try:
                if type(task) is Batch:
                    result = _run_batch(do_work, is_async, task)
                else:
                    result = do_work(task)
                if is_async or (type(result) not in _PLAIN_TYPES and inspect.isawaitable(result)):
                    self.current = asyncio.ensure_future(result)
                    self.current_id = task_id
                    try:
                        result = await self.current
                    finally:
                        self.current = None
            except asyncio.CancelledError:
                if self.cancel_requested != task_id:
                    raise
                self.send(Kind.CANCELLED, task_id)
                continue
            except Exception as exc:
                elapsed = time.perf_counter() - started
                ran_long = elapsed > CHECK_INPUT_AFTER_S
                self.send(Kind.ERROR, task_id, elapsed, _wire.pack_error(exc, "error"))
                continue
            elapsed = time.perf_counter() - started
            ran_long = elapsed > CHECK_INPUT_AFTER_S
            try:
                try:
                    parts = _wire.dumps_parts(result, "result")
                except SerializationError:
                    if type(task) is not Batch:
                        raise
                    parts = _wire.dumps_parts(_picklable_outcomes(result), "result")
            except SerializationError as exc:
                self.send(Kind.BAD_RESULT, task_id, elapsed, _wire.pack_error(exc, "result"))
                continue
            if len(parts) == 1:
                self.send(Kind.RESULT, task_id, elapsed, parts[0])  # type: ignore[arg-type]
            else:
                self.send_parts(Kind.RESULT, task_id, elapsed, parts)


class _Worker(WorkerCore):
    """A worker process's core, with frames over a pair of pipes."""

    def __init__(self, rfd: int, wfd: int, sample_interval_s: float) -> None:
        super().__init__()
        self.rfd = rfd
        self.wfd = wfd
        self.sample_interval_s = sample_interval_s
        self.write_lock = threading.Lock()
        self.reader = _wire.FrameReader()

    # -- output ---------------------------------------------------------------------

    def send(self, kind: Kind, task_id: int = 0, number: float = 0.0, payload: bytes = b"") -> None:
        """Write one frame; thread-safe (the sampler thread writes too)."""
        header = _wire.header(kind, task_id, number, len(payload))
        with self.write_lock:
            try:
                if len(payload) < 65536:
                    self._write_all(header + payload)
                else:
                    self._write_all(header)
                    self._write_all(payload)
            except OSError:
                os._exit(0)  # the parent is gone: nobody to report to

    def send_parts(self, kind: Kind, task_id: int, number: float, parts: list[bytes | memoryview]) -> None:
        """Write one frame from its parts, each buffer as it is (no joining copy)."""
        header = _wire.header(kind, task_id, number, _wire.parts_size(parts))
        with self.write_lock:
            try:
                self._write_all(header)
                for part in parts:
                    self._write_all(part)
            except OSError:
                os._exit(0)

    def _write_all(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.wfd, view)
            view = view[written:]

    # -- input ----------------------------------------------------------------------

    def started(self) -> None:
        threading.Thread(target=self._sample_forever, name="procoord-sampler", daemon=True).start()
        os.set_blocking(self.rfd, False)
        asyncio.get_running_loop().add_reader(self.rfd, self._on_readable)

    def read_pending(self) -> None:
        self._on_readable()

    def _on_readable(self) -> None:
        try:
            frames = self.reader.read_from(self.rfd)
        except (BlockingIOError, InterruptedError):
            return
        if frames is None:
            asyncio.get_running_loop().remove_reader(self.rfd)
            self.end_input()
            return
        self.handle_frames(frames)

    # -- sampler thread -------------------------------------------------------------

    def _sample_forever(self) -> None:
        me = psutil.Process()
        me.cpu_percent(None)
        watcher = select.poll()
        watcher.register(self.rfd, 0)  # POLLHUP is always reported: the parent closed its end
        interval_ms = max(1, int(self.sample_interval_s * 1000))
        while True:
            if watcher.poll(interval_ms):
                os._exit(0)
            try:
                cpu = me.cpu_percent(None)
                rss = me.memory_info().rss
            except psutil.Error:
                continue
            self.send(*_wire.load_frame(rss, cpu))


def _run_batch(do_work: Callable[[Any], Any], is_async: bool, items: Batch) -> Any:
    """Run every item of a batch in order; each gives (True, result) or (False, error).

    Returns the outcomes, or a coroutine of them for an async processor (so the batch
    can be cancelled like any async task)."""
    if is_async:
        return _run_batch_async(do_work, items)
    outcomes: list[tuple[bool, Any]] = []
    for item in items:
        try:
            result = do_work(item)
            if type(result) not in _PLAIN_TYPES and inspect.isawaitable(result):
                raise TypeError("a sync processor returned an awaitable inside a batch")
            outcomes.append((True, result))
        except Exception as exc:
            outcomes.append((False, _wire.pack_error(exc, "error")))
    return outcomes


async def _run_batch_async(do_work: Callable[[Any], Any], items: Batch) -> list[tuple[bool, Any]]:
    outcomes: list[tuple[bool, Any]] = []
    for item in items:
        try:
            outcomes.append((True, await do_work(item)))
        except Exception as exc:
            outcomes.append((False, _wire.pack_error(exc, "error")))
    return outcomes


def _picklable_outcomes(outcomes: list[tuple[bool, Any]]) -> list[tuple[bool | None, Any]]:
    """Replace results that cannot be pickled by (None, error), so one bad result does
    not fail the whole batch."""
    checked: list[tuple[bool | None, Any]] = []
    for ok, value in outcomes:
        if ok:
            try:
                _wire.dumps(value, "result")
            except SerializationError as exc:
                checked.append((None, _wire.pack_error(exc, "result")))
                continue
        checked.append((ok, value))
    return checked
