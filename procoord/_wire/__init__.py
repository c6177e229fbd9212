"""The frames that travel between the coordinator and a worker process.

A frame is a fixed header (payload length, kind, task id, a float) and a payload of
pickled bytes. Tasks and results are pickled with plain pickle when it can do the job
(importable functions, plain data: several times faster), else with cloudpickle
(lambdas, closures, classes defined in ``__main__``); their large buffers travel out of
band, after the pickle stream or in shared memory (:mod:`procoord._wire.payload`).
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import traceback
from collections.abc import Sequence
from enum import IntEnum
from typing import Any, NamedTuple

from ..errors import SerializationError
from . import payload

# The payloads of tasks, results and parts (procoord._wire.payload).
MAX_PAYLOAD = payload.MAX_PAYLOAD
PROTOCOL = payload.PROTOCOL
Received = payload.Received
dumps = payload.dumps
dumps_parts = payload.dumps_parts
load_payload = payload.load_payload
loads = payload.loads
parts_size = payload.parts_size
payload_size = payload.payload_size

HEADER = struct.Struct("<IBQd")
"""payload length, kind, task id, a number (run time in seconds, or unused)."""
HEADER_SIZE = HEADER.size


class Kind(IntEnum):
    """Frame kinds. Parent to worker: TASK, STREAM, CREDIT, CANCEL, STOP. Worker to
    parent: the rest.

    What each carries (task id field, number field, payload):

    - TASK: task id, -, the pickled task (:func:`dumps_parts`)
    - STREAM: task id, the parts the worker may send before it waits for more, the
      pickled task: a task whose generator's parts are streamed back
    - CREDIT: task id, how many more parts the worker may send (:func:`credit_frame`)
    - CANCEL, STOP: task id (CANCEL), -, -
    - READY: the worker's pid, 1.0 for an async ``do_work``, - (:func:`ready_frame`)
    - START_FAILED: -, -, why (:func:`start_failed_frame`)
    - RESULT: task id, run time, the pickled result
    - ERROR, BAD_TASK, BAD_RESULT: task id, run time, an error record (:func:`pack_error`)
    - CANCELLED, RETURNED: task id, -, -
    - LOAD: RSS bytes, CPU percent, - (:func:`load_frame`)
    - LOG: -, level, a log record's fields (:func:`log_frame`)
    - PART: task id, -, one pickled part of a streaming task (:func:`part_payload`)
    - END: task id, run time, how many parts were sent (:func:`end_frame`)
    """

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
    LOG = 19
    STREAM = 4
    CREDIT = 5
    PART = 20
    END = 21


# Kinds written for every task, as module names: looking a member up on its enum class
# costs several times a global lookup.
_TASK, _STREAM = Kind.TASK, Kind.STREAM

# The kinds of frame each side sends: what a reader may expect to receive.
TO_WORKER_KINDS: frozenset[int] = frozenset({Kind.TASK, Kind.STREAM, Kind.CREDIT, Kind.CANCEL, Kind.STOP})
FROM_WORKER_KINDS: frozenset[int] = frozenset(Kind) - TO_WORKER_KINDS


class Batch(list):  # type: ignore[type-arg]
    """Several tasks sent as one: the worker runs each in order and returns
    ``(results, failures)`` (see ``procoord._remote.batch_outcomes``). Used by
    ``Coordinator.run_batch`` and ``map``."""

    __slots__ = ()


Frame = tuple[int, int, float, bytes]
"""A received frame: (kind, task id, number, payload)."""

OutFrame = tuple[Kind, int, float, bytes]
"""A frame to send, before it is encoded: (kind, task id, number, payload)."""

Parts = Sequence[bytes | memoryview]
"""A payload in parts: a pickle stream followed by out-of-band buffers."""


def header(kind: int, task_id: int, number: float, size: int) -> bytes:
    """The header of a frame whose payload is ``size`` bytes."""
    return HEADER.pack(size, kind, task_id, number)


def frame(kind: Kind, task_id: int = 0, number: float = 0.0, payload: bytes = b"") -> bytes:
    """One frame as bytes."""
    return HEADER.pack(len(payload), kind, task_id, number) + payload


def frame_parts(kind: Kind, task_id: int, number: float, payload: bytes | Parts) -> list[bytes | memoryview]:
    """One frame as parts to write in order (its payload's buffers are not copied)."""
    if isinstance(payload, bytes):
        return [HEADER.pack(len(payload), kind, task_id, number), payload]
    return [HEADER.pack(parts_size(payload), kind, task_id, number), *payload]


# -- records that are not pickled tasks or results ------------------------------------


def ready_frame(pid: int, is_async: bool, shares_memory: bool = False) -> OutFrame:
    """READY: the processor is built; the worker's pid, whether do_work is async, and
    whether it has mapped the shared memory it was offered."""
    return (Kind.READY, pid, 1.0 if is_async else 0.0, b"shared" if shares_memory else b"")


def read_ready(received: Frame) -> tuple[int, bool]:
    """The (pid, is_async) of a READY frame."""
    return received[1], received[2] != 0.0


def read_ready_shares_memory(received: Frame) -> bool:
    """Whether the worker of a READY frame reads and writes big buffers in shared memory."""
    return received[3] == b"shared"


def load_frame(rss_bytes: int, cpu_percent: float) -> OutFrame:
    """LOAD: one CPU and memory sample of the worker process."""
    return (Kind.LOAD, rss_bytes, cpu_percent, b"")


def read_load(received: Frame) -> tuple[int, float]:
    """The (rss_bytes, cpu_percent) of a LOAD frame."""
    return received[1], received[2]


# What of a worker's log record travels to the parent (all str, int, float or None).
_LOG_FIELDS = (
    "name",
    "levelno",
    "levelname",
    "pathname",
    "filename",
    "module",
    "lineno",
    "funcName",
    "created",
    "msecs",
    "relativeCreated",
    "thread",
    "threadName",
    "process",
    "processName",
)


def log_frame(record: logging.LogRecord) -> OutFrame:
    """LOG: one log record of the worker, its message formatted (arguments merged, the
    traceback as text), so nothing of it needs unpickling but strings and numbers."""
    fields: dict[str, Any] = {name: getattr(record, name, None) for name in _LOG_FIELDS}
    fields["msg"] = record.getMessage()
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    fields["exc_text"] = record.exc_text
    fields["stack_info"] = record.stack_info
    return (Kind.LOG, 0, float(record.levelno), pickle.dumps(fields, PROTOCOL))


def read_log(payload: bytes) -> dict[str, Any]:
    """The fields of a LOG payload, for :func:`logging.makeLogRecord`."""
    fields: dict[str, Any] = pickle.loads(payload)
    return fields


def start_failed_frame(exc: BaseException) -> OutFrame:
    """START_FAILED: the processor could not be built; why, with the traceback."""
    text = "".join(traceback.format_exception(exc))
    return (Kind.START_FAILED, 0, 0.0, pickle.dumps((f"{type(exc).__name__}: {exc}", text)))


def read_start_failed(payload: bytes) -> tuple[str, str]:
    """The (reason, remote traceback) of a START_FAILED payload."""
    reason, text = pickle.loads(payload)
    return reason, text


def add_task_frame(out: list[bytes | memoryview], task_id: int, payload: bytes | Parts, credit: int) -> None:
    """Append the parts of a TASK frame to ``out``, or of a STREAM frame when
    ``credit`` (the parts the worker may send before it waits for more) is not 0."""
    if type(payload) is bytes and not credit:  # the common case, once per task: no further call
        out.append(HEADER.pack(len(payload), _TASK, task_id, 0.0))
        out.append(payload)
    else:
        out += frame_parts(_STREAM if credit else _TASK, task_id, float(credit), payload)


def read_stream_credit(received: Frame) -> int:
    """The first credit of a STREAM frame."""
    return int(received[2])


STREAM_BYTES = 16 << 20
"""The bytes of parts a streaming worker may have sent and not yet had acknowledged by a
CREDIT (whatever its part credit): large parts are bounded by size, not only by count.
One part is always allowed, however large."""


def credit_frame(task_id: int, parts: int) -> bytes:
    """CREDIT: the worker streaming ``task_id`` may send ``parts`` more parts."""
    return frame(Kind.CREDIT, task_id, float(parts))


def read_credit(received: Frame) -> tuple[int, int]:
    """The (task id, parts) of a CREDIT frame."""
    return received[1], int(received[2])


def part_payload(part: Any) -> list[bytes | memoryview]:
    """The payload of a PART frame, in parts (large buffers out of band); raises
    SerializationError when the part cannot be pickled."""
    return dumps_parts(part, "part")


def read_part(payload: bytes | bytearray | memoryview) -> Any:
    """The part a PART payload holds; raises SerializationError when it cannot be
    unpickled."""
    return loads(payload, "part")


_END = struct.Struct("<Q")


def end_frame(task_id: int, run_s: float, parts: int) -> OutFrame:
    """END: the generator of a streaming task is exhausted after ``parts`` parts."""
    return (Kind.END, task_id, run_s, _END.pack(parts))


def read_end(received: Frame) -> tuple[float, int]:
    """The (run time, parts sent) of an END frame."""
    (parts,) = _END.unpack(received[3])
    return received[2], parts


class ErrorRecord(NamedTuple):
    """An exception raised in the worker, as it crosses to the parent."""

    exception: bytes | None
    """The exception pickled on its own (None when it cannot be), so the parent can try
    to rebuild it without losing the rest of the record."""
    traceback: str
    """Its traceback, formatted in the worker."""
    summary: str
    """``Type: message`` on one line."""


def pack_error(exc: BaseException, what: str) -> bytes:
    """An error record for ``exc`` (the payload of ERROR, BAD_TASK, BAD_RESULT, and of a
    failed item in a batch's outcomes). ``what`` is "error" for an exception raised by
    do_work (the exception itself travels too), "task" or "result" for a pickling failure.
    """
    text = "".join(traceback.format_exception(exc))
    try:
        summary = f"{type(exc).__qualname__}: {exc}"
    except Exception:
        summary = type(exc).__qualname__
    exc_bytes: bytes | None
    try:
        exc_bytes = dumps(exc, what) if what == "error" else None
    except SerializationError:
        exc_bytes = None
    return pickle.dumps((exc_bytes, text, summary))


def unpack_error(payload: bytes) -> ErrorRecord:
    """The error record of an ERROR, BAD_TASK or BAD_RESULT payload."""
    exc_bytes, text, summary = pickle.loads(payload)
    return ErrorRecord(exc_bytes, text, summary)


# Reads from a pipe: small enough to stay below malloc's mmap threshold (a fresh 256 KiB
# buffer per read costs ~18 us, a 64 KiB one ~2 us).
READ_CHUNK = 64 * 1024


class FrameReader:
    """Accumulates bytes and yields complete frames.

    Small frames are sliced out of what each read returns; a frame much larger than a
    read is received straight into one buffer of its own size, without further copies.

    With ``kinds`` given, a header of any other kind means the bytes stopped being
    frames of this protocol (something else wrote to the pipe): reading stops there,
    the frames before it are still returned, and :attr:`corrupt` says what was found.
    :attr:`frames_read` and :attr:`bytes_read` count what arrived, for a liveness check.
    """

    __slots__ = (
        "_big",
        "_big_filled",
        "_big_header",
        "_big_view",
        "_buf",
        "_kinds",
        "bytes_read",
        "corrupt",
        "frames_read",
    )

    def __init__(self, kinds: frozenset[int] | None = None) -> None:
        self._buf = bytearray()
        self._big: bytearray | None = None
        self._big_view: memoryview | None = None
        self._big_filled = 0
        self._big_header: tuple[int, int, float] = (0, 0, 0.0)
        self._kinds = kinds
        self.corrupt: str | None = None
        self.frames_read = 0
        self.bytes_read = 0

    def read_from(self, fd: int) -> list[tuple[int, int, float, Any]] | None:
        """Read what a non-blocking ``fd`` has; return the frames completed (payloads
        are bytes-like), or None at end of file. Raises BlockingIOError when there is
        nothing to read. Once :attr:`corrupt` is set, returns no more frames."""
        big_view = self._big_view
        if big_view is not None:
            count = os.readv(fd, [big_view[self._big_filled :]])
            if not count:
                return None
            self.bytes_read += count
            self._big_filled += count
            if self._big_filled < len(big_view):
                return []
            big_view.release()
            payload, self._big, self._big_view = self._big, None, None
            kind, task_id, number = self._big_header
            self.frames_read += 1
            return [(kind, task_id, number, payload)]
        data = os.read(fd, READ_CHUNK)
        if not data:
            return None
        self.bytes_read += len(data)
        if self.corrupt is not None:
            return []
        frames: list[tuple[int, int, float, Any]] = list(self.feed(data))
        buf = self._buf
        if len(buf) >= HEADER_SIZE and self.corrupt is None:
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
        kinds = self._kinds
        frames: list[tuple[int, int, float, bytes]] = []
        if buf:
            buf += data
            size = len(buf)
            pos = 0
            with memoryview(buf) as view:
                while size - pos >= HEADER_SIZE:
                    length, kind, task_id, number = HEADER.unpack_from(buf, pos)
                    if kinds is not None and kind not in kinds:
                        self._found_corrupt(kind, len(frames))
                        break
                    end = pos + HEADER_SIZE + length
                    if end > size:
                        break
                    frames.append((kind, task_id, number, bytes(view[pos + HEADER_SIZE : end])))
                    pos = end
            del buf[:pos]
            self.frames_read += len(frames)
            return frames
        # Nothing pending (the common case): slice frames straight out of ``data``.
        size = len(data)
        pos = 0
        while size - pos >= HEADER_SIZE:
            length, kind, task_id, number = HEADER.unpack_from(data, pos)
            if kinds is not None and kind not in kinds:
                self._found_corrupt(kind, len(frames))
                break
            end = pos + HEADER_SIZE + length
            if end > size:
                break
            frames.append((kind, task_id, number, data[pos + HEADER_SIZE : end]))
            pos = end
        if pos < size:
            buf += data[pos:]
        self.frames_read += len(frames)
        return frames

    def _found_corrupt(self, kind: int, frames_before: int) -> None:
        read = self.frames_read + frames_before
        self.corrupt = f"a frame header of unknown kind {kind} ({read} frames read before it)"

    @property
    def pending_bytes(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buf)
