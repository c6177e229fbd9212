"""Streaming results: ``coord.stream`` over generator tasks, in real worker processes."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from procoord import (
    BlockingCoordinator,
    Coordinator,
    CoordinatorClosedError,
    SerializationError,
    TaskPrefs,
    TaskProcessError,
    TaskTimeoutError,
    WorkerLostError,
)
from procoord._stream import STREAM_CREDIT

from . import _funcs, _stream_funcs
from ._run import ROOT, run_python
from .conftest import DEADLOCK_TIMEOUT, BeaconFactory

W = TaskPrefs.Required("w")


@pytest.fixture(params=["sync", "async"])
async def scoord(request: pytest.FixtureRequest) -> AsyncIterator[Coordinator]:
    """A coordinator with one streaming worker "w": a plain or an async generator."""
    processor = _stream_funcs.SyncStreamer() if request.param == "sync" else _stream_funcs.AsyncStreamer()
    async with Coordinator() as c:
        await c.add_worker("w", processor)
        yield c


async def _parts(coord: Coordinator, task: Any, **kwargs: Any) -> tuple[list[Any], BaseException | None]:
    """Every part of a stream, and the error it ended with (None when it was exhausted)."""
    parts: list[Any] = []
    try:
        async with asyncio.timeout(DEADLOCK_TIMEOUT):
            async for part in coord.stream(task, W, **kwargs):
                parts.append(part)
    except TaskTimeoutError as exc:
        return parts, exc
    except TimeoutError:
        raise  # the deadlock guard
    except Exception as exc:
        return parts, exc
    return parts, None


async def _report(coord: Coordinator) -> tuple[int, bool]:
    """(parts yielded, closed early) of the worker's last stream, from a later task."""
    parts, _ = await coord.call(("report", None), W)
    return parts[0]  # type: ignore[no-any-return]


async def test_parts_arrive_in_order(scoord: Coordinator) -> None:
    """Test that every part arrives, in order, past several rounds of credit, and that
    stats count them."""
    count = 5 * STREAM_CREDIT + 7
    parts, error = await _parts(scoord, ("count", count))
    assert error is None
    assert parts == list(range(count))
    assert await _report(scoord) == (count, False)
    stats = (await scoord.stats())["w"]
    assert stats.parts_streamed == count + 0  # the report went through call(): a list, not parts
    assert stats.as_dict()["parts_streamed"] == count
    assert stats.completed == 2


async def test_run_and_call_give_the_list(scoord: Coordinator) -> None:
    """Test that run and call on a generator task give the list of all its parts."""
    assert await scoord.call(("count", 5), W) == ([0, 1, 2, 3, 4], "w")
    handle = await scoord.run(("count", 3), W)
    assert await handle == ([0, 1, 2], "w")
    assert (await scoord.stats())["w"].parts_streamed == 0


async def test_break_closes_the_generator_in_the_worker(scoord: Coordinator) -> None:
    """Test that leaving the loop early cancels the task: the generator of 10 million
    parts is closed in the worker, having yielded little more than what was taken."""
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        async for part in scoord.stream(("count", 10_000_000), W):
            if part == 10:
                break
    yielded, closed = await _report(scoord)
    assert closed
    assert yielded <= 11 + STREAM_CREDIT


async def test_leaving_the_loop_closes_a_stream_held_in_a_variable(scoord: Coordinator) -> None:
    """Test that a break, or an exception in the loop's body, cancels the task in the
    worker even while the stream is still referenced (held in a variable): the worker
    takes its next task."""
    parts = scoord.stream(("count", 10_000_000), W)
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        async for part in parts:
            if part == 3:
                break
        yielded, closed = await _report(scoord)
    assert closed and yielded <= 4 + STREAM_CREDIT
    assert parts.closed
    again = scoord.stream(("count", 10_000_000), W)
    with pytest.raises(_funcs.Boom):
        async with asyncio.timeout(DEADLOCK_TIMEOUT):
            async for part in again:
                if part == 2:
                    raise _funcs.Boom("consumer")
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        assert (await _report(scoord))[1] is True
    assert again.closed


