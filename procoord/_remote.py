"""What a worker's failure records mean in the parent: the one place where the records
of ``procoord._wire`` become procoord errors."""

from __future__ import annotations

import re
from collections.abc import Hashable
from itertools import repeat
from typing import Any

from . import _wire, errors
from ._wire import Kind
from .errors import SerializationError, TaskProcessError, WorkerStartError

__all__ = (
    "BatchValue",
    "batch_outcomes",
    "outcome_pairs",
    "bad_frame_error",
    "start_error",
    "task_error",
    "unloadable_result",
)


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
    error = SerializationError(stage, f"cannot {where}: {_pickling_detail(record.summary)}")
    error.remote_traceback = record.traceback  # type: ignore[attr-defined]
    return error


def unloadable_result(exc: BaseException) -> SerializationError:
    """A RESULT whose payload could not be unpickled in the parent."""
    error = SerializationError("result", f"cannot unpickle it in the parent: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


BatchValue = tuple[list[Any], dict[int, BaseException]]
"""A batch's outcomes: one result per item (None where it failed), and the errors by index."""


_WORKER_SIDE = re.compile(r"^SerializationError: could not serialize the \w+: ")


def _pickling_detail(summary: str) -> str:
    """What went wrong, without the worker's own SerializationError wording around it
    (the error made here says "could not serialize the ..." already)."""
    return _WORKER_SIDE.sub("", summary, count=1)


def batch_outcomes(worker: Hashable, raw: tuple[list[Any], dict[int, tuple[bool | None, bytes]] | None]) -> BatchValue:
    """A batch's results and its errors by index, from the record ``(results,
    failures)``: a result per item, and None when every item succeeded, else a dict of
    index -> (False, error record) where do_work raised or (None, error record) where
    its result could not be pickled in the worker."""
    results, failures = raw
    if not failures:
        return results, {}
    errors: dict[int, BaseException] = {}
    for i, (ok, record) in failures.items():
        if ok is None:
            summary = _pickling_detail(_wire.unpack_error(record).summary)
            errors[i] = SerializationError("result", f"cannot pickle it in the worker: {summary}")
        else:
            errors[i] = task_error(worker, record)
    return results, errors


def outcome_pairs(joined: tuple[BatchValue, Hashable]) -> tuple[list[tuple[bool, Any]], Hashable]:
    """What ``run_batch``'s handle gives: ``(True, result)`` or ``(False, exception)`` per
    item, and the worker."""
    (results, errors), worker = joined
    outcomes: list[tuple[bool, Any]] = list(zip(repeat(True), results))  # pairs made in C
    for i, error in errors.items():
        outcomes[i] = (False, error)
    return outcomes, worker


def start_error(worker: Hashable, payload: bytes) -> WorkerStartError:
    """A START_FAILED record: the processor could not be built in the worker."""
    reason, text = _wire.read_start_failed(payload)
    return WorkerStartError(worker, reason, text)
