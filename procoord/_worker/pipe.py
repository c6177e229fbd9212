"""A worker process: the worker core with frames over a pair of pipes, on its own
uvloop loop.

The loop thread reads frames and runs tasks in FIFO order; a small sampler thread
reports CPU and memory on the same channel (also while a sync ``do_work`` holds the
loop) and ends the process as soon as the parent's end of the pipe closes, whatever the
loop is doing. Whenever the worker ends by itself, it first ends the processes it
started.
"""

from __future__ import annotations

import asyncio
import os
import select
import threading

import uvloop

from .. import _wire
from .._wire import Kind
from ..processor import ProcessorSpec
from . import sampler, tree
from .core import WorkerCore
from .shm import SharedSetup, WorkerShared

__all__ = ("PipeWorker", "worker_main")

# Processes a worker started get this long to end on SIGTERM when it exits, then SIGKILL.
CHILDREN_GRACE_S = 1.0


def worker_main(
    rfd: int, wfd: int, spec: ProcessorSpec, sample_interval_s: float, shared: SharedSetup | None = None
) -> None:
    """Run a worker on these pipe ends until the parent stops it or goes away; big
    buffers go through the shared memory of ``shared`` when it can be mapped."""
    worker = PipeWorker(rfd, wfd, sample_interval_s, WorkerShared.open(shared))
    threading.Thread(target=worker.watch, name="procoord-sampler", daemon=True).start()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(worker.serve(spec))
    finally:
        tree.end_descendants(CHILDREN_GRACE_S)


def _parent_gone() -> None:
    tree.end_descendants(CHILDREN_GRACE_S)
    os._exit(0)


class PipeWorker(WorkerCore):
    """A worker process's core, with frames over a pair of pipes (and big buffers in
    shared memory, with ``shared``)."""

    def __init__(self, rfd: int, wfd: int, sample_interval_s: float, shared: WorkerShared | None = None) -> None:
        super().__init__()
        self.shared = shared
        self.shares_memory = shared is not None
        self.rfd = rfd
        self.wfd = wfd
        self.sample_interval_s = sample_interval_s
        self.write_lock = threading.Lock()
        self.reader = _wire.FrameReader()
        self.ready = False

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
                _parent_gone()  # nobody to report to

    def send_parts(self, kind: Kind, task_id: int, number: float, parts: list[bytes | memoryview]) -> None:
        """Write one frame from its parts, each buffer as it is (no joining copy), or
        in shared memory."""
        if self.shared is not None:
            parts = self.shared.place(parts)
        header = _wire.header(kind, task_id, number, _wire.parts_size(parts))
        with self.write_lock:
            try:
                self._write_all(header)
                for part in parts:
                    self._write_all(part)
            except OSError:
                _parent_gone()

    def _write_all(self, data: bytes | memoryview) -> None:
        if type(data) is bytes:
            written = os.write(self.wfd, data)
            if written == len(data):  # the common case: the pipe took it all
                return
            view = memoryview(data)[written:]
        else:
            view = memoryview(data)
        while view:
            written = os.write(self.wfd, view)
            view = view[written:]

    # -- input ----------------------------------------------------------------------

    def before_ready(self) -> None:
        self.send(*_wire.load_frame(*sampler.sample_once()))

    def started(self) -> None:
        self.ready = True
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
        if self.shared is not None and frames:
            frames = self.shared.receive(frames)
        self.handle_frames(frames)

    # -- sampler thread -------------------------------------------------------------

    def watch(self) -> None:
        """Sample the load once ready; end the process when the parent closes its end
        (also while the processor is still being built)."""
        watcher = select.poll()
        watcher.register(self.rfd, 0)  # POLLHUP is always reported: the parent closed its end

        def parent_closed(timeout_s: float) -> bool:
            if watcher.poll(max(1, int(timeout_s * 1000))):
                _parent_gone()
            return False

        def report(rss: int, cpu: float) -> None:
            if self.ready:
                self.send(*_wire.load_frame(rss, cpu))

        sampler.sample_forever(self.sample_interval_s, report, parent_closed)
