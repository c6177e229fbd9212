"""``python -m procoord demo``: CPU-heavy processors on every core, with a live stats table."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import textwrap
import time
from collections.abc import Hashable

from .coordinator import Coordinator
from .prefs import TaskPrefs
from .processor import TaskProcessor
from .stats import WorkerStats, format_stats

# How often the table is redrawn while the demo runs.
REDRAW_S = 0.5


class PrimeCounter(TaskProcessor):
    """Counts primes below a bound by trial division: pure-Python CPU work. Keeps a
    running total across tasks, to show that state lives in the worker."""

    def __init__(self) -> None:
        self.total = 0

    def do_work(self, task: int) -> int:
        count = sum(1 for n in range(2, task) if all(n % d for d in range(2, int(n**0.5) + 1)))
        self.total += count
        return count


async def demo(tasks: int = 48, bound: int = 60_000) -> None:
    """Run ``tasks`` prime counts on one worker per core, redrawing the stats table."""
    cores = os.cpu_count() or 1
    interactive = sys.stdout.isatty()
    async with Coordinator() as coord:
        for i in range(cores):
            await coord.add_worker(f"cpu-{i}", PrimeCounter())
        started = time.perf_counter()
        handles = [await coord.run(bound + i, TaskPrefs.Any) for i in range(tasks)]
        drawn_lines = 0
        while not all(h.done() for h in handles):
            table = _table(coord, await coord.stats(), shutil.get_terminal_size().columns)
            if interactive:
                if drawn_lines:
                    sys.stdout.write(f"\x1b[{drawn_lines}F\x1b[J")
                sys.stdout.write(table + "\n")
                sys.stdout.flush()
                drawn_lines = table.count("\n") + 1
            await asyncio.wait([asyncio.ensure_future(h.join()) for h in handles if not h.done()], timeout=REDRAW_S)
        results = [await h for h in handles]
        elapsed = time.perf_counter() - started
        if interactive and drawn_lines:
            sys.stdout.write(f"\x1b[{drawn_lines}F\x1b[J")
        print(_table(coord, await coord.stats(), shutil.get_terminal_size().columns if interactive else None))
        per_worker: dict[object, int] = {}
        for _, worker in results:
            per_worker[worker] = per_worker.get(worker, 0) + 1
        summary = (
            f"{tasks} tasks on {cores} worker processes in {elapsed:.2f} s; "
            f"tasks per worker: {dict(sorted(per_worker.items(), key=lambda kv: str(kv[0])))}"
        )
        print("\n" + (textwrap.fill(summary, shutil.get_terminal_size().columns - 1) if interactive else summary))


def _table(coord: Coordinator, stats: dict[Hashable, WorkerStats], width: int | None) -> str:
    """The stats table with the coordinator's backlog, no wider than ``width``: a line
    that wrapped would break the in-place redraw."""
    waiting = coord.pending - sum(s.queue_len for s in stats.values())
    return format_stats(stats, waiting=waiting, width=None if width is None else max(width - 1, 20))
