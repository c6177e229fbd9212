"""The frames that travel between the coordinator and a worker process.

A frame is a fixed header (payload length, kind, task id, a float) and a payload of
pickled bytes. Tasks and results are pickled with plain pickle when it can do the job
(importable functions, plain data: several times faster), else with cloudpickle
(lambdas, closures, classes defined in ``__main__``).
"""

from __future__ import annotations

import os
import pickle
import struct
from enum import IntEnum
from typing import Any

import cloudpickle

from .errors import SerializationError

HEADER = struct.Struct("<IBQd")
"""payload length, kind, task id, a number (run time in seconds, or unused)."""
HEADER_SIZE = HEADER.size
MAX_PAYLOAD = 2**32 - 1
PROTOCOL = 5

# A payload starting with this holds a pickle stream and out-of-band buffers (no pickle
# stream starts with a zero byte). Buffers smaller than OOB_MIN_BYTES stay in the stream:
# below that the copy is cheaper than the bookkeeping.
OOB_MAGIC = b"\x00OOB"
OOB_MIN_BYTES = 64 * 1024


class Kind(IntEnum):
    """Frame kinds. Parent to worker: TASK, CANCEL, STOP. Worker to parent: the rest."""

    TASK = 1
    CANCEL = 2
    STOP = 3
    READY = 10
    START_FAILED = 11
    RESULT = 12
    ERROR = 13
    BAD_TASK = 14
    BAD_RESULT = 15
    CANCELLED = 16
    RETURNED = 17
    LOAD = 18


class Batch(list):  # type: ignore[type-arg]
    """Several tasks sent as one: the worker runs each in order and returns a list of
    (ok, result-or-packed-error) outcomes. Used by ``Coordinator.run_batch``."""

    __slots__ = ()


def frame(kind: Kind, task_id: int = 0, number: float = 0.0, payload: bytes = b"") -> bytes:
    """One frame as bytes."""
    return HEADER.pack(len(payload), kind, task_id, number) + payload


def dumps(obj: Any, what: str) -> bytes:
    """Pickle ``obj`` for the other side; raise SerializationError naming ``what``."""
    return _checked(_pickle(obj, what, None), what)


def dumps_parts(obj: Any, what: str, *, snapshot: bool = False) -> list[bytes | memoryview]:
    """Pickle ``obj`` with protocol 5 out-of-band buffers: large contiguous buffers
    (numpy arrays, PickleBuffer) are not copied into the pickle stream but sent as they
    are, after it. Returns the parts of one payload, in order.

    With ``snapshot=True`` each buffer is copied once, now: the payload then no longer
    sees changes the caller makes to the object afterwards (a task may wait in the
    parent before it is written), as with ordinary pickling.
    """
    buffers: list[bytes | memoryview] = []

    def out_of_band(buffer: pickle.PickleBuffer) -> bool:
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: in the stream
            return True
        if raw.nbytes < OOB_MIN_BYTES:
            return True
        buffers.append(raw.tobytes() if snapshot else raw)
        return False

    data = _pickle(obj, what, out_of_band)
    if not buffers:
        return [_checked(data, what)]
    lengths = [len(data), *(len(b) if isinstance(b, bytes) else b.nbytes for b in buffers)]
    head = OOB_MAGIC + struct.pack(f"<I{len(lengths)}Q", len(buffers), *lengths)
    parts: list[bytes | memoryview] = [head + data, *buffers]
    if sum(len(p) if isinstance(p, bytes) else p.nbytes for p in parts) > MAX_PAYLOAD:
        raise SerializationError(what, f"over the {MAX_PAYLOAD}-byte frame limit")
    return parts


def _pickle(obj: Any, what: str, buffer_callback: Any) -> bytes:
    try:
        data = pickle.dumps(obj, PROTOCOL, buffer_callback=buffer_callback)
        # A reference to __main__ would not resolve in the worker: pickle by value instead.
        if b"__main__" not in data:
            return data
    except Exception:
        pass
    try:
        return cloudpickle.dumps(obj, PROTOCOL, buffer_callback=buffer_callback)  # type: ignore[no-any-return]
    except Exception as exc:
        raise SerializationError(what, f"{type(exc).__name__}: {exc}") from exc


