"""Log records from workers, on the parent's side: each goes to the
``procoord.worker.<ident>`` logger with its level, message, exception text and origin.

When the application has not configured logging, a record goes where it would have gone
in a plain script: to Python's last-resort handler (WARNING and above, on stderr);
procoord's own NullHandler, which keeps the library's records quiet, does not silence
the processor's.

The record keeps what the worker's record had (level, message with its arguments merged,
the traceback text, file, line, function, time, thread); ``record.worker_logger`` is the
name of the logger it was made on in the worker and ``record.worker_pid`` the pid.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable

from . import _wire

__all__ = ("WORKER_LOGGER", "deliver", "worker_level")

WORKER_LOGGER = "procoord.worker"


def worker_logger(ident: Hashable) -> logging.Logger:
    """The logger a worker's records go to."""
    return logging.getLogger(f"{WORKER_LOGGER}.{ident}")


def worker_level() -> int:
    """The level a new worker forwards from: what the parent would log at all."""
    return logging.getLogger(WORKER_LOGGER).getEffectiveLevel()


def deliver(ident: Hashable, payload: bytes) -> None:
    """Hand one LOG frame's record to the worker's logger."""
    fields = _wire.read_log(payload)
    logger = worker_logger(ident)
    if not logger.isEnabledFor(fields["levelno"]):
        return
    fields["worker_logger"] = fields.pop("name")
    fields["worker_pid"] = fields.get("process")
    fields["name"] = logger.name
    record = logging.makeLogRecord(fields)
    logger.handle(record)
    last_resort = logging.lastResort
    if last_resort is not None and record.levelno >= last_resort.level and not _configured(logger):
        last_resort.handle(record)


def _configured(logger: logging.Logger) -> bool:
    """Whether a handler other than procoord's NullHandler sees the logger's records."""
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if not (current.name == "procoord" and isinstance(handler, logging.NullHandler)):
                return True
        if not current.propagate:
            return False
        current = current.parent
    return False
