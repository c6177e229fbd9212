"""Bulk work through the public API, with real worker processes: ``Coordinator.map``
(window, order, errors, cancellation, flat memory, progress) and ``max_pending``."""

from __future__ import annotations

import asyncio
import gc
import io
import sys
import threading
import time
import tracemalloc
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from procoord import (
    Coordinator,
    SerializationError,
    TaskPrefs,
    TaskProcessError,
)
from procoord._progress import PlainBar

from . import _funcs
from .conftest import DEADLOCK_TIMEOUT, BeaconFactory


async def _two_counters(coord: Coordinator) -> None:
    await coord.add_worker("a", _funcs.Counter("a"))
    await coord.add_worker("b", _funcs.Counter("b"))


# -- results and order --------------------------------------------------------------


async def test_map_ordered_yields_in_input_order(coord: Coordinator) -> None:
    """Test that map yields (result, worker) in input order when tasks finish out of order."""
    await coord.add_worker("a", lambda t: _funcs.spin_then(t[0], t[1]))
    await coord.add_worker("b", lambda t: _funcs.spin_then(t[0], t[1]))
    # Earlier items are slower, so later ones tend to finish first.
    items = [(0.002 * (4 - i % 5), i) for i in range(40)]
    out = [pair async for pair in coord.map(items, window=8)]
    assert [result for result, _ in out] == list(range(40))
    assert {worker for _, worker in out} <= {"a", "b"}


async def test_map_unordered_yields_in_completion_order(coord: Coordinator, beacons: BeaconFactory) -> None:
    """Test that map(ordered=False) yields the others while the first task is still held."""
    await _two_counters(coord)
    started, release = beacons(), beacons()
    hold = ("hold", started.path, release.path)
    results = coord.map([hold, 1, 2, 3, 4, 5], ordered=False, window=6)
    first, _ = await asyncio.wait_for(anext(results), DEADLOCK_TIMEOUT)
    assert first != "released"  # the held task cannot have finished yet
    await started.wait()
    await release.signal()
    rest = [result async for result, _ in results]
    assert sorted([first, *rest], key=str) == sorted([1, 2, 3, 4, 5, "released"], key=str)
    assert coord.pending == 0


async def test_map_accepts_async_iterables(coord: Coordinator) -> None:
    """Test that map reads an async iterable lazily, like a sync one."""
    await coord.add_worker("w", _funcs.double)

    async def numbers() -> AsyncIterator[int]:
        for i in range(30):
            await asyncio.sleep(0)
            yield i

    assert [r async for r, _ in coord.map(numbers(), window=4)] == [2 * i for i in range(30)]


async def test_map_routes_with_prefs(coord: Coordinator) -> None:
    """Test that map passes its TaskPrefs to every task."""
    await _two_counters(coord)
    out = [w async for _, w in coord.map(range(20), TaskPrefs.Required("b"))]
    assert out == ["b"] * 20


async def test_map_of_nothing_ends_at_once(coord: Coordinator) -> None:
    """Test that map over an empty iterable yields nothing and queues nothing."""
    await coord.add_worker("w", _funcs.double)
    assert [pair async for pair in coord.map([])] == []
    assert coord.pending == 0


def test_map_rejects_bad_arguments() -> None:
    """Test that a bad window or a non-iterable fails when map is called."""
    coord = Coordinator()
    with pytest.raises(ValueError, match="window"):
        coord.map(range(3), window=0)
    with pytest.raises(TypeError, match="iterable"):
        coord.map(42)  # type: ignore[call-overload]


# -- the window and back-pressure ---------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_map_keeps_at_most_window_tasks_unfinished(coord: Coordinator, ordered: bool) -> None:
    """Test that at most `window` tasks are unfinished whenever map pulls an item or yields."""
    await _two_counters(coord)
    window = 5
    at_pull: list[int] = []

    def items() -> Iterator[int]:
        for i in range(200):
            at_pull.append(coord.pending)
            yield i

    at_yield = []
    async for _ in coord.map(items(), ordered=ordered, window=window):
        at_yield.append(coord.pending)
        queued = sum(s.queue_len for s in (await coord.stats()).values())
        assert queued <= window
    assert len(at_pull) == 200
    assert max(at_pull) < window  # an item is pulled only when there is room for it
    assert max(at_pull) == window - 1  # ... and the window is used
    assert max(at_yield) <= window


