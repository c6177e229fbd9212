"""Streaming results: a processor whose do_work is a generator sends its parts back as
it yields them, and the caller iterates over them while the worker is still at work."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

from procoord import Coordinator, TaskPrefs, TaskProcessor


class Tokenizer(TaskProcessor):
    """Splits texts into words; counts every word it has produced (state in the worker)."""

    def __init__(self) -> None:
        self.produced = 0

    async def do_work(self, task: str) -> AsyncIterator[str]:
        for word in task.split():
            self.produced += 1
            yield word


def rows(count: int) -> Iterator[tuple[int, int]]:
    """A plain generator works too: here, far more rows than the caller will read."""
    for i in range(count):
        yield i, i * i


async def main() -> None:
    async with Coordinator() as coord:
        await coord.add_worker("tok", Tokenizer())
        await coord.add_worker("rows", rows)
        async for word in coord.stream("the quick brown fox", TaskPrefs.Required("tok")):
            print("part:", word)
        words, worker = await coord.call("jumps over the lazy dog", TaskPrefs.Required("tok"))  # all parts, as a list
        print(f"{worker} gave {words}")
        async for i, square in coord.stream(10_000_000, TaskPrefs.Required("rows")):
            if square > 50:
                break  # cancels the task: the generator is closed in its worker
            print("row:", i, square)
        streamed = (await coord.stats())["tok"].parts_streamed
        print(f"parts streamed by 'tok': {streamed}")


if __name__ == "__main__":
    asyncio.run(main())
