"""The task functions every pool runs, at module level so that each pool's workers
import them by reference: the same code on every side of a comparison."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

__all__ = ("RawActor", "Spinner", "cpu_work", "echo", "noop", "ppe_init", "ppe_spin", "spin")


def noop(x: Any) -> Any:
    """Return the task unchanged."""
    return x


def echo(data: Any) -> Any:
    """Return the argument: its bytes cross the channel both ways."""
    return data


def cpu_work(n: int) -> int:
    """Pure-Python arithmetic, ``n`` loop turns."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def spin(seconds: float) -> float:
    """Burn CPU for ``seconds`` (a busy loop: the worker's core is fully used)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return seconds


class Spinner:
    """A procoord processor that spins ``factor`` times the task's seconds: a worker
    ``factor`` times slower than one with factor 1."""

    def __init__(self, factor: float = 1.0) -> None:
        self.factor = factor

    def do_work(self, seconds: float) -> float:
        """Spin for ``seconds * factor``."""
        spin(seconds * self.factor)
        return seconds


# Per-process settings of a ProcessPoolExecutor worker, set by ``ppe_init``.
_ppe_factor = 1.0
_ppe_join_at: Any = None


def ppe_init(counter: Any, factors: Sequence[float], join_at: Any) -> None:
    """ProcessPoolExecutor initializer: the n-th worker to start takes ``factors[n]``
    as its slowness; worker 1 keeps the shared ``join_at`` value (CLOCK_MONOTONIC, the
    same in every process) and stays away until that time once it is set."""
    global _ppe_factor, _ppe_join_at
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    _ppe_factor = factors[index % len(factors)]
    _ppe_join_at = join_at if index == 1 else None


def ppe_spin(seconds: float) -> int:
    """The PPE side of ``Spinner``: spin ``seconds`` times this worker's factor; a
    worker that joins late first waits for its joining time. Returns the pid."""
    global _ppe_join_at
    if _ppe_join_at is not None:
        join_at = _ppe_join_at.value
        if join_at:
            _ppe_join_at = None
            delay = join_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    spin(seconds * _ppe_factor)
    return os.getpid()


class RawActor:
    """The body of a plain Ray actor (``ray.remote(RawActor)``): the yardstick of a
    call to a Ray worker."""

    def do(self, x: Any) -> Any:
        """Return the task unchanged."""
        return x
