"""Log records made in a worker (a processor's ``logging`` calls) travel to the parent.

A handler on the worker's root logger packs each record it is given into a LOG frame
(:func:`procoord._wire.log_frame`) sent over the worker's channel; the parent hands it to
its ``procoord.worker.<ident>`` logger (:mod:`procoord._logs`). The worker's root level
is the parent's effective level for ``procoord.worker`` when the worker was added, so
records the parent would drop are not sent at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .. import _wire

__all__ = ("forward_logs",)


class _ForwardHandler(logging.Handler):
    """Sends every record it handles to the parent, formatted there."""

    def __init__(self, send: Callable[..., None]) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._send(*_wire.log_frame(record))
        except Exception:  # a record must never fail the task that logged it
            self.handleError(record)


def forward_logs(send: Callable[..., None], level: int) -> None:
    """Send the records of this process's loggers at ``level`` and above to the parent."""
    root = logging.getLogger()
    root.setLevel(level)
    root.addHandler(_ForwardHandler(send))
