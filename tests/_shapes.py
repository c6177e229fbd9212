"""Processors for the tests of retries and recycling; they run in worker processes."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from typing import Any

from procoord import TaskProcessor

from ._funcs import hold, signal_beacon, wait_beacon


def lost_until(args: tuple[str, int, str]) -> Any:
    """Fail the first ``times`` runs (marked in the file ``path``) as ``how`` says
    ("exit": the process dies; "hang": it never returns, for a timeout), then return
    the number of the run that succeeded."""
    path, times, how = args
    with open(path, "a+") as f:
        f.write("x")
    with open(path) as f:
        run = len(f.read())
    if run > times:
        return run
    if how == "hang":
        time.sleep(3600)  # wait-ok: the task's workload, ended by its timeout
    os._exit(9)


def raise_counted(path: str) -> Any:
    """Count the run in the file ``path``, then raise."""
    with open(path, "a") as f:
        f.write("x")
    raise ValueError("raised by the task")


class PidCounter(TaskProcessor):
    """Counts its tasks: ``(pid, n)`` for the n-th task of this process."""

    def __init__(self) -> None:
        self.count = 0

    def do_work(self, task: Any) -> tuple[int, int]:
        self.count += 1
        return os.getpid(), self.count


class Hog(TaskProcessor):
    """Holds ``task`` MiB more memory for every task (touched, so it is resident)."""

    def __init__(self) -> None:
        self.held: list[bytearray] = []

    def do_work(self, task: int) -> int:
        if task:
            self.held.append(bytearray(b"\x01" * (task << 20)))
        return os.getpid()


def built_once(marker: str) -> Any:
    """A factory that builds ``lost_until`` the first time (no file at ``marker`` yet)
    and raises on every later start."""
    if os.path.exists(marker):
        raise RuntimeError("cannot start again")
    with open(marker, "w"):
        pass
    return lost_until


def gated_counter(count_path: str, starting: str, release: str) -> PidCounter:
    """A factory of PidCounter whose second build (the first replacement) signals
    ``starting`` and waits until ``release`` is signalled."""
    with open(count_path, "a") as f:
        f.write("x")
    with open(count_path) as f:
        if len(f.read()) == 2:
            signal_beacon(starting)
            wait_beacon(release)
    return PidCounter()


class HistoryStreamer(TaskProcessor):
    """An async generator ``do_work`` that records its tasks: ``("hold", started,
    release)`` holds the worker (see ``_funcs.hold``), ``"history"`` yields the tasks
    seen so far, anything else yields itself."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def do_work(self, task: Any) -> AsyncIterator[Any]:
        self.seen.append(task)
        if isinstance(task, tuple) and task[0] == "hold":
            yield hold(task[1:])
        elif task == "history":
            yield list(self.seen)
        else:
            yield task
