"""Collaboration tests of routing, dispatch and life cycle on the in-memory backend:
the coordinator's logic with real frames and the real worker core, without processes.

Processors here are module-level functions, so the worker (in this same process and
loop) and the test share the gates below: a task can be held and released exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from procoord import (
    Coordinator,
    CoordinatorClosedError,
    NoSuchWorkerError,
    TaskPrefs,
    TaskProcessError,
    TaskTimeoutError,
    WorkerStartError,
)
from procoord.backends.inline import InlineBackend

GATES: dict[str, asyncio.Event] = {}
RAN: list[Any] = []


def gate(name: str) -> asyncio.Event:
    """The gate of that name (made on first use)."""
    return GATES.setdefault(name, asyncio.Event())


async def work(task: Any) -> Any:
    """Record the task; ("wait", gate, value) waits for the gate, ("fail", msg) raises."""
    RAN.append(task)
    if isinstance(task, tuple) and task[0] == "wait":
        gate(task[1] + ":started").set()
        await gate(task[1]).wait()
        return task[2]
    if isinstance(task, tuple) and task[0] == "fail":
        raise ValueError(task[1])
    return task


def broken_factory() -> Any:
    raise RuntimeError("no model here")


@pytest.fixture(autouse=True)
def fresh() -> None:
    GATES.clear()
    RAN.clear()


@pytest.fixture
async def icoord() -> AsyncIterator[Coordinator]:
    async with Coordinator(backend=InlineBackend()) as c:
        yield c


async def test_routing_and_preferred_threshold(icoord: Coordinator) -> None:
    """Test Required and Preferred routing, and Preferred falling back past its threshold."""
    await icoord.add_worker("a", work)
    await icoord.add_worker("b", work)
    assert await icoord.call(1, TaskPrefs.Required("b")) == (1, "b")
    held = [await icoord.run(("wait", f"g{i}", i), TaskPrefs.Preferred("a")) for i in range(3)]
    await gate("g0:started").wait()
    overflow = await icoord.run("x", TaskPrefs.Preferred("a"))  # a has 3 queued: the threshold
    assert await overflow == ("x", "b")
    for i in range(3):
        gate(f"g{i}").set()
    assert [await h for h in held] == [(0, "a"), (1, "a"), (2, "a")]
    stats = await icoord.stats()
    assert stats["a"].backend == "inline" and stats["a"].completed == 3 and stats["b"].completed == 2


async def test_errors_and_fifo_state(icoord: Coordinator) -> None:
    """Test that tasks run in FIFO order and an error record becomes TaskProcessError."""
    await icoord.add_worker("w", work)
    handles = [await icoord.run(i, TaskPrefs.Required("w")) for i in range(50)]
    assert [v for v, _ in await asyncio.gather(*(h.join() for h in handles))] == list(range(50))
    assert list(range(50)) == RAN
    with pytest.raises(TaskProcessError) as info:
        await icoord.call(("fail", "boom"))
    assert isinstance(info.value.__cause__, ValueError) and "boom" in info.value.remote_traceback


async def test_remove_worker_reroutes_and_fails_required(icoord: Coordinator) -> None:
    """Test that removing a busy worker lets it finish its running task and the ones
    already sent to it, moves queued Any tasks to another worker and fails queued
    Required ones."""
    await icoord.add_worker("a", work)
    running = await icoord.run(("wait", "r", "done"), TaskPrefs.Required("a"))
    await gate("r:started").wait()
    await icoord.add_worker("b", work)
    required = [await icoord.run(("req", i), TaskPrefs.Required("a")) for i in range(10)]
    sent = (await icoord.stats())["a"].in_flight - 1
    anyone = [await icoord.run(("wait", "b", i), TaskPrefs.Any) for i in range(2)]
    removing = asyncio.ensure_future(icoord.remove_worker("a"))
    gate("b").set()
    assert [await h for h in anyone] == [(0, "b"), (1, "b")]
    gate("r").set()
    assert await removing is True
    assert await running == ("done", "a")
    outcomes = await asyncio.gather(*(h.join() for h in required), return_exceptions=True)
    assert outcomes[:sent] == [(("req", i), "a") for i in range(sent)]
    assert all(isinstance(o, NoSuchWorkerError) for o in outcomes[sent:]) and sent < 10
    assert icoord.workers() == ["b"] and icoord.pending == 0


async def test_replacing_a_worker_keeps_its_queue(icoord: Coordinator) -> None:
    """Test that a worker replaced under the same ident hands its queued tasks to the new one."""
    await icoord.add_worker("w", work)
    first = await icoord.run(("wait", "first", 1), TaskPrefs.Required("w"))
    await gate("first:started").wait()
    queued = [await icoord.run(i, TaskPrefs.Required("w")) for i in range(20)]
    assert await icoord.add_worker("w", work) is True
    gate("first").set()
    assert await first == (1, "w")
    assert [v for v, _ in await asyncio.gather(*(h.join() for h in queued))] == list(range(20))


async def test_cancel_queued_and_running(icoord: Coordinator) -> None:
    """Test that a cancelled queued task never runs and a running async one is cancelled."""
    await icoord.add_worker("w", work)
    running = await icoord.run(("wait", "never", 0), TaskPrefs.Required("w"))
    await gate("never:started").wait()
    queued = [await icoord.run(("q", i), TaskPrefs.Required("w")) for i in range(100)]
    assert all(h.cancel() for h in reversed(queued))
    assert running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert await icoord.call("after") == ("after", "w")
    assert not [t for t in RAN if isinstance(t, tuple) and t[0] == "q"]
    assert icoord.pending == 0


async def test_timeout_restarts_the_worker(icoord: Coordinator) -> None:
    """Test that a timed-out task fails with TaskTimeoutError and the worker is restarted."""
    await icoord.add_worker("w", work)
    with pytest.raises(TaskTimeoutError):
        await icoord.call(("wait", "forever", 0), timeout=0.01)
    assert await icoord.call("next") == ("next", "w")
    assert (await icoord.stats())["w"].restarts == 1


async def test_close_cancel_pending_and_back_pressure() -> None:
    """Test run_nowait's QueueFull at max_pending and close(cancel_pending=True)."""
    async with Coordinator(backend=InlineBackend(), max_pending=3) as coord:
        await coord.add_worker("w", work)
        running = coord.run_nowait(("wait", "hold", 0))
        queued = [coord.run_nowait(i) for i in range(2)]
        with pytest.raises(asyncio.QueueFull):
            coord.run_nowait("one too many")
        await gate("hold:started").wait()
        closing = asyncio.ensure_future(coord.close(cancel_pending=True))
        for handle in queued:
            with pytest.raises(CoordinatorClosedError):
                await handle
        gate("hold").set()
        await closing
        assert await running == (0, "w")


async def test_start_error(icoord: Coordinator) -> None:
    """Test that a factory raising in the worker gives WorkerStartError with its traceback."""
    icoord.register("broken", broken_factory)
    with pytest.raises(WorkerStartError, match="no model here") as info:
        await icoord.add_worker("x", "broken")
    assert "RuntimeError" in info.value.remote_traceback and icoord.workers() == []
