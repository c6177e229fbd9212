"""The parent's shared memory with its local workers: big buffers skip the pipes.

Two kinds of arena, each an anonymous ``memfd`` (no name in ``/dev/shm``: its memory
lives as long as an fd or a mapping of it, so nothing outlives the processes, however
they end), opened by a worker at start through ``/proc/<parent pid>/fd/<fd>``:

- The task arena, one per process, shared by every local worker: a task's large
  buffers are copied into it when the task is pickled (the one copy a task's snapshot
  takes anyway), and the frame carries their offsets. The parent alone allocates; a
  block is freed when the task's payload goes (the task left the coordinator; the
  worker copied the buffer out when the frame arrived). The arena is closed once no
  local worker is attached and no block is left.
- A result arena per worker: the worker copies its results' large buffers into it
  (in order, as a ring) and the parent copies them out as soon as their frame arrives,
  then publishes how far it has read in the arena's first word, for the worker to
  reuse the space. It is closed with the worker's channel.

A buffer that does not fit (the arena is full, or the buffer is larger than it) goes
through the pipe as before. ``PROCOORD_SHM_BYTES`` sets each arena's size (0 turns
shared memory off); an arena's memory is only what was used, and stays with it, for
the next buffers, until it is closed.
"""

from __future__ import annotations

import itertools
import mmap
import os
import threading
from collections import deque
from collections.abc import Sequence

from .. import _wire
from .._wire import HEADER, HEADER_SIZE, Kind, payload
from .._wire.memory import FirstFit
from .._worker.shm import RESULT_CONTROL_BYTES, SharedSetup

__all__ = (
    "DEFAULT_SHM_BYTES",
    "ChannelShared",
    "ResultArena",
    "TaskArena",
    "attach_task_arena",
    "detach_task_arena",
    "shm_bytes",
)

DEFAULT_SHM_BYTES = 1 << 30
"""The default size of each arena: a bound, not what it costs (memory is used as
buffers fill it)."""

_ALIGN = 4096

_generations = itertools.count(1)


def shm_bytes() -> int:
    """The size of each arena: ``PROCOORD_SHM_BYTES`` (bytes; 0 turns shared memory
    off), else :data:`DEFAULT_SHM_BYTES`."""
    raw = os.environ.get("PROCOORD_SHM_BYTES", "")
    try:
        return max(0, int(raw)) if raw else DEFAULT_SHM_BYTES
    except ValueError:
        return DEFAULT_SHM_BYTES


def _memfd(name: str, size: int) -> int | None:
    try:
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
    except (OSError, AttributeError):
        return None
    try:
        os.ftruncate(fd, size)
    except OSError:
        os.close(fd)
        return None
    return fd


class _Block:
    """One allocation in the task arena: freed when it goes (with the task's payload)."""

    __slots__ = ("arena", "offset", "size")

    def __init__(self, arena: TaskArena, offset: int, size: int) -> None:
        self.arena = arena
        self.offset = offset
        self.size = size

    def __del__(self) -> None:
        self.arena.release(self.offset, self.size)