async def test_an_error_in_the_consumer_closes_the_generator(scoord: Coordinator) -> None:
    """Test that an exception raised in the loop's body cancels the task."""
    with pytest.raises(_funcs.Boom):
        async with asyncio.timeout(DEADLOCK_TIMEOUT):
            async for part in scoord.stream(("count", 10_000_000), W):
                if part == 3:
                    raise _funcs.Boom("consumer")
    assert await _report(scoord) == (pytest.approx(4, abs=STREAM_CREDIT), True)


async def test_aclose_and_async_with_close_the_generator(scoord: Coordinator) -> None:
    """Test that aclose() (and leaving ``async with``) cancels a stream held in a variable."""
    parts = scoord.stream(("count", 10_000_000), W)
    async with parts:
        assert await anext(parts) == 0
        assert await anext(parts) == 1
    assert parts.closed
    with pytest.raises(StopAsyncIteration):
        await anext(parts)
    assert (await _report(scoord))[1] is True
    again = scoord.stream(("count", 10_000_000), W)
    assert await anext(again) == 0
    await again.aclose()
    assert (await _report(scoord))[1] is True


async def test_cancelling_the_consumer_closes_the_generator(beacons: BeaconFactory) -> None:
    """Test that cancelling the consumer while it waits for a part cancels the task in
    the worker, where the async generator is closed."""
    started = beacons()
    async with Coordinator() as coord:
        await coord.add_worker("w", _stream_funcs.AsyncStreamer())
        got: list[int] = []

        async def consume() -> None:
            async for part in coord.stream(("hold_after", (2, started.path)), W):
                got.append(part)

        consumer = asyncio.create_task(consume())
        await started.wait()
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert await _report(coord) == (2, True)


async def test_an_error_in_the_generator_raises_after_the_parts(scoord: Coordinator) -> None:
    """Test that the generator's exception raises from the loop after the parts before it."""
    parts, error = await _parts(scoord, ("fail_after", 3))
    assert parts == [0, 1, 2]
    assert isinstance(error, TaskProcessError)
    assert isinstance(error.__cause__, _funcs.Boom)
    assert error.worker == "w"
    assert (await scoord.stats())["w"].failed == 1


async def test_a_crash_mid_stream_raises_after_the_parts(scoord: Coordinator) -> None:
    """Test that a worker dying mid-stream gives the parts that arrived, then
    WorkerLostError; the worker is restarted and streams again."""
    parts, error = await _parts(scoord, ("exit_after", 3))
    assert parts == [0, 1, 2]
    assert isinstance(error, WorkerLostError)
    assert error.exitcode == 3
    parts, error = await _parts(scoord, ("count", 4))
    assert (parts, error) == ([0, 1, 2, 3], None)
    assert (await scoord.stats())["w"].restarts == 1


async def test_timeout_applies_to_the_stream(beacons: BeaconFactory) -> None:
    """Test that a stream's timeout raises TaskTimeoutError after the parts before it."""
    started = beacons()
    async with Coordinator() as coord:
        await coord.add_worker("w", _stream_funcs.AsyncStreamer())
        waiting = asyncio.ensure_future(started.wait())
        parts, error = await _parts(coord, ("hold_after", (2, started.path)), timeout=0.5)
        await waiting
        assert parts == [0, 1]
        assert isinstance(error, TaskTimeoutError)
        assert (await coord.stats())["w"].restarts == 0  # a timeout is not a crash


async def test_an_unpicklable_part_raises_after_the_parts(coord: Coordinator) -> None:
    """Test that a part that cannot be pickled ends the stream with SerializationError,
    after the parts before it."""
    await coord.add_worker("w", _stream_funcs.unpicklable_after)
    parts, error = await _parts(coord, 3)
    assert parts == [0, 1, 2]
    assert isinstance(error, SerializationError)
    assert error.stage == "part"


async def test_streaming_a_plain_result_says_what_to_use(coord: Coordinator) -> None:
    """Test that streaming a task whose do_work returns a plain value names run/call."""
    await coord.add_worker("w", _stream_funcs.not_a_generator)
    parts, error = await _parts(coord, 5)
    assert parts == []
    assert isinstance(error, TaskProcessError)
    assert isinstance(error.__cause__, TypeError)
    assert "use run() or call()" in str(error.__cause__)


