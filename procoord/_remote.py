"""What a worker's failure records mean in the parent: the one place where the records
of ``procoord._wire`` become procoord errors."""

from __future__ import annotations

import operator
from collections.abc import Hashable
from typing import Any

from . import _wire, errors
from ._wire import Kind
from .errors import SerializationError, TaskProcessError, WorkerStartError

__all__ = ("batch_outcomes", "bad_frame_error", "start_error", "task_error", "unloadable_result")


def task_error(worker: Hashable, payload: bytes) -> TaskProcessError:
    """An ERROR record: do_work raised. The original exception becomes ``__cause__``
    when it can be rebuilt here, with the worker's traceback chained to it."""
    record = _wire.unpack_error(payload)
    return errors.task_error(worker, record.traceback, record.summary, record.exception)


def bad_frame_error(kind: int, payload: bytes, streaming: bool = False) -> SerializationError:
    """A BAD_TASK or BAD_RESULT record: the worker could not unpickle the task, or
    pickle the result (a part, for a streaming task)."""
    record = _wire.unpack_error(payload)
    stage = "task" if kind == Kind.BAD_TASK else ("part" if streaming else "result")
    where = "unpickle it in the worker" if stage == "task" else "pickle it in the worker"
    error = SerializationError(stage, f"cannot {where}: {record.summary}")
    error.remote_traceback = record.traceback  # type: ignore[attr-defined]
    return error


def unloadable_result(exc: BaseException) -> SerializationError:
    """A RESULT whose payload could not be unpickled in the parent."""
    error = SerializationError("result", f"cannot unpickle it in the parent: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


_first = operator.itemgetter(0)


def batch_outcomes(worker: Hashable, raw: list[tuple[bool | None, Any]]) -> tuple[list[tuple[bool, Any]], int]:
    """A batch's outcomes as (True, result) or (False, exception), and how many failed.

    In the record an item is (True, result), (False, error record) when do_work raised,
    or (None, error record) when its result could not be pickled in the worker."""
    if all(map(_first, raw)):  # the common case, every ok True: nothing to convert
        return raw, 0  # type: ignore[return-value]
    outcomes: list[tuple[bool, Any]] = []
    failed = 0
    for ok, value in raw:
        if ok:
            outcomes.append((True, value))
            continue
        failed += 1
        if ok is None:
            summary = _wire.unpack_error(value).summary
            outcomes.append((False, SerializationError("result", f"cannot pickle it in the worker: {summary}")))
        else:
            outcomes.append((False, task_error(worker, value)))
    return outcomes, failed


def start_error(worker: Hashable, payload: bytes) -> WorkerStartError:
    """A START_FAILED record: the processor could not be built in the worker."""
    reason, text = _wire.read_start_failed(payload)
    return WorkerStartError(worker, reason, text)
