"""The frames that travel between the coordinator and a worker process.

A frame is a fixed header (payload length, kind, task id, a float) and a payload of
pickled bytes. Tasks and results are pickled with plain pickle when it can do the job
(importable functions, plain data: several times faster), else with cloudpickle
(lambdas, closures, classes defined in ``__main__``).
"""

from __future__ import annotations

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
    try:
        data = pickle.dumps(obj, PROTOCOL)
        # A reference to __main__ would not resolve in the worker: pickle by value instead.
        if b"__main__" not in data:
            return _checked(data, what)
    except Exception:
        pass
    try:
        data = cloudpickle.dumps(obj, PROTOCOL)
    except Exception as exc:
        raise SerializationError(what, f"{type(exc).__name__}: {exc}") from exc
    return _checked(data, what)


def _checked(data: bytes, what: str) -> bytes:
    if len(data) > MAX_PAYLOAD:
        raise SerializationError(what, f"{len(data)} bytes pickled is over the {MAX_PAYLOAD}-byte frame limit")
    return data


def loads(data: bytes | memoryview, what: str) -> Any:
    """Unpickle bytes from the other side; raise SerializationError naming ``what``."""
    try:
        return pickle.loads(data)
    except Exception as exc:
        raise SerializationError(what, f"{type(exc).__name__}: {exc}") from exc


class FrameReader:
    """Accumulates bytes and yields complete frames."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

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
    def missing_bytes(self) -> int:
        """Bytes still needed to complete the frame being received (0 if unknown)."""
        buf = self._buf
        if len(buf) < HEADER_SIZE:
            return 0
        return HEADER_SIZE + int(HEADER.unpack_from(buf, 0)[0]) - len(buf)

    @property
    def pending_bytes(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buf)
