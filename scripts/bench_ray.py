"""Per-call overhead of a Ray worker against a local one: ``python scripts/bench_ray.py [CALLS]``.

Sequential round trips of a no-op task (one task in flight at a time), through the
coordinator, to one worker on each backend; prints p50, p99 and the mean in
microseconds. Starts a local Ray instance (``RAY_ADDRESS`` joins an existing cluster
instead).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from typing import Any

import ray

from procoord import Coordinator, TaskPrefs
from procoord.backends import Backend, LocalBackend, RayBackend

WARMUP = 200


def noop(task: Any) -> Any:
    """Return the task as it is."""
    return task


async def round_trips(backend: Backend, calls: int) -> list[float]:
    """Seconds of each sequential call to one worker on ``backend``."""
    times: list[float] = []
    async with Coordinator(backend=backend) as coord:
        await coord.add_worker("w", noop)
        only = TaskPrefs.Required("w")
        for _ in range(WARMUP):
            await coord.call(None, only)
        for _ in range(calls):
            started = time.perf_counter()
            await coord.call(None, only)
            times.append(time.perf_counter() - started)
    return times


def summary(name: str, times: list[float]) -> str:
    cuts = statistics.quantiles(times, n=100)
    return (
        f"{name:<6} p50 {cuts[49] * 1e6:8.0f} us   p99 {cuts[98] * 1e6:8.0f} us   "
        f"mean {statistics.fmean(times) * 1e6:8.0f} us   ({len(times)} calls)"
    )


async def main(calls: int) -> None:
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        ray.init(num_cpus=2, include_dashboard=False)
    local = await round_trips(LocalBackend(), calls)
    remote = await round_trips(RayBackend(), calls)
    print(f"sequential no-op round trip through the coordinator, {os.cpu_count()} CPUs")
    print(summary("local", local))
    print(summary("ray", remote))
    ratio = statistics.median(remote) / statistics.median(local)
    print(f"ray / local at p50: {ratio:.1f}x")
    ray.shutdown()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
