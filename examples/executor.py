"""procoord.Executor where Python expects a concurrent.futures.Executor: submit, map,
as_completed, asyncio's run_in_executor, and a crash that costs one call only."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import as_completed

import procoord
from procoord import WorkerLostError


def square(n: int) -> int:
    return n * n


def crash() -> None:
    os._exit(1)  # the worker process dies mid-call


async def from_asyncio(ex: procoord.Executor) -> int:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(ex, pow, 3, 4)


def main() -> None:
    with procoord.Executor(max_workers=2) as ex:
        print("2 ** 10 =", ex.submit(pow, 2, 10).result())
        print("sum of squares below 10000:", sum(ex.map(square, range(10_000), chunksize=500)))

        futures = [ex.submit(square, n) for n in range(5)]
        lost = ex.submit(crash)
        print("squares as they finish:", sorted(f.result() for f in as_completed(futures)))
        try:
            lost.result()
        except WorkerLostError as exc:
            print("the crash cost one call:", exc)
        print("and the executor goes on: 3 ** 4 =", asyncio.run(from_asyncio(ex)))


if __name__ == "__main__":
    main()