class TaskArena:
    """The process's task arena (see the module): first fit, page-aligned blocks."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd: int | None = fd
        self.size = size
        self.owner = os.getpid()
        self.generation = next(_generations)
        self.path = f"/proc/{self.owner}/fd/{fd}"
        self._map = mmap.mmap(fd, size)
        self._view = memoryview(self._map)
        self._fit = FirstFit(size)
        self._freed: deque[tuple[int, int]] = deque()  # released by _Block.__del__, any thread
        self._lock = threading.Lock()
        self.blocks = 0
        self.channels = 0

    def place(self, data: bytes | memoryview) -> tuple[memoryview, int, int, object] | None:
        """Copy a task's buffer in (the :data:`procoord._wire.payload.SharedSink`)."""
        length = len(data) if isinstance(data, bytes | bytearray) else data.nbytes
        size = -(-length // _ALIGN) * _ALIGN
        with self._lock:
            if self.fd is None or os.getpid() != self.owner:
                return None
            self._take_freed()
            offset = self._fit.alloc(size)
            if offset is None:
                return None
            self.blocks += 1
        view = self._view[offset : offset + length]
        view[:] = data
        return view, self.generation, offset, _Block(self, offset, size)

    def release(self, offset: int, size: int) -> None:
        """Free a block (from any thread, also from a finalizer: never waits)."""
        self._freed.append((offset, size))
        self._settle()

    def _settle(self) -> None:
        """Take back freed blocks unless another thread holds the lock (it then does)."""
        while self._freed and self._lock.acquire(blocking=False):
            try:
                self._take_freed()
                self._maybe_close()
            finally:
                self._lock.release()

    def _take_freed(self) -> None:
        freed = self._freed
        while freed:
            offset, size = freed.popleft()
            self.blocks -= 1
            self._fit.free(offset, size)

    def attach(self) -> bool:
        """Count one more local worker on the arena; False when it is closed already."""
        with self._lock:
            if self.fd is None:
                return False
            self.channels += 1
            return True

    def detach(self) -> None:
        with self._lock:
            self.channels -= 1
            self._take_freed()
            self._maybe_close()
        self._settle()

    def _maybe_close(self) -> None:
        """With the lock held: close once nothing uses the arena (the next local worker
        makes a new one)."""
        if self.channels or self.blocks or self.fd is None:
            return
        fd, self.fd = self.fd, None
        if os.getpid() == self.owner:
            os.close(fd)
        if payload.shared_sink == self.place:
            payload.shared_sink = None
        # The mapping goes with the last view of a block (none is left in use).
        self._view.release()
        try:
            self._map.close()
        except BufferError:
            pass

    @property
    def closed(self) -> bool:
        return self.fd is None


_arena: TaskArena | None = None
_arena_lock = threading.Lock()


def attach_task_arena() -> TaskArena | None:
    """The process's task arena for a new local worker (made if there is none); None
    when shared memory is off or cannot be had."""
    global _arena
    with _arena_lock:
        arena = _arena
        if arena is None or arena.owner != os.getpid() or not arena.attach():
            size = shm_bytes()
            fd = _memfd("procoord-tasks", size) if size else None
            if fd is None:
                return None
            arena = _arena = TaskArena(fd, size)
            arena.attach()
        payload.shared_sink = arena.place
        return arena


def detach_task_arena(arena: TaskArena) -> None:
    """A local worker that used the arena is gone."""
    arena.detach()


def share_frames(frames: Sequence[bytes | memoryview], generation: int) -> list[bytes | memoryview]:
    """Frames to write to a worker that has mapped task arena ``generation``: the
    buffers of its tasks that are in that arena travel as offsets, not bytes."""
    out: list[bytes | memoryview] = []
    count = len(frames)
    i = 0
    while i < count:
        first = frames[i]
        length = HEADER.unpack_from(first)[0]
        have = len(first) - HEADER_SIZE
        end = i + 1
        while have < length:
            part = frames[end]
            have += len(part) if isinstance(part, bytes) else part.nbytes
            end += 1
        body = frames[i + 1 : end]
        shared = None
        if len(first) == HEADER_SIZE and body and body[0][:4] == payload.MAGIC:
            shared = payload.share(body, _in_arena(generation))
        if shared is None:
            out.extend(frames[i:end])
        else:
            _, kind, task_id, number = HEADER.unpack_from(first)
            out.append(_wire.header(kind, task_id, number, _wire.parts_size(shared)))
            out.extend(shared)
        i = end
    return out


def _in_arena(generation: int) -> payload.Placer:
    def place(desc: payload.Desc, data: bytes | memoryview) -> tuple[int, int] | None:
        if desc[0] == payload.IN_FRAME_AND_SHARED and desc[2] == generation:
            return generation, desc[4]
        return None

    return place


class ResultArena:
    """The parent's end of one worker's result arena (see the module)."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd: int | None = fd
        self.size = size
        self.path = f"/proc/{os.getpid()}/fd/{fd}"
        self._map = mmap.mmap(fd, RESULT_CONTROL_BYTES + size)
        self._view = memoryview(self._map)
        self._read_to = self._view[:8].cast("Q")
        self._seen = 0  # the end of the last buffer read, as a position in the ring

    @classmethod
    def open(cls, size: int) -> ResultArena | None:
        fd = _memfd("procoord-results", RESULT_CONTROL_BYTES + size) if size else None
        return None if fd is None else cls(fd, size)

    def receive(self, frames: list[_wire.Frame]) -> list[_wire.Frame]:
        """The frames with their results' buffers copied out of the arena, whose space
        goes back to the worker at once."""
        magic = payload.MAGIC
        for received in frames:
            if received[3][:4] == magic:
                break
        else:
            return frames  # the common case: no buffer out of band
        out = frames
        for i, received in enumerate(frames):
            if received[3][:4] != magic:
                continue
            kind, task_id, number, body = received
            if (kind == Kind.RESULT or kind == Kind.PART) and payload.has_shared(body):
                if out is frames:
                    out = list(frames)
                out[i] = (kind, task_id, number, payload.resolve(body, self._fetch))
                if self._read_to[0] != self._seen:
                    self._read_to[0] = self._seen
        return out

    def _fetch(self, desc: payload.Desc) -> memoryview | None:
        position, length = desc[4], desc[3]
        offset = position % self.size
        if offset + length > self.size:
            return None
        self._seen = max(self._seen, position + length)
        start = RESULT_CONTROL_BYTES + offset
        return self._view[start : start + length]

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is None:
            return
        os.close(fd)
        self._read_to.release()
        self._view.release()
        self._map.close()


class ChannelShared:
    """The shared memory of one local worker: the task arena it reads and its own
    result arena. Closed (once) with the worker's channel."""

    def __init__(self, tasks: TaskArena, results: ResultArena) -> None:
        self.tasks: TaskArena | None = tasks
        self.results = results
        self.setup = SharedSetup(tasks.path, tasks.generation, results.path)

    @classmethod
    def open(cls) -> ChannelShared | None:
        """Shared memory for a new worker; None when it is off or cannot be had."""
        tasks = attach_task_arena()
        if tasks is None:
            return None
        results = ResultArena.open(tasks.size)
        if results is None:
            tasks.detach()
            return None
        return cls(tasks, results)

    def send(self, frames: Sequence[bytes | memoryview]) -> Sequence[bytes | memoryview]:
        """Frames to write: task buffers in the task arena travel as offsets."""
        if self.tasks is None or memoryview not in map(type, frames):
            return frames
        return share_frames(frames, self.tasks.generation)

    def close(self) -> None:
        tasks, self.tasks = self.tasks, None
        if tasks is not None:
            self.results.close()
            tasks.detach()