def _checked(data: bytes, what: str) -> bytes:
    if len(data) > MAX_PAYLOAD:
        raise SerializationError(what, f"{len(data)} bytes pickled is over the {MAX_PAYLOAD}-byte frame limit")
    return data


def loads(data: bytes | bytearray | memoryview, what: str) -> Any:
    """Unpickle bytes from the other side; raise SerializationError naming ``what``."""
    try:
        return load_payload(data)
    except Exception as exc:
        raise SerializationError(what, f"{type(exc).__name__}: {exc}") from exc


def load_payload(data: bytes | bytearray | memoryview) -> Any:
    """Unpickle a payload made by ``dumps`` or ``dumps_parts``. Out-of-band buffers are
    read in place: an array rebuilt from one shares the received frame's memory."""
    if data[:4] != OOB_MAGIC:
        return pickle.loads(data)
    view = memoryview(data)
    (count,) = struct.unpack_from("<I", view, 4)
    lengths = struct.unpack_from(f"<{count + 1}Q", view, 8)
    pos = 8 + 8 * (count + 1)
    stream = view[pos : pos + lengths[0]]
    pos += lengths[0]
    buffers = []
    for length in lengths[1:]:
        buffers.append(view[pos : pos + length])
        pos += length
    return pickle.loads(stream, buffers=buffers)


# Reads from a pipe: small enough to stay below malloc's mmap threshold (a fresh 256 KiB
# buffer per read costs ~18 us, a 64 KiB one ~2 us).
READ_CHUNK = 64 * 1024


class FrameReader:
    """Accumulates bytes and yields complete frames.

    Small frames are sliced out of what each read returns; a frame much larger than a
    read is received straight into one buffer of its own size, without further copies.
    """

    __slots__ = ("_big", "_big_filled", "_big_header", "_big_view", "_buf")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._big: bytearray | None = None
        self._big_view: memoryview | None = None
        self._big_filled = 0
        self._big_header: tuple[int, int, float] = (0, 0, 0.0)

    def read_from(self, fd: int) -> list[tuple[int, int, float, Any]] | None:
        """Read what a non-blocking ``fd`` has; return the frames completed (payloads
        are bytes-like), or None at end of file. Raises BlockingIOError when there is
        nothing to read."""
        big_view = self._big_view
        if big_view is not None:
            count = os.readv(fd, [big_view[self._big_filled :]])
            if not count:
                return None
            self._big_filled += count
            if self._big_filled < len(big_view):
                return []
            big_view.release()
            payload, self._big, self._big_view = self._big, None, None
            kind, task_id, number = self._big_header
            return [(kind, task_id, number, payload)]
        data = os.read(fd, READ_CHUNK)
        if not data:
            return None
        frames: list[tuple[int, int, float, Any]] = list(self.feed(data))
        buf = self._buf
        if len(buf) >= HEADER_SIZE:
            length, kind, task_id, number = HEADER.unpack_from(buf, 0)
            have = len(buf) - HEADER_SIZE
            if length - have > READ_CHUNK:
                big = bytearray(length)
                big[:have] = memoryview(buf)[HEADER_SIZE:]
                self._big, self._big_view, self._big_filled = big, memoryview(big), have
                self._big_header = (kind, task_id, number)
                buf.clear()
        return frames

    def feed(self, data: bytes) -> list[tuple[int, int, float, bytes]]:
        """Add bytes; return the frames they complete as (kind, task_id, number, payload)."""
        buf = self._buf
        frames = []
        if buf:
            buf += data
            size = len(buf)
            pos = 0
            with memoryview(buf) as view:
                while size - pos >= HEADER_SIZE:
                    length, kind, task_id, number = HEADER.unpack_from(buf, pos)
                    end = pos + HEADER_SIZE + length
                    if end > size:
                        break
                    frames.append((kind, task_id, number, bytes(view[pos + HEADER_SIZE : end])))
                    pos = end
            del buf[:pos]
            return frames
        # Nothing pending (the common case): slice frames straight out of ``data``.
        size = len(data)
        pos = 0
        while size - pos >= HEADER_SIZE:
            length, kind, task_id, number = HEADER.unpack_from(data, pos)
            end = pos + HEADER_SIZE + length
            if end > size:
                break
            frames.append((kind, task_id, number, data[pos + HEADER_SIZE : end]))
            pos = end
        if pos < size:
            buf += data[pos:]
        return frames

    @property
    def pending_bytes(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buf)
