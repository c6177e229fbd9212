"""The contract at its edges: cancellation by the caller, many cancels, close and remove
while something else is under way, foreign loops and threads."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal

import pytest

from procoord import BlockingCoordinator, Coordinator, TaskPrefs, WorkerLostError

from . import _funcs
from .conftest import DEADLOCK_TIMEOUT, BeaconFactory

# Enough queued handles that cancelling them one by one, last to first, takes minutes
# when each cancel scans its queue.
MANY = 100_000


async def _until(condition: object) -> None:
    """Let the loop turn until ``condition()`` holds (bounded by DEADLOCK_TIMEOUT)."""
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0)


async def test_cancelling_many_queued_handles(beacons: BeaconFactory) -> None:
    """Test that 100,000 queued handles cancel one by one, last to first, and none runs."""
    started, release = beacons(), beacons()
    async with Coordinator() as coord:
        await coord.add_worker("h", _funcs.Counter())
        held = await coord.run(("hold", started.path, release.path), TaskPrefs.Required("h"))
        await started.wait()
        handles = [coord.run_nowait(("never", i), TaskPrefs.Required("h")) for i in range(MANY)]
        shared = [coord.run_nowait(("never", i)) for i in range(1000)]
        assert all(h.cancel() for h in reversed(handles))
        assert all(h.cancel() for h in reversed(shared))
        assert all(h.done() for h in handles)
        await release.signal()
        assert await held == ("released", "h")
        history, _ = await coord.call("history", TaskPrefs.Required("h"))
        assert [t for t in history if t[0] == "never"] == []
        await _until(lambda: coord.pending == 0)


async def test_cancelled_call_cancels_its_queued_task(beacons: BeaconFactory) -> None:
    """Test that cancelling the caller awaiting call() cancels the queued task: it never runs."""
    started, release = beacons(), beacons()
    async with Coordinator() as coord:
        await coord.add_worker("h", _funcs.Counter())
        held = await coord.run(("hold", started.path, release.path), TaskPrefs.Required("h"))
        await started.wait()
        caller = asyncio.ensure_future(coord.call(("never", 1), TaskPrefs.Required("h")))
        await _until(lambda: coord.pending == 2)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await release.signal()
        assert await held == ("released", "h")
        history, _ = await coord.call("history", TaskPrefs.Required("h"))
        assert ("never", 1) not in history
        assert coord.pending == 0


async def test_call_under_timeout_cancels_running_async_task(beacons: BeaconFactory) -> None:
    """Test that a call() whose caller times out cancels the running async do_work in its worker."""
    started, cancelled = beacons(), beacons()
    async with Coordinator() as coord:
        await coord.add_worker("a", _funcs.async_hold)
        caller = asyncio.ensure_future(coord.call((started.path, cancelled.path)))
        await started.wait()
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await cancelled.wait()
        await _until(lambda: coord.pending == 0)
        assert (await coord.stats())["a"].state == "idle"


async def test_worker_lost_says_whether_the_task_ran(beacons: BeaconFactory) -> None:
    """Test that WorkerLostError.ran is True for the task running when its worker died,
    and False for tasks queued to that failed Required worker and for run() on it."""
    started, release = beacons(), beacons()
    async with Coordinator() as coord:
        await coord.add_worker("h", _funcs.Counter(), restart=False)
        running = await coord.run(("hold", started.path, release.path), TaskPrefs.Required("h"))
        await started.wait()
        queued = [await coord.run(("never", i), TaskPrefs.Required("h")) for i in range(3)]
        pid = (await coord.stats())["h"].pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerLostError) as info:
            await running
        assert info.value.ran is True
        for handle in queued:
            with pytest.raises(WorkerLostError) as info:
                await handle
            assert info.value.ran is False and "never ran" in str(info.value)
        with pytest.raises(WorkerLostError) as info:
            await coord.run(1, TaskPrefs.Required("h"))
        assert info.value.ran is False
        restored = pickle.loads(pickle.dumps(info.value))
        assert restored.ran is False and str(restored) == str(info.value)


async def test_run_nowait_says_busy_when_max_pending_is_reached(beacons: BeaconFactory) -> None:
    """Test that run_nowait raises QueueFull at once while max_pending tasks are
    unfinished (run waits instead), and takes tasks again once there is room."""
    started, release = beacons(), beacons()
    async with Coordinator(max_pending=2) as coord:
        await coord.add_worker("h", _funcs.Counter())
        held = coord.run_nowait(("hold", started.path, release.path))
        second = coord.run_nowait("second")
        with pytest.raises(asyncio.QueueFull, match="max_pending=2"):
            coord.run_nowait("third")
        await started.wait()
        await release.signal()
        assert await held == ("released", "h") and await second == ("second", "h")
        assert await coord.run_nowait("fourth") == ("fourth", "h")


def test_blocking_facade_has_the_whole_surface() -> None:
    """Test the facade's add_workers, run_batch, run_nowait, max_pending and close(timeout=)."""
    with BlockingCoordinator(max_pending=1) as bc:
        assert bc.max_pending == 1
        bc.register("doubler", lambda: _funcs.double)
        assert bc.add_workers("doubler", 2) == ["doubler-0", "doubler-1"]
        outcomes, worker = bc.run_batch([1, 2, 3]).result(DEADLOCK_TIMEOUT)
        assert outcomes == [(True, 2), (True, 4), (True, 6)] and worker in ("doubler-0", "doubler-1")
        assert bc.run_nowait(5).result(DEADLOCK_TIMEOUT)[0] == 10
        bc.close(timeout=DEADLOCK_TIMEOUT)
        assert bc.closed