async def test_stream_routes_like_run(coord: Coordinator) -> None:
    """Test Any and Preferred routing of streams, and errors raised before queuing."""
    await coord.add_worker("a", _stream_funcs.blobs)
    await coord.add_worker("b", _stream_funcs.blobs)
    parts = [p async for p in coord.stream(3, TaskPrefs.Preferred("b"))]
    assert parts == [i.to_bytes(4, "little") * 256 for i in range(3)]
    assert (await coord.stats())["b"].parts_streamed == 3
    assert len([p async for p in coord.stream(2)]) == 2
    with pytest.raises(KeyError):
        await anext(coord.stream(1, TaskPrefs.Required("nobody")))
    with pytest.raises(SerializationError):
        await anext(coord.stream(_funcs.Unpicklable()))
    with pytest.raises(ValueError):
        coord.stream(1, timeout=-1)


async def test_parent_memory_stays_flat_for_a_slow_consumer(coord: Coordinator) -> None:
    """Test that a generator of 10 million 1 KiB parts, consumed slowly and partially,
    keeps the parent's memory flat: the worker waits for credit, so no more than about
    STREAM_CREDIT parts are ever held in the parent."""
    await coord.add_worker("w", _stream_funcs.SyncStreamer())
    await coord.add_worker("blobs", _stream_funcs.blobs)
    taken = 20 * STREAM_CREDIT
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        n = 0
        async with asyncio.timeout(DEADLOCK_TIMEOUT):
            async for _part in coord.stream(10_000_000, TaskPrefs.Required("blobs")):
                n += 1
                for _ in range(5):  # a slow consumer: the loop turns, the pipe is read
                    await asyncio.sleep(0)
                if n == taken:
                    break
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    # Each part is ~1 KiB: STREAM_CREDIT of them are ~256 KiB. 20x that would pass
    # through an unbounded buffer in this time; the bound is far below.
    assert peak < 4 * STREAM_CREDIT * 1024, f"{peak} bytes traced"
    # The same with a generator that records how far it got before it was closed.
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        async for part in coord.stream(("count", 10_000_000), W):
            for _ in range(5):
                await asyncio.sleep(0)
            if part == taken:
                break
    yielded, closed = await _report(coord)
    assert closed
    assert yielded <= taken + 1 + STREAM_CREDIT


async def test_interface_generator_methods_stream(coord: Coordinator) -> None:
    """Test that an interface method that is a generator streams through a proxy, and
    that join() gives the list of its parts."""
    family = _stream_funcs.Tokenizer(coord)
    await family.add_worker("t", _stream_funcs.SplitTokenizer())
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        assert [w async for w in family.any().tokens("a b c")] == ["a", "b", "c"]
        assert await family.require("t").tokens("d e").join() == (["d", "e"], "t")
        assert await family.any().count("x y z").join() == (3, "t")
        call = family.any().tokens("f")
        assert [w async for w in call] == ["f"]
        with pytest.raises(RuntimeError, match="queued"):
            await call
    assert (await coord.stats())["t"].parts_streamed == 4


def test_blocking_stream() -> None:
    """Test BlockingCoordinator.stream: a plain iterator of the parts; a break closes
    the generator in the worker; errors raise after the parts."""
    with BlockingCoordinator() as bc:
        bc.add_worker("w", _stream_funcs.SyncStreamer())
        assert list(bc.stream(("count", 3 * STREAM_CREDIT), W)) == list(range(3 * STREAM_CREDIT))
        for part in bc.stream(("count", 10_000_000), W):
            if part == 2:
                break
        [(yielded, closed)], _ = bc.call(("report", None), W)
        assert closed and yielded <= 3 + STREAM_CREDIT
        got: list[int] = []
        with pytest.raises(TaskProcessError):
            for part in bc.stream(("fail_after", 2), W):
                got.append(part)
        assert got == [0, 1]


def test_blocking_break_closes_a_stream_held_in_a_variable() -> None:
    """Test that a break out of a ``for`` over BlockingCoordinator.stream cancels the
    task in the worker while the iterator is still referenced."""
    with BlockingCoordinator() as bc:
        bc.add_worker("w", _stream_funcs.SyncStreamer())
        parts = bc.stream(("count", 10_000_000), W)
        for part in parts:
            if part == 2:
                break
        [(yielded, closed)], _ = bc.run(("report", None), W).result(timeout=DEADLOCK_TIMEOUT)
        assert closed and yielded <= 3 + STREAM_CREDIT
        assert list(parts) == []


