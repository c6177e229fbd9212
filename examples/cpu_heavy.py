"""CPU-bound pure-Python work on one worker per core, against the same work serially."""

from __future__ import annotations

import asyncio
import os
import time

from procoord import Coordinator


def collatz_steps(limit: int) -> int:
    """Total Collatz steps of every number below ``limit``: pure-Python arithmetic."""
    total = 0
    for n in range(1, limit):
        while n != 1:
            n = n // 2 if n % 2 == 0 else 3 * n + 1
            total += 1
    return total


async def main(tasks: int = 16, limit: int = 25_000) -> None:
    cores = os.cpu_count() or 1
    started = time.perf_counter()
    serial = [collatz_steps(limit + i) for i in range(tasks)]
    serial_s = time.perf_counter() - started

    async with Coordinator() as coord:
        for i in range(cores):
            await coord.add_worker(i, collatz_steps)
        started = time.perf_counter()
        handles = [await coord.run(limit + i) for i in range(tasks)]
        parallel = [result for result, _ in [await h for h in handles]]
        parallel_s = time.perf_counter() - started

    assert parallel == serial
    print(f"{tasks} tasks of pure-Python arithmetic")
    print(f"  serial, in this process:  {serial_s:6.2f} s")
    print(
        f"  procoord, {cores} workers:     {parallel_s:6.2f} s  (speedup {serial_s / parallel_s:.2f}x on {cores} cores)"
    )


if __name__ == "__main__":
    asyncio.run(main())
