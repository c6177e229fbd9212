"""The smallest procoord program: a stateful processor and a lambda as two workers."""

from __future__ import annotations

import asyncio

from procoord import Coordinator, TaskPrefs, TaskProcessor


class Doubler(TaskProcessor):
    """Doubles numbers, and counts how many it has seen (state lives in the worker)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen = 0

    async def do_work(self, task: int) -> int:
        self.seen += 1
        return task * 2


async def main() -> None:
    async with Coordinator(queue_threshold=3) as coord:
        await coord.add_worker("doubler", Doubler("doubler"))
        await coord.add_worker("lambda", lambda x: x * 2)
        handle = await coord.run(2, TaskPrefs.Any)
        result, worker = await handle.join()
        print(f"2 * 2 = {result} (computed by worker {worker!r})")
        result, worker = await coord.call(21, TaskPrefs.Required("lambda"))
        print(f"21 * 2 = {result} (computed by worker {worker!r})")


if __name__ == "__main__":
    asyncio.run(main())
