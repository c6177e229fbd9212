"""What becomes of a worker's tasks when its process is lost: a pure decision.

The task that was running fails with WorkerLostError, or runs again when it has
retries left; a task that timed out runs again when it may; the tasks written to the
worker behind the running one never started and are routed again.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from ._task import Task
from .errors import TaskTimeoutError, WorkerLostError, describe_exit
from .prefs import Required

__all__ = ("Loss", "describe_death", "settle_loss")


@dataclass
class Loss:
    """The outcome for each task a lost worker held."""

    failed: list[tuple[Task, WorkerLostError | TaskTimeoutError]] = field(default_factory=list)
    retried: list[Task] = field(default_factory=list)
    """To run again (their attempt is counted by the caller)."""
    rerouted: list[Task] = field(default_factory=list)
    """Written to the worker but never started: to be routed again."""
    running: Task | None = None
    """The task that was running when the worker was lost (not one that timed out)."""


def settle_loss(
    ident: Hashable,
    pid: int | None,
    exitcode: int | None,
    inflight: list[Task],
    timed_out: Task | None,
    *,
    stopping: bool,
    killed_by: str,
    restarts: bool = True,
) -> Loss:
    """Decide for the tasks in flight on a lost worker (running first) and the one that
    timed out on it, if any. ``stopping``: it was told to stop; ``killed_by``: what in
    procoord ended it on purpose ("" when it died); ``restarts``: it is restarted (a
    Required task that may run again only there then fails instead)."""
    loss = Loss()
    if timed_out is not None and not timed_out.done():
        if restarts or type(timed_out.prefs) is not Required:
            loss.retried.append(timed_out)  # timed out, to run again (its worker was killed for it)
        else:
            timeout = TaskTimeoutError(ident, timed_out.timeout or 0.0, timed_out.attempts)
            loss.failed.append((timed_out, timeout))
    if not inflight or (timed_out is not None and not stopping):
        loss.rerouted = inflight
        return loss
    running, loss.rerouted = inflight[0], inflight[1:]
    loss.running = running
    # Killed on purpose while it stopped (close's deadline): that is no crash to retry.
    may_retry = running.may_retry() and not (stopping and killed_by)
    if may_retry and (restarts or type(running.prefs) is not Required):
        loss.retried.append(running)
        return loss
    detail = "while it stopped" if stopping else "the task running on it was lost"
    if may_retry:
        detail += "; it is not run again: the worker is not restarted"
    error = WorkerLostError(ident, pid, exitcode, detail, killed_by, attempts=running.attempts)
    loss.failed.append((running, error))
    return loss


def describe_death(
    ident: Hashable, pid: int | None, exitcode: int | None, loss: Loss, timed_out: Task | None
) -> str | None:
    """What to warn of when a worker died (was not told to stop), given the ``loss``
    ``settle_loss`` decided; None when it was killed for a timeout (warned of then)."""
    running = loss.running
    if running is not None:
        again = running in loss.retried
        return (
            f"worker {ident!r} (pid {pid}) died {describe_exit(exitcode)} while running task {running.id} "
            f"(attempt {running.attempts - again}){'; it runs again' if again else ''}"
        )
    if timed_out is None:
        return f"worker {ident!r} (pid {pid}) died {describe_exit(exitcode)} while idle"
    return None
