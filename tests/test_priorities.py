"""Priorities: the order of what waits in the coordinator; retries' argument checks."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from procoord import BlockingCoordinator, Coordinator, TaskPrefs
from procoord._task import Task, TaskQueue
from procoord.prefs import ANY

from . import _funcs, _shapes
from ._run import ROOT, run_python
from .conftest import DEADLOCK_TIMEOUT, BeaconFactory


def _records(rng: random.Random, count: int) -> list[Task]:
    """Task records of mixed priorities (-1, 0 twice as often, 3)."""
    return [Task(i, b"", ANY, None, None, priority=rng.choice([-1, 0, 0, 3])) for i in range(count)]


def test_task_queue_orders_by_priority_then_fifo() -> None:
    """Test the queue's order (higher first, FIFO within one), O(1) discards and
    hand-backs to the head of their priority."""
    rng = random.Random(16)
    tasks = _records(rng, 500)
    queue = TaskQueue()
    queue.extend(tasks)
    gone = {t.id for t in rng.sample(tasks, 150)}
    for task in tasks:
        if task.id in gone:
            assert queue.discard(task)
    assert not queue.discard(tasks[next(iter(gone))])
    expected = sorted((t for t in tasks if t.id not in gone), key=lambda t: (-t.priority, t.id))
    assert len(queue) == len(expected) and list(queue) == expected
    assert queue.top_priority() == 3
    first = [queue.popleft() for _ in range(100)]
    assert first == expected[:100]
    queue.appendleft(first[-1])  # handed back: ahead of its priority again
    urgent = Task(1000, b"", ANY, None, None, priority=9)
    queue.append(urgent)
    assert queue.popleft() is urgent
    assert queue.drain() == expected[99:]
    assert not queue and queue.top_priority() is None
    with pytest.raises(IndexError):
        queue.popleft()


def test_task_queue_take_gives_what_popleft_would() -> None:
    """Test that taking several tasks at once gives them in popleft's order, across
    priorities and past discarded ones, and no more than are queued."""
    rng = random.Random(17)
    tasks = _records(rng, 400)
    queue = TaskQueue()
    queue.extend(tasks)
    for task in rng.sample(tasks, 120):
        queue.discard(task)
    expected = list(queue)
    taken: list[Task] = []
    while queue:
        run = queue.take(rng.randint(1, 60))
        assert run and all(t.queue is None for t in run)
        taken += run
    assert taken == expected and len(queue) == 0
    assert queue.take(5) == [] and queue.top_priority() is None
    pristine = TaskQueue()  # nothing discarded: each lane gives its run at once
    pristine.extend(tasks)
    expected = list(pristine)
    taken = []
    while pristine:
        taken += pristine.take(rng.randint(1, 60))
    assert taken == expected and all(t.queue is None for t in taken)


async def test_tasks_queued_in_one_turn_leave_by_priority(coord: Coordinator) -> None:
    """Test that tasks queued together (no await between them) go to an idle worker
    highest priority first: only the first, queued while nothing else was, goes at once."""
    await coord.add_worker("w", _funcs.Counter())
    handles = [coord.run_nowait(("low", i), priority=-1) for i in range(5)]
    handles += [coord.run_nowait(("high", i), priority=5) for i in range(5)]
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        await asyncio.gather(*(h.join() for h in handles))
    history, _ = await coord.call("history")
    assert history[:-1] == [("low", 0), *[("high", i) for i in range(5)], *[("low", i) for i in range(1, 5)]]


async def test_shared_priority_overtakes_a_workers_own_queue(coord: Coordinator, beacons: BeaconFactory) -> None:
    """Test that an Any task of a higher priority is written before the Required tasks
    of a lower one already queued to the worker."""
    await coord.add_worker("w", _funcs.Counter())
    started, release = beacons(), beacons()
    running = await coord.run(("hold", started.path, release.path))
    await started.wait()
    bound = [await coord.run(i, TaskPrefs.Required("w")) for i in range(20)]
    written = (await coord.stats())["w"].in_flight
    urgent = await coord.run("urgent", priority=5)
    await release.signal()
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        await asyncio.gather(running, urgent, *bound)
    history, _ = await coord.call("history")
    assert history.index("urgent") == written
    assert [t for t in history if isinstance(t, int)] == list(range(20))


async def test_negative_priority_waits_behind(coord: Coordinator, beacons: BeaconFactory) -> None:
    """Test that a negative priority lets the default-priority tasks go first."""
    await coord.add_worker("w", _funcs.Counter())
    started, release = beacons(), beacons()
    running = await coord.run(("hold", started.path, release.path))
    await started.wait()
    handles = [await coord.run(("low", i), priority=-1) for i in range(10)]
    handles += [await coord.run(i) for i in range(10)]
    written = (await coord.stats())["w"].in_flight
    await release.signal()
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        await asyncio.gather(running, *handles)
    history, _ = await coord.call("history")
    order = history[1:-1]  # after the held task, before the call that asks
    early = order.index(0)  # low tasks written to the worker before the others were queued
    assert early <= written - 1
    assert order == [*[("low", i) for i in range(early)], *range(10), *[("low", i) for i in range(early, 10)]]


@pytest.mark.parametrize(
    ("options", "error"),
    [({"priority": "high"}, TypeError), ({"priority": 1.5}, TypeError), ({"retries": -1}, ValueError)],
)
async def test_bad_task_options(coord: Coordinator, options: dict[str, object], error: type[Exception]) -> None:
    """Test that a bad priority or retries count is refused before anything is queued."""
    await coord.add_worker("w", _funcs.double)
    with pytest.raises(error):
        await coord.run(1, **options)  # type: ignore[arg-type]
    assert coord.pending == 0


def test_priorities_example_runs() -> None:
    """Test that examples/priorities.py shows the urgent task overtaking the backlog."""
    proc = run_python([str(ROOT / "examples" / "priorities.py")])
    assert proc.returncode == 0, proc.stderr
    assert "ahead of" in proc.stdout
    assert "ran first: True" in proc.stdout


def test_retries_example_runs() -> None:
    """Test that examples/retries.py retries a crash, gives up with the attempts and
    never retries a raised exception."""
    proc = run_python([str(ROOT / "examples" / "retries.py")])
    assert proc.returncode == 0, proc.stderr
    assert "after the first process died" in proc.stdout
    assert "gave up after 3 attempts" in proc.stdout
    assert "never retried" in proc.stdout
    assert "retries counted in stats: 1 + 2" in proc.stdout


async def test_map_retries_and_priority(coord: Coordinator, tmp_path: Path, beacons: BeaconFactory) -> None:
    """Test that map passes retries (each lost item runs again) and priority (its
    items overtake queued ones) to its tasks."""
    await coord.add_worker("w", _shapes.lost_until)
    items = [(str(tmp_path / f"m{i}"), 1, "exit") for i in range(3)]
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        assert [run async for run, _ in coord.map(items, retries=1)] == [2, 2, 2]
    assert (await coord.stats())["w"].retries == 3
    await coord.add_worker("c", _funcs.Counter())
    started, release = beacons(), beacons()
    running = await coord.run(("hold", started.path, release.path), TaskPrefs.Required("c"))
    await started.wait()
    low = [await coord.run(i, TaskPrefs.Required("c")) for i in range(50)]
    written = (await coord.stats())["c"].in_flight
    releasing: list[asyncio.Task[None]] = []

    def items() -> Iterator[str]:
        yield from ("a", "b")
        releasing.append(asyncio.ensure_future(release.signal()))  # once map has read both

    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        urgent = [r async for r, _ in coord.map(items(), TaskPrefs.Required("c"), priority=1, window=3)]
        assert urgent == ["a", "b"]
        await asyncio.gather(running, *low, *releasing)
    history, _ = await coord.call("history", TaskPrefs.Required("c"))
    assert history[written : written + 2] == ["a", "b"]


def test_blocking_facade(tmp_path: Path) -> None:
    """Test priority, retries and recycling through BlockingCoordinator."""
    with BlockingCoordinator(max_tasks_per_worker=20) as coord:
        coord.add_worker("w", _shapes.PidCounter())
        coord.add_worker("f", _shapes.lost_until, max_tasks=10_000)
        assert coord.call((str(tmp_path / "a"), 1, "exit"), TaskPrefs.Required("f"), retries=1)[0] == 2
        assert coord.run((str(tmp_path / "b"), 1, "exit"), TaskPrefs.Required("f"), retries=1).result()[0] == 2
        done = 0
        while coord.stats()["w"].recycles < 1:
            results = list(coord.map(range(50), TaskPrefs.Required("w"), priority=2, retries=1))
            assert len(results) == 50
            done += 50
        stats = coord.stats()
        assert (stats["w"].completed, stats["w"].failed, stats["w"].restarts) == (done, 0, 0)
        assert (stats["f"].retries, stats["f"].recycles) == (2, 0)


async def test_stream_priority_overtakes_queued_tasks(coord: Coordinator, beacons: BeaconFactory) -> None:
    """Test that a stream of a higher priority runs before the tasks queued ahead of it,
    without preempting the running one."""
    w = TaskPrefs.Required("w")
    await coord.add_worker("w", _shapes.HistoryStreamer())
    started, release = beacons(), beacons()
    running = await coord.run(("hold", started.path, release.path), w)
    await started.wait()
    low = [await coord.run(i, w) for i in range(100)]
    written = (await coord.stats())["w"].in_flight
    urgent = coord.stream("urgent", w, priority=1)
    opening = asyncio.ensure_future(anext(urgent))
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        while coord.pending < 102:  # the stream is queued
            await asyncio.sleep(0)
        await release.signal()
        assert await opening == "urgent"
        await urgent.aclose()
        assert (await running)[0] == ["released"]
        await asyncio.gather(*low)
        [history], _ = await coord.call("history", w)
    assert history.index("urgent") == written
    assert [t for t in history if isinstance(t, int)] == list(range(100))


def test_blocking_priority_overtakes_queued_tasks(beacons: BeaconFactory) -> None:
    """Test that through BlockingCoordinator a task of a higher priority overtakes 1,000
    queued ones without preempting the running one."""
    started, release = beacons(), beacons()
    with BlockingCoordinator() as coord:
        coord.add_worker("w", _funcs.Counter())
        running = coord.run(("hold", started.path, release.path))
        _funcs.wait_beacon(started.path)
        low = [coord.run(i) for i in range(1000)]
        written = coord.stats()["w"].in_flight
        urgent = coord.run("urgent", priority=1)
        _funcs.signal_beacon(release.path)
        assert running.result(timeout=DEADLOCK_TIMEOUT)[0] == "released"
        for future in [urgent, *low]:
            future.result(timeout=DEADLOCK_TIMEOUT)
        history, _ = coord.call("history")
    assert history.index("urgent") == written
    assert [t for t in history if isinstance(t, int)] == list(range(1000))