async def test_max_pending_waits_and_wakes_when_a_task_finishes(beacons: BeaconFactory) -> None:
    """Test that run() waits while max_pending tasks are unfinished and returns as soon as one finishes."""
    async with Coordinator(max_pending=2) as coord:
        await coord.add_worker("w", _funcs.Counter())
        s1, r1, s2, r2 = beacons(), beacons(), beacons(), beacons()
        first = await coord.run(("hold", s1.path, r1.path))
        second = await coord.run(("hold", s2.path, r2.path))
        await s1.wait()
        third = asyncio.ensure_future(coord.run("third"))
        done, _ = await asyncio.wait({third}, timeout=0.2)
        assert not done and coord.pending == 2  # still waiting for room
        await r1.signal()
        handle = await asyncio.wait_for(third, DEADLOCK_TIMEOUT)
        # It was let in by the first task finishing, while the second still holds.
        assert first.done() and not second.done()
        await s2.wait()
        assert not second.done()
        await r2.signal()
        assert await handle == ("third", "w")
        assert await second == ("released", "w")


async def test_map_waits_on_max_pending_too() -> None:
    """Test that map's window never exceeds the coordinator's max_pending."""
    async with Coordinator(max_pending=3) as coord:
        await coord.add_worker("w", _funcs.double)
        seen = []
        async for _ in coord.map(range(50), window=10):
            seen.append(coord.pending)
        assert max(seen) <= 3


# -- errors -------------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_map_raises_a_failed_task(coord: Coordinator, ordered: bool) -> None:
    """Test that a failed task raises from the loop, which then ends with nothing left queued."""
    await coord.add_worker("w", _funcs.raiser)
    results = coord.map(["ok", "value", *["more"] * 20], ordered=ordered, window=4)
    got = []
    with pytest.raises(TaskProcessError) as info:
        async for result, _ in results:
            got.append(result)
    assert isinstance(info.value.__cause__, ValueError)
    assert info.value.worker == "w"
    assert got == ["ok"]
    assert results.closed
    with pytest.raises(StopAsyncIteration):
        await anext(results)
    assert await coord.call("last") == ("last", "w")
    assert coord.pending == 0


async def test_map_return_exceptions_yields_errors_in_place(coord: Coordinator) -> None:
    """Test that return_exceptions=True yields each error in its task's place, unpicklable items included."""
    await coord.add_worker("w", _funcs.raiser)
    items: list[Any] = ["a", "value", threading.Lock(), "b"]
    out = [item async for item in coord.map(items, return_exceptions=True)]
    assert out[0] == ("a", "w")
    assert isinstance(out[1], TaskProcessError) and isinstance(out[1].__cause__, ValueError)
    assert isinstance(out[2], SerializationError) and out[2].stage == "task"
    assert out[3] == ("b", "w")


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_map_of_cheap_tasks_gives_a_failure_inside_a_chunk_in_its_place(
    coord: Coordinator, ordered: bool
) -> None:
    """Test that once tasks are known to be cheap (items go out in chunks of many), a
    failed item in the middle of a chunk is yielded in its place with
    return_exceptions=True, and otherwise raises after the items before it, closing the map."""
    await coord.add_worker("w", _funcs.raiser)
    for _ in range(20):
        await coord.call("warm")  # task times are known: chunks of hundreds of items
    items = [f"a{i}" for i in range(300)] + ["value"] + [f"b{i}" for i in range(300)]
    out = [item async for item in coord.map(items, ordered=ordered, return_exceptions=True)]
    errors = [i for i, item in enumerate(out) if isinstance(item, TaskProcessError)]
    assert len(out) == 601 and len(errors) == 1
    plain = [item for item in out if not isinstance(item, TaskProcessError)]
    if ordered:
        assert errors == [300]
        assert plain == [(item, "w") for item in items if item != "value"]
    else:
        assert sorted(plain) == sorted((item, "w") for item in items if item != "value")

    got = []
    results = coord.map(items, ordered=ordered)
    with pytest.raises(TaskProcessError):
        async for result, _ in results:
            got.append(result)
    assert results.closed and results.outstanding == 0
    if ordered:
        assert got == items[:300]
    with pytest.raises(StopAsyncIteration):
        await anext(results)
    await coord.call("last")
    assert coord.pending == 0


async def test_map_raises_an_error_of_its_input(coord: Coordinator) -> None:
    """Test that an error raised by the input iterable propagates and cancels what was queued."""
    await coord.add_worker("w", _funcs.double)

    def items() -> Iterator[int]:
        yield from range(3)
        raise RuntimeError("input broke")

    with pytest.raises(RuntimeError, match="input broke"):
        async for _ in coord.map(items(), window=10):
            pass
    await coord.call(0)  # the worker is FIFO: whatever came before is done or cancelled
    assert coord.pending == 0


