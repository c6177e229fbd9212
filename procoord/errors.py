"""The exception tree of procoord.

Every error a user can meet derives from :class:`ProcoordError`. Errors that resemble a
builtin also derive from it (a :class:`TaskTimeoutError` is a :class:`TimeoutError`), so
existing ``except`` clauses keep working. All of them pickle, so they cross process
boundaries intact.
"""

from __future__ import annotations

import errno
import pickle
import resource
from collections.abc import Hashable
from typing import Any

__all__ = (
    "CoordinatorClosedError",
    "NoSuchWorkerError",
    "NoWorkersError",
    "ProcoordError",
    "SerializationError",
    "TaskProcessError",
    "TaskTimeoutError",
    "WorkerLostError",
    "WorkerStartError",
)


class ProcoordError(Exception):
    """Base class of every error raised by procoord."""


class TaskProcessError(ProcoordError):
    """The processor's ``do_work`` raised while running a task.

    Attributes:
        worker: ident of the worker that ran the task.
        remote_traceback: the traceback as formatted in the worker process.

    ``__cause__`` is the original exception when it could be carried back.
    """

    def __init__(self, worker: Hashable, remote_traceback: str, summary: str) -> None:
        self.worker = worker
        self.remote_traceback = remote_traceback
        self.summary = summary
        super().__init__(f"task failed in worker {worker!r}: {summary}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.worker, self.remote_traceback, self.summary))


class RemoteTraceback(Exception):
    """The traceback of an exception as it was formatted in the worker process.

    It is chained as the ``__cause__`` of the exception rebuilt in the parent (or of the
    :class:`TaskProcessError` when the original cannot be rebuilt), so an uncaught error
    prints the worker's frames above the parent's, as ``concurrent.futures`` does.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(text)

    def __str__(self) -> str:
        return f'\n"""\n{self.text.rstrip()}\n"""'

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.text,))


def task_error(worker: Hashable, remote_traceback: str, summary: str, exc_bytes: bytes | None) -> TaskProcessError:
    """The :class:`TaskProcessError` for a task that raised in ``worker``.

    ``exc_bytes`` is the pickled original exception (None when it could not be pickled).
    When it unpickles it becomes the error's ``__cause__``, with the remote traceback as
    its own ``__cause__``; otherwise the remote traceback is the error's cause.
    """
    error = TaskProcessError(worker, remote_traceback, summary)
    remote = RemoteTraceback(remote_traceback)
    original: BaseException | None = None
    if exc_bytes is not None:
        try:
            original = pickle.loads(exc_bytes)
        except BaseException:  # the exception cannot be rebuilt here: keep the text
            original = None
    if isinstance(original, BaseException):
        original.__cause__ = remote
        error.__cause__ = original
    else:
        error.__cause__ = remote
    return error


class WorkerLostError(ProcoordError):
    """The worker process died while the task was running on it, or (``ran`` False)
    the task was bound to a worker that has failed for good and never ran.

    Attributes:
        worker: ident of the worker.
        pid: its process id, when known.
        exitcode: the process exit code; negative for a signal, None when unknown.
        killed_by: what in procoord ended the process on purpose, or "" when it died.
        ran: True when the task was running when the worker was lost (it may have had
            effects); False when it never started: it was queued to, or ``run`` on, a
            ``Required`` worker that failed and is not restarted (running it again
            elsewhere is safe).
        attempts: how many times the task was run (more than 1 with ``retries``):
            every one of them was lost.
    """

    def __init__(
        self,
        worker: Hashable,
        pid: int | None,
        exitcode: int | None,
        detail: str = "",
        killed_by: str = "",
        *,
        ran: bool = True,
        attempts: int = 1,
    ) -> None:
        self.worker = worker
        self.pid = pid
        self.exitcode = exitcode
        self.detail = detail
        self.killed_by = killed_by
        self.ran = ran
        self.attempts = attempts
        if not ran:
            message = f"worker {worker!r} (pid {pid}) is lost; the task never ran"
        elif killed_by:  # ended on purpose: no need to guess why
            message = f"worker {worker!r} (pid {pid}) was killed by {killed_by}"
        else:
            message = f"worker {worker!r} (pid {pid}) died {describe_exit(exitcode)}"
        message += f": {detail}" if detail else ""
        super().__init__(message + _attempts_note(attempts))

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_lost,
            (self.worker, self.pid, self.exitcode, self.detail, self.killed_by, self.ran, self.attempts),
        )


def _rebuild_lost(
    worker: Hashable, pid: int | None, exitcode: int | None, detail: str, killed_by: str, ran: bool, attempts: int = 1
) -> WorkerLostError:
    return WorkerLostError(worker, pid, exitcode, detail, killed_by, ran=ran, attempts=attempts)


def _attempts_note(attempts: int) -> str:
    return f" (on each of {attempts} attempts)" if attempts > 1 else ""


class TaskTimeoutError(ProcoordError, TimeoutError):
    """A per-task timeout expired; the worker running it was restarted.

    Attributes:
        worker: ident of the worker the last attempt ran on.
        timeout: the timeout, in seconds.
        attempts: how many times the task was run (more than 1 with ``retries``):
            every one of them timed out or was lost.
    """

    def __init__(self, worker: Hashable, timeout: float, attempts: int = 1) -> None:
        self.worker = worker
        self.timeout = timeout
        self.attempts = attempts
        super().__init__(
            f"task ran longer than its timeout of {timeout:g} s on worker {worker!r}; "
            "the worker was killed and restarted" + _attempts_note(attempts)
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.worker, self.timeout, self.attempts))


class SerializationError(ProcoordError, TypeError):
    """A task, a result or a processor could not be pickled or unpickled.

    Attributes:
        stage: what was being (un)pickled: "task", "result", "part" (of a stream) or
            "processor".
    """

    def __init__(self, stage: str, detail: str) -> None:
        self.stage = stage
        self.detail = detail
        super().__init__(f"could not serialize the {stage}: {detail}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.stage, self.detail))


class NoSuchWorkerError(ProcoordError, KeyError):
    """``TaskPrefs.Required`` named a worker that does not exist (or was removed)."""

    def __init__(self, worker: Hashable, detail: str = "") -> None:
        self.worker = worker
        self.detail = detail
        super().__init__(worker, detail)

    def __str__(self) -> str:
        return f"no worker {self.worker!r}" + (f": {self.detail}" if self.detail else "")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.worker, self.detail))


class NoWorkersError(ProcoordError):
    """A task was submitted while the coordinator has no worker at all."""

    def __init__(self, message: str = "the coordinator has no workers; add one with add_worker") -> None:
        super().__init__(message)


class WorkerStartError(ProcoordError):
    """``add_worker`` could not start the worker.

    Attributes:
        worker: ident of the worker.
        remote_traceback: the traceback from the worker process, or "" when there is none.
    """

    def __init__(self, worker: Hashable, reason: str, remote_traceback: str = "") -> None:
        self.worker = worker
        self.reason = reason
        self.remote_traceback = remote_traceback
        message = f"worker {worker!r} could not start: {reason}"
        if remote_traceback:
            message += "\n\nRemote traceback:\n" + remote_traceback
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.worker, self.reason, self.remote_traceback))


class CoordinatorClosedError(ProcoordError):
    """The coordinator was closed: by ``run`` after ``close``, or for a queued task
    failed by ``close(cancel_pending=True)``."""

    def __init__(self, message: str = "the coordinator is closed") -> None:
        super().__init__(message)


_SIGNAL_CAUSES = {
    9: "SIGKILL: killed from outside, often by the out-of-memory killer",
    11: "SIGSEGV: a segmentation fault, usually in a C extension",
    6: "SIGABRT: aborted, usually by a failed assertion in C code",
    15: "SIGTERM: terminated from outside",
    7: "SIGBUS: a bus error, often a memory-mapped file that shrank",
}


def describe_exit(exitcode: int | None) -> str:
    """Say in words how a process ended, with the likely cause."""
    if exitcode is None:
        return "(exit status unknown)"
    if exitcode < 0:
        signum = -exitcode
        cause = _SIGNAL_CAUSES.get(signum, f"signal {signum}")
        return f"by signal {signum} ({cause})"
    return f"with exit code {exitcode}"


def describe_limit(exc: OSError) -> str:
    """Say which limit an OSError from creating a pipe or a process hit, and what to do."""
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        scope = "the system" if exc.errno == errno.ENFILE else f"this process (RLIMIT_NOFILE={soft}, `ulimit -n`)"
        return f"out of file descriptors for {scope}: {exc.strerror}; close some or raise the limit"
    if exc.errno in (errno.EAGAIN, errno.ENOMEM):
        soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
        limit = "unlimited" if soft == resource.RLIM_INFINITY else str(soft)
        return (
            f"cannot fork another process: {exc.strerror} (RLIMIT_NPROC={limit}, `ulimit -u`; or the "
            "system's pid, cgroup or memory limits); end some processes or raise the limit"
        )
    return f"{exc.strerror or exc}"
