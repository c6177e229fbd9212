"""Recycling: workers replaced by fresh processes after a number of tasks, or when
their memory grows past a limit (a leaking library, a growing cache)."""

from __future__ import annotations

import asyncio
import os

from procoord import Coordinator, TaskPrefs, TaskProcessor


class Leaky(TaskProcessor):
    """Keeps 1 MiB of every task it sees, as a leaking library would."""

    def __init__(self) -> None:
        self.kept: list[bytes] = []

    def do_work(self, task: int) -> int:
        self.kept.append(os.urandom(1 << 20))
        return os.getpid()


async def main() -> None:
    # Every worker is recycled after 200 tasks, unless add_worker says otherwise.
    async with Coordinator(max_tasks_per_worker=200) as coord:
        await coord.add_worker("counted", lambda x: os.getpid())
        await coord.add_worker("leaky", Leaky(), max_tasks=None, max_rss=200 << 20)  # 200 MiB
        pids: dict[str, set[int]] = {"counted": set(), "leaky": set()}
        # The old process goes on while its replacement starts: run until both recycled.
        while not all(s.recycles for s in (await coord.stats()).values()):
            for ident in pids:
                async for pid, _ in coord.map(range(250), TaskPrefs.Required(ident)):
                    pids[ident].add(pid)
        for ident, stats in (await coord.stats()).items():
            print(f"{ident}: {stats.completed} tasks, {stats.recycles} recycles, {stats.failed} failed")
        print(f"processes that ran tasks: {len(pids['counted'])} for 'counted', {len(pids['leaky'])} for 'leaky'")


if __name__ == "__main__":
    asyncio.run(main())
