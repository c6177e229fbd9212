"""Priorities: an urgent task overtakes a backlog without interrupting the running one."""

from __future__ import annotations

import asyncio
import time

from procoord import Coordinator, TaskProcessor


class Journal(TaskProcessor):
    """Runs tasks one at a time and remembers the order it ran them in."""

    def __init__(self) -> None:
        self.order: list[str] = []

    def do_work(self, task: str) -> list[str]:
        self.order.append(task)
        if task == "long report":
            time.sleep(0.2)  # a task that takes a while: the backlog piles up behind it
        return list(self.order)


async def main() -> None:
    async with Coordinator() as coord:
        await coord.add_worker("clerk", Journal())
        report = await coord.run("long report")
        backlog = [await coord.run(f"routine {i}") for i in range(100)]
        urgent = await coord.run("urgent", priority=10)  # higher first; 0 is the default
        order, _ = await urgent
        await asyncio.gather(report, *backlog)
        position = order.index("urgent")
        print(f"the urgent task ran as number {position + 1}, ahead of {100 - position + 1} routine ones")
        print(f"the long report it did not interrupt ran first: {order[0] == 'long report'}")


if __name__ == "__main__":
    asyncio.run(main())
