"""Worker-side functions for the shared-memory tests: they take and give big buffers."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Iterator
from typing import Any

from ._funcs import signal_beacon, wait_beacon


def echo(value: Any) -> Any:
    """Return the task: its buffers cross both ways."""
    return value


def reverse(data: bytes) -> bytes:
    """The task's bytes reversed: what comes back differs from what went."""
    return data[::-1]


def describe(value: Any) -> tuple[str, str]:
    """The type and digest of what arrived, as the worker sees it."""
    raw = value.raw() if isinstance(value, pickle.PickleBuffer) else value
    return type(value).__name__, hashlib.sha256(memoryview(raw).cast("B")).hexdigest()


def hold_then_size(args: tuple[str, str, bytes]) -> int:
    """Signal ``started``, block until ``release``, then give the size of the bytes (at
    once, with no beacons)."""
    started, release, data = args
    if started:
        signal_beacon(started)
        wait_beacon(release)
    return len(data)


def chunks(spec: tuple[int, int]) -> Iterator[bytes]:
    """``count`` parts of ``size`` bytes each, every part different."""
    count, size = spec
    for i in range(count):
        yield bytes([i % 256]) * size


class Keeper:
    """Keeps every array it is given; answers with the digest of each one kept so far
    (what it holds must not change as more arrive)."""

    def __init__(self) -> None:
        self.kept: list[Any] = []

    def do_work(self, array: Any) -> list[str]:
        self.kept.append(array)
        return [hashlib.sha256(memoryview(a).cast("B")).hexdigest() for a in self.kept]
