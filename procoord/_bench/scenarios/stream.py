"""(s) Streaming: the parts of a generator task through ``Coordinator.stream``, as parts
per second, next to the same parts returned at once as one list by ``call``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from .._config import BenchConfig
from .._coord import coordinator
from .._harness import Profiler, median_of, summary
from .._report import Row, Scenario, spread

__all__ = ("SCENARIO",)

SIZES = (("int", 0), ("1kib", 1024))


def parts(task: tuple[int, int]) -> Iterator[Any]:
    """``count`` parts: ints, or ``size``-byte strings when ``size`` is not 0."""
    count, size = task
    if size:
        blob = b"x" * size
        for _ in range(count):
            yield blob
    else:
        yield from range(count)


def parts_list(task: tuple[int, int]) -> list[Any]:
    """The same parts as one list."""
    return list(parts(task))


async def _rates(count: int, size: int, reps: int) -> tuple[list[float], list[float]]:
    streamed, listed = [], []
    async with await coordinator(parts, 1, warm=0) as coord:
        await coord.add_worker("list", parts_list)
        async for _ in coord.stream((1000, size)):  # warm up both paths
            pass
        await coord.call((1000, size), _list_worker())
        for _ in range(reps):
            t0 = time.perf_counter()
            n = 0
            async for _ in coord.stream((count, size), _stream_worker()):
                n += 1
            streamed.append(n / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            result, _ = await coord.call((count, size), _list_worker())
            listed.append(len(result) / (time.perf_counter() - t0))
    return streamed, listed


def _stream_worker() -> Any:
    from procoord import TaskPrefs

    return TaskPrefs.Required("w0")


def _list_worker() -> Any:
    from procoord import TaskPrefs

    return TaskPrefs.Required("list")


def measure(cfg: BenchConfig, prof: Profiler) -> dict[str, Any]:
    """Parts per second, streamed and as one list, for each part size."""
    count = 20_000 if cfg.quick else 200_000
    out: dict[str, Any] = {
        "parts": count,
        "how": "a generator of `parts` parts consumed with `async for` over coord.stream, "
        "against call() of a function returning the same parts as a list; parts per second of each",
    }
    for key, size in SIZES:
        streamed, listed = prof.run(cfg, _rates(count, size, cfg.reps_up_to(3)))
        out[key] = {"procoord": summary(streamed), "list": summary(listed)}
    return out


def rows(fig: dict[str, Any], cfg: BenchConfig) -> list[Row]:
    """One row per part size: streamed parts/s, and the list's parts/s as "other"."""
    out = []
    for key, name in (("int", "int parts"), ("1kib", "1 KiB parts")):
        node = fig[key]
        out.append(
            Row(
                "s", f"stream of {fig['parts']} {name} (parts/s)",
                median_of(node["procoord"]), spread(node["procoord"]),
                other=("as one list", median_of(node["list"])),
            )
        )  # fmt: skip
    return out


SCENARIO = Scenario("s", "stream", "a generator's parts streamed, against one list", measure, rows)