def test_example_runs() -> None:
    """Test that examples/stream.py runs and prints what it says."""
    proc = run_python([str(ROOT / "examples" / "stream.py")])
    assert proc.returncode == 0, proc.stderr
    assert "part: fox" in proc.stdout
    assert "tok gave ['jumps', 'over', 'the', 'lazy', 'dog']" in proc.stdout
    assert "row: 7 49" in proc.stdout and "row: 8" not in proc.stdout
    assert "parts streamed by 'tok': 4" in proc.stdout


async def test_inline_backend_streams() -> None:
    """Test streaming on the in-memory backend: the same frames and credit, in the
    parent's loop (a stream longer than the credit completes; a break closes the
    generator; an error raises after the parts)."""
    from procoord.backends.inline import InlineBackend

    async with Coordinator(backend=InlineBackend()) as coord:
        await coord.add_worker("w", _stream_funcs.AsyncStreamer())
        count = 3 * STREAM_CREDIT
        async with asyncio.timeout(DEADLOCK_TIMEOUT):
            assert [p async for p in coord.stream(("count", count), W)] == list(range(count))
            async for part in coord.stream(("count", 10_000_000), W):
                if part == 1:
                    break
            assert await _report(coord) == (pytest.approx(2, abs=STREAM_CREDIT), True)
        parts, error = await _parts(coord, ("fail_after", 2))
        assert parts == [0, 1] and isinstance(error, TaskProcessError)


async def test_close_ends_an_open_stream() -> None:
    """Test that closing the coordinator while a stream is open (its consumer waiting
    for close, not reading) does not hang: the stream's loop raises
    CoordinatorClosedError after the parts that arrived, and a queued stream never runs."""
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        async with Coordinator() as coord:
            await coord.add_worker("w", _stream_funcs.SyncStreamer())
            running = coord.stream(("count", 10_000_000), W)
            assert await anext(running) == 0
            queued = coord.stream(("count", 10), W)
            opening = asyncio.ensure_future(anext(queued))
            while coord.pending < 2:
                await asyncio.sleep(0)
        parts = [0]
        with pytest.raises(CoordinatorClosedError):
            async for part in running:
                parts.append(part)
        assert parts == list(range(len(parts)))
        with pytest.raises(CoordinatorClosedError):
            await opening


async def test_map_and_run_batch_give_lists(scoord: Coordinator) -> None:
    """Test that map (whose cheap items travel in batches) and run_batch on a generator
    task give each item the list of its parts."""
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        results = [r async for r, _ in scoord.map([("count", 3)] * 500)]
        assert results == [[0, 1, 2]] * 500
        outcomes, _ = await (await scoord.run_batch([("count", 2), ("fail_after", 1)], W))
    assert outcomes[0] == (True, [0, 1])
    assert outcomes[1][0] is False and isinstance(outcomes[1][1], TaskProcessError)


async def test_large_parts_are_bounded_by_bytes(coord: Coordinator) -> None:
    """Test that parts of 1 MiB, consumed slowly, keep the parent's memory near
    STREAM_BYTES, far below STREAM_CREDIT parts of that size."""
    from procoord._wire import STREAM_BYTES

    await coord.add_worker("w", _stream_funcs.mib_blobs)
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        n = 0
        async with asyncio.timeout(DEADLOCK_TIMEOUT):
            async for part in coord.stream(100_000):
                assert part[0] == n % 256
                n += 1
                for _ in range(200):  # a slow consumer: the loop turns, the pipe is read
                    await asyncio.sleep(0)
                if n == 100:
                    break
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    assert peak < 2 * STREAM_BYTES + 8 * (1 << 20), f"{peak} bytes traced"


async def test_retries_only_before_the_first_part(coord: Coordinator, tmp_path: Path) -> None:
    """Test that a stream whose worker dies before its first part runs again with
    retries=, and that one which already gave a part is not retried."""
    await coord.add_worker("w", _stream_funcs.dies_once_then_counts)
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        parts = [p async for p in coord.stream((str(tmp_path / "a"), 3, False), W, retries=1)]
        assert parts == [0, 1, 2]
        parts, error = await _parts(coord, (str(tmp_path / "b"), 3, True), retries=1)
    assert parts == [-1]
    assert isinstance(error, WorkerLostError)
    assert (await coord.stats())["w"].retries == 1
