"""Checked by mypy and pyright (tests/test_typing.py): each line marked `# E` must be an error."""

from __future__ import annotations

import procoord
from procoord import BlockingCoordinator, Coordinator, TaskProcessor


class Doubler(TaskProcessor[int, int]):
    async def do_work(self, task: int) -> int:
        return task * 2


class Upper(TaskProcessor[str, str]):
    def do_work(self, task: str) -> str:
        return task.upper()


def square(n: int) -> int:
    return n * n


async def misuse() -> None:
    async with Coordinator[int, int]() as coord:
        await coord.add_worker("w", Upper())  # E
        await coord.add_worker("w", str.upper)  # E
        await coord.run("not an int")  # E
        result, _ = await coord.call(2)
        text: str = result  # E
        print(text)
        async for value, _ in coord.map(["a", "b"]):  # E
            print(value)


def blocking_misuse() -> None:
    with BlockingCoordinator[int, int]() as coord:
        coord.add_worker("w", Upper())  # E
        coord.run("x")  # E
        result, _ = coord.call(1)
        text: str = result  # E
        print(text)


def executor_misuse() -> None:
    with procoord.Executor() as ex:
        ex.submit(square, "x")  # E
        words: list[str] = list(ex.map(square, [1, 2]))  # E
        print(words)
