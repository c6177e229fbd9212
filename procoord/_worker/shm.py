"""A local worker's end of the shared memory its parent offers (``procoord.backends._shm``).

The worker maps the parent's task arena read-only and copies a task's buffers out of
it as soon as the task's frame arrives (the parent frees them only once the task has
left it). It copies its results' large buffers into its own result arena, as a ring:
the parent copies them out when their frame arrives and writes, in the arena's first
word, how far it has read; space before that is free again. A buffer that does not
fit goes through the pipe.
"""

from __future__ import annotations

import mmap
import os
from collections import deque
from dataclasses import dataclass

from .._wire import Frame, Kind, payload

__all__ = ("SharedSetup", "WorkerShared")

# The result arena's first page holds the parent's read position (its first word).
RESULT_CONTROL_BYTES = 4096

_ALIGN = 4096


@dataclass(frozen=True, slots=True)
class SharedSetup:
    """Where a worker finds its shared memory: the parent's task arena (its path, and
    the generation its frames name) and the worker's result arena (its path)."""

    tasks_path: str
    tasks_generation: int
    results_path: str


class WorkerShared:
    """The worker's mappings of the task arena and of its result arena."""

    def __init__(self, setup: SharedSetup) -> None:
        self.generation = setup.tasks_generation
        fd = os.open(setup.tasks_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._tasks = mmap.mmap(fd, os.fstat(fd).st_size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        fd = os.open(setup.results_path, os.O_RDWR | os.O_CLOEXEC)
        try:
            results = mmap.mmap(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        self._task_view = memoryview(self._tasks)
        self._result_view = memoryview(results)[RESULT_CONTROL_BYTES:]
        self._read_to = memoryview(results)[:8].cast("Q")
        self._size = self._result_view.nbytes
        self._head = 0  # where the next buffer goes, as a position in the ring
        self._unread: deque[tuple[int, int]] = deque()  # (start, end) of buffers sent

    @classmethod
    def open(cls, setup: SharedSetup | None) -> WorkerShared | None:
        """The mappings, or None (buffers then go through the pipe) when there is
        nothing to map or it cannot be opened."""
        if setup is None:
            return None
        try:
            return cls(setup)
        except (OSError, ValueError):
            return None

    # -- tasks ------------------------------------------------------------------------

    def receive(self, frames: list[Frame]) -> list[Frame]:
        """The frames with their tasks' buffers copied out of the task arena."""
        out = frames
        magic = payload.MAGIC
        for i, received in enumerate(frames):
            if received[3][:4] != magic:  # the common case: no buffer out of band
                continue
            kind, task_id, number, body = received
            if (kind == Kind.TASK or kind == Kind.STREAM) and payload.has_shared(body):
                if out is frames:
                    out = list(frames)
                out[i] = (kind, task_id, number, payload.resolve(body, self._fetch))
        return out

    def _fetch(self, desc: payload.Desc) -> memoryview | None:
        _, _, generation, length, offset = desc
        if generation != self.generation or offset + length > self._task_view.nbytes:
            return None
        return self._task_view[offset : offset + length]

    # -- results ----------------------------------------------------------------------

    def place(self, parts: list[bytes | memoryview]) -> list[bytes | memoryview]:
        """The parts of a result or a part, its large buffers copied to the result arena."""
        return payload.share(parts, self._place) or parts

    def _place(self, desc: payload.Desc, data: bytes | memoryview) -> tuple[int, int] | None:
        length = desc[3]
        if length < payload.SHARED_MIN_BYTES:
            return None
        start = self._alloc(length)
        if start is None:
            return None
        offset = start % self._size
        self._result_view[offset : offset + length] = data
        return 0, start

    def _alloc(self, length: int) -> int | None:
        size = self._size
        if length > size:
            return None
        unread = self._unread
        read_to = self._read_to[0]
        while unread and unread[0][1] <= read_to:
            unread.popleft()
        start = -(-self._head // _ALIGN) * _ALIGN
        if not unread:
            start = -(-start // size) * size  # all read: start again at the arena's beginning
        elif start % size + length > size:
            start = -(-start // size) * size  # no room before the end: wrap
        if unread and start + length > unread[0][0] + size:
            return None
        self._unread.append((start, start + length))
        self._head = start + length
        return start
