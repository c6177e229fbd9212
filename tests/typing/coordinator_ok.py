"""Checked by mypy and pyright (tests/test_typing.py): the typed spellings the README shows."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Hashable, Iterator
from typing import Any, assert_type

import procoord
from procoord import BlockingCoordinator, Coordinator, JoinHandle, TaskPrefs, TaskProcessor


class Doubler(TaskProcessor[int, int]):
    def __init__(self, name: str) -> None:
        self.name = name
        self.seen = 0

    async def do_work(self, task: int) -> int:
        self.seen += 1
        return task * 2


class SyncLength(TaskProcessor[str, int]):
    def do_work(self, task: str) -> int:
        return len(task)


class Untyped(TaskProcessor):  # no type arguments: tasks and results are Any
    def do_work(self, task: Any) -> Any:
        return task


def square(n: int) -> int:
    return n * n


async def async_square(n: int) -> int:
    return n * n


async def typed_coordinator() -> None:
    async with Coordinator[int, int](queue_threshold=3) as coord:
        assert_type(coord, Coordinator[int, int])
        await coord.add_worker("w1", Doubler("w1"))
        await coord.add_worker("w2", square)
        await coord.add_worker("w3", async_square)
        await coord.add_worker("w4", lambda x: x * 2)
        await coord.add_worker("r1", "resizer")  # a registered factory: trusted
        h = await coord.run(2, TaskPrefs.Any)
        assert_type(h, JoinHandle[tuple[int, Hashable]])
        result, worker = await h
        assert_type(result, int)
        assert_type(worker, Hashable)
        result, worker = await h.join()
        assert_type(result, int)
        doubled = await h.map(lambda pair: pair[0] * 2)
        assert_type(doubled, int)
        result, worker = await coord.call(5, TaskPrefs.Required("w2"))
        assert_type(result, int)
        async for value, _ in coord.map(range(10)):
            assert_type(value, int)
        async for item in coord.map(range(10), ordered=False, return_exceptions=True):
            assert_type(item, tuple[int, Hashable] | BaseException)


async def untyped_coordinator() -> None:
    async with Coordinator() as coord:
        await coord.add_worker("w1", Untyped())
        await coord.add_worker("w2", Doubler("w2"))
        await coord.add_worker("w3", lambda x: x * 2)
        result, _ = await coord.call(2)
        assert_type(result, Any)
        h = await coord.run(3)
        assert_type(h, JoinHandle[tuple[Any, Hashable]])


async def string_tasks() -> None:
    async with Coordinator[str, int]() as coord:
        await coord.add_worker("len", SyncLength())
        await coord.add_worker("builtin", len)
        n, _ = await coord.call("abc")
        assert_type(n, int)


def blocking() -> None:
    with BlockingCoordinator[int, int](queue_threshold=3) as coord:
        coord.add_worker("w1", Doubler("w1"))
        fut = coord.run(2)
        assert_type(fut, concurrent.futures.Future[tuple[int, Hashable]])
        result, _ = fut.result()
        assert_type(result, int)
        result, _ = coord.call(2, TaskPrefs.Required("w1"))
        assert_type(result, int)
        for value, _ in coord.map(range(100), window=16):
            assert_type(value, int)
    with BlockingCoordinator() as untyped:
        anything, _ = untyped.call(1)
        assert_type(anything, Any)


def executor() -> None:
    with procoord.Executor(max_workers=2) as ex:
        fut = ex.submit(square, 10)
        assert_type(fut, concurrent.futures.Future[int])
        results = ex.map(square, range(10), chunksize=5)
        assert_type(results, Iterator[int])
