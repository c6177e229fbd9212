"""CPU-heavy work on Ray workers: ``python examples/ray_cluster.py [ADDRESS]``.

With an address (the argument, or ``RAY_ADDRESS``), it joins that Ray cluster, e.g.
``ray://head-node:10001`` or ``auto`` on a node of the cluster; without one it starts a
local Ray instance. It then runs one worker per CPU of the cluster, each a Ray actor
reserving one CPU (so Ray spreads them over the nodes), and compares with the same work
done serially here. Every node needs procoord installed (``pip install 'procoord[ray]'``);
the processor below is defined in this script and travels by value.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import ray

from procoord import Coordinator
from procoord.backends import RayBackend


def collatz_steps(limit: int) -> int:
    """Total Collatz steps of every number below ``limit``: pure-Python arithmetic."""
    total = 0
    for n in range(1, limit):
        while n != 1:
            n = n // 2 if n % 2 == 0 else 3 * n + 1
            total += 1
    return total


async def main(address: str | None, tasks: int = 16, limit: int = 25_000) -> None:
    if address:
        ray.init(address=address)
    else:
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    nodes = len([n for n in ray.nodes() if n.get("Alive")])
    print(f"Ray cluster: {nodes} node(s), {cpus} CPU(s)")

    started = time.perf_counter()
    serial = [collatz_steps(limit + i) for i in range(tasks)]
    serial_s = time.perf_counter() - started

    async with Coordinator(backend=RayBackend(num_cpus=1)) as coord:
        for i in range(cpus):
            await coord.add_worker(f"ray-{i}", collatz_steps)
        started = time.perf_counter()
        handles = [await coord.run(limit + i) for i in range(tasks)]
        parallel = [result for result, _ in [await h for h in handles]]
        parallel_s = time.perf_counter() - started
        stats = await coord.stats()

    assert parallel == serial
    print(f"{tasks} tasks of pure-Python arithmetic")
    print(f"  serial, in this process:   {serial_s:6.2f} s")
    print(f"  procoord, {cpus} Ray workers: {parallel_s:6.2f} s  (speedup {serial_s / parallel_s:.2f}x)")
    for s in stats.values():
        print(f"  {s.ident}: pid {s.pid}, {s.completed} tasks, mean {s.ewma_ms or 0:.0f} ms")
    ray.shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("RAY_ADDRESS")))