# -- cancellation ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["break", "break_held", "aclose", "drop"])
@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_leaving_map_early_cancels_queued_tasks(
    coord: Coordinator, beacons: BeaconFactory, how: str, ordered: bool
) -> None:
    """Test that leaving the loop early (break, also while the map is held in a variable;
    aclose; dropping it) cancels queued tasks: they never run."""
    await coord.add_worker("w", _funcs.Counter())
    started, release = beacons(), beacons()
    hold = ("hold", started.path, release.path)
    pulled = []

    def items() -> Iterator[Any]:
        for i in range(1_000):
            pulled.append(i)
            yield hold if i == 1 else i

    if how == "break":
        async for result, _ in coord.map(items(), ordered=ordered, window=8):
            assert result == 0
            await started.wait()  # the worker runs the held task; the rest are queued
            break
    elif how == "break_held":
        held = coord.map(items(), ordered=ordered, window=8)
        async for _result, _ in held:
            await started.wait()
            break
        assert held.closed
    else:
        results = coord.map(items(), ordered=ordered, window=8)
        assert (await anext(results))[0] == 0
        await started.wait()
        if how == "aclose":
            await results.aclose()
        else:
            del results
            gc.collect()
    await release.signal()
    history, _ = await coord.call("history")
    assert history == [0, hold, "history"]
    assert len(pulled) <= 9
    assert coord.pending == 0


async def test_async_with_map_closes_it(coord: Coordinator) -> None:
    """Test that `async with coord.map(...)` cancels what is left when the block ends."""
    await coord.add_worker("w", _funcs.double)
    async with coord.map(range(1_000_000), window=4) as results:
        assert (await anext(results))[0] == 0
    assert results.closed
    await coord.call(0)  # everything before it has finished or been cancelled
    assert coord.pending == 0


# -- memory ---------------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
async def test_map_memory_stays_flat_over_millions_of_items(coord: Coordinator, ordered: bool) -> None:
    """Test that map over a generator of millions keeps memory flat and reads only what it runs."""
    await coord.add_worker("a", _funcs.double)
    await coord.add_worker("b", _funcs.double)
    pulled = 0

    def millions() -> Iterator[int]:
        nonlocal pulled
        for i in range(5_000_000):
            pulled += 1
            yield i

    warmup, measured, window = 1_000, 10_000, 16
    before = after = 0
    tracemalloc.start()
    try:
        n = 0
        async for _ in coord.map(millions(), ordered=ordered, window=window):
            n += 1
            if n == warmup:
                gc.collect()
                before = tracemalloc.get_traced_memory()[0]
            elif n == warmup + measured:
                gc.collect()
                after = tracemalloc.get_traced_memory()[0]
                break
    finally:
        tracemalloc.stop()
    # A list of the 10,000 tasks would take megabytes; the window takes a few kB.
    assert after - before < 1_000_000, f"memory grew by {after - before} bytes"
    assert pulled <= warmup + measured + window
    await coord.call(0)
    assert coord.pending == 0


# -- progress ---------------------------------------------------------------------------


async def test_map_progress_fallback_bar_on_stderr(
    coord: Coordinator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that progress=True without tqdm draws a plain bar with count, percentage and rate on stderr."""
    monkeypatch.setitem(sys.modules, "tqdm", None)  # as if tqdm were not installed
    await coord.add_worker("w", _funcs.double)
    out = [r async for r, _ in coord.map(range(25), progress=True)]
    assert out == [2 * i for i in range(25)]
    captured = capsys.readouterr()
    assert captured.out == ""
    last = captured.err.strip().splitlines()[-1]
    assert "25/25" in last and "100%" in last and "task/s" in last


async def test_map_progress_unknown_total(
    coord: Coordinator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that the plain bar over a generator shows the count and rate, without a percentage."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    await coord.add_worker("w", _funcs.double)
    async for _ in coord.map((i for i in range(7)), progress=True):
        pass
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert ": 7 [" in last and "%" not in last and "task/s" in last


async def test_map_progress_uses_tqdm_when_installed(coord: Coordinator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test that progress=True uses tqdm, when it can be imported, with the total and stderr."""
    bars: list[Any] = []

    class FakeTqdm:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs
            self.n = 0
            self.closed = False
            bars.append(self)

        def update(self, n: int = 1) -> None:
            self.n += n

        def close(self) -> None:
            self.closed = True

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(auto=None))
    monkeypatch.setitem(sys.modules, "tqdm.auto", types.SimpleNamespace(tqdm=FakeTqdm))
    await coord.add_worker("w", _funcs.double)
    async for _ in coord.map(range(12), progress=True):
        pass
    [bar] = bars
    assert bar.kwargs["total"] == 12 and bar.kwargs["file"] is sys.stderr
    assert bar.n == 12 and bar.closed


def test_plain_bar_shows_rate_and_eta() -> None:
    """Test that the plain bar computes the rate and the ETA from the items done so far."""
    out = io.StringIO()
    bar = PlainBar(100, desc="job", file=out)
    bar.update(50)
    text = bar.render(time.monotonic() + 10.0)
    assert text.startswith("job: 50/100  50% [")
    assert "5.0 task/s" in text and "ETA 0:1" in text
    bar.close()
    bar.close()
    assert out.getvalue().count("\n") == 1
