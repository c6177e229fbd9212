"""Crashes, restarts, timeouts and cancellation, with real processes and signals."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import psutil
import pytest

from procoord import (
    Coordinator,
    NoWorkersError,
    TaskPrefs,
    TaskTimeoutError,
    WorkerLostError,
)

from . import _funcs
from .conftest import DEADLOCK_TIMEOUT, BeaconFactory


async def wait_for_state(coord: Coordinator, ident: object, *states: str, restarts: int | None = None) -> None:
    """Poll stats() against a deadline until the worker is in one of ``states``."""
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        while True:
            s = (await coord.stats())[ident]
            if s.state in states and (restarts is None or s.restarts >= restarts):
                return
            await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    ("kind", "exit_words"),
    [
        ("_exit", "exit code 42"),
        ("kill", "signal 9"),
        ("segv", "signal 11"),
    ],
    ids=["os._exit", "SIGKILL-inside", "segfault"],
)
async def test_worker_death_fails_only_running_task(
    coord: Coordinator, beacons: BeaconFactory, kind: str, exit_words: str
) -> None:
    """Test that a dying worker fails its running task with WorkerLostError and is restarted."""
    await coord.add_worker("w", _funcs.started_then)
    old_pid = (await coord.stats())["w"].pid
    started = beacons()
    doomed = await coord.run((started.path, kind, None))
    with pytest.raises(WorkerLostError) as info:
        await asyncio.gather(started.wait(), doomed.join())
    err = info.value
    assert err.worker == "w" and err.pid == old_pid
    assert exit_words in str(err) and repr("w") in str(err)
    await wait_for_state(coord, "w", "idle", restarts=1)
    stats = (await coord.stats())["w"]
    assert stats.restarts == 1 and stats.pid != old_pid and stats.failed == 1
    second = beacons()
    _, (result, worker) = await asyncio.gather(second.wait(), coord.call((second.path, "fine", None)))
    assert (result, worker) == ("fine", "w")


async def test_sigkill_from_outside_reroutes_queued(beacons: BeaconFactory) -> None:
    """Test that queued Any tasks go to another worker and Required ones wait for the restart."""
    started, release = beacons(), beacons()
    async with Coordinator() as coord:
        await coord.add_worker("victim", _funcs.Counter())
        await coord.add_worker("other", _funcs.Counter())
        running = await coord.run(("hold", started.path, release.path), TaskPrefs.Required("victim"))
        await started.wait()
        required = [await coord.run(("req", i), TaskPrefs.Required("victim")) for i in range(3)]
        preferred = [await coord.run(("pref", i), TaskPrefs.Preferred("victim")) for i in range(2)]
        pid = (await coord.stats())["victim"].pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerLostError, match="signal 9"):
            await running
        assert [await h for h in required] == [(("req", i), "victim") for i in range(3)]
        for i, h in enumerate(preferred):
            assert (await h)[0] == ("pref", i)
        stats = (await coord.stats())["victim"]
        assert stats.restarts == 1 and stats.pid != pid


async def test_idle_worker_killed_is_restarted(coord: Coordinator) -> None:
    """Test that a worker killed while idle comes back before the next task needs it."""
    await coord.add_worker("w", _funcs.getpid)
    pid = (await coord.stats())["w"].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await wait_for_state(coord, "w", "idle", restarts=1)
    new_pid, _ = await coord.call(None, TaskPrefs.Required("w"))
    assert new_pid != pid
    assert (await coord.stats())["w"].failed == 0


async def test_restart_false_marks_failed(beacons: BeaconFactory) -> None:
    """Test add_worker(restart=False): a crash marks the worker failed; Required fails, Any moves on."""
    async with Coordinator() as coord:
        await coord.add_worker("once", _funcs.started_then, restart=False)
        started = beacons()
        h = await coord.run((started.path, "_exit", None))
        with pytest.raises(WorkerLostError):
            await asyncio.gather(started.wait(), h.join())
        await wait_for_state(coord, "once", "failed")
        with pytest.raises(WorkerLostError):
            await coord.run(1, TaskPrefs.Required("once"))
        with pytest.raises(NoWorkersError):
            await coord.run(1)
        await coord.add_worker("fresh", _funcs.double)
        assert await coord.call(2) == (4, "fresh")


async def test_crash_loop_gives_up(beacons: BeaconFactory) -> None:
    """Test that too many crashes in the window mark the worker failed instead of restarting forever."""
    async with Coordinator(restart_limit=2, restart_window=60) as coord:
        await coord.add_worker("flaky", _funcs.raiser)
        for _ in range(3):
            with pytest.raises(WorkerLostError):
                await coord.call("_exit", TaskPrefs.Required("flaky"))
            await wait_for_state(coord, "flaky", "idle", "failed")
        await wait_for_state(coord, "flaky", "failed")
        assert (await coord.stats())["flaky"].restarts == 2


async def test_timeout_restarts_worker_and_keeps_queue(coord: Coordinator) -> None:
    """Test TaskTimeoutError (also a TimeoutError) and that the next queued task still runs."""
    await coord.add_worker("w", _funcs.sleeper)
    pid = (await coord.stats())["w"].pid
    slow = await coord.run(3600.0, timeout=0.3)
    after = await coord.run(0.0, TaskPrefs.Required("w"))
    with pytest.raises(TaskTimeoutError) as info:
        await slow
    assert isinstance(info.value, TimeoutError) and info.value.worker == "w"
    assert await after == (0.0, "w")
    stats = (await coord.stats())["w"]
    assert stats.restarts == 1 and stats.pid != pid


async def test_default_task_timeout() -> None:
    """Test Coordinator(task_timeout=...) and that a per-task timeout overrides it."""
    async with Coordinator(task_timeout=0.3) as coord:
        await coord.add_worker("w", _funcs.sleeper)
        with pytest.raises(TaskTimeoutError):
            await coord.call(3600.0)
        assert await coord.call(0.5, timeout=30) == (0.5, "w")


async def test_timeout_counts_from_start_not_from_run(coord: Coordinator) -> None:
    """Test that a queued task's timeout starts when it starts running."""
    await coord.add_worker("w", _funcs.sleeper)
    handles = [await coord.run(0.2, timeout=0.5) for _ in range(4)]  # 0.8 s in all, 0.2 s each
    assert [await h for h in handles] == [(0.2, "w")] * 4


async def test_cancel_running_async_task(coord: Coordinator, beacons: BeaconFactory) -> None:
    """Test that cancelling a running async do_work cancels it inside the worker, without a restart."""
    await coord.add_worker("a", _funcs.async_hold)
    started, cancelled = beacons(), beacons()
    h = await coord.run((started.path, cancelled.path))
    await started.wait()
    assert h.cancel() is True
    await cancelled.wait()  # the coroutine saw CancelledError in the worker
    with pytest.raises(asyncio.CancelledError):
        await h
    more, more_cancelled = beacons(), beacons()
    follow = await coord.run((more.path, more_cancelled.path))
    await more.wait()  # the same worker process took the next task
    assert follow.cancel() is True
    await more_cancelled.wait()
    stats = (await coord.stats())["a"]
    assert stats.restarts == 0


async def test_cancel_running_sync_task_returns_false(coord: Coordinator, beacons: BeaconFactory) -> None:
    """Test that a running sync do_work cannot be cancelled: cancel() is False and it finishes."""
    await coord.add_worker("s", _funcs.hold)
    started, release = beacons(), beacons()
    h = await coord.run((started.path, release.path))
    await started.wait()
    assert h.cancel() is False
    await release.signal()
    assert await h == ("released", "s")


async def test_chaos_every_handle_resolves(coord: Coordinator) -> None:
    """Test random SIGKILLs under load: every handle resolves, results are right, only running tasks are lost."""
    import random

    rng = random.Random(1234)
    for ident in ("a", "b", "c"):
        await coord.add_worker(ident, _funcs.spin_then_square)
    handles = [await coord.run((0.0005, i)) for i in range(3000)]
    kills = 0
    done_before = 0
    for _ in range(6):
        # kill once some progress was made since the last kill: wait for a later task's
        # handle (Any tasks start in submission order)
        target = handles[min(done_before + 200, len(handles) - 1)]
        async with asyncio.timeout(DEADLOCK_TIMEOUT):
            with contextlib.suppress(WorkerLostError):  # it may be one that was running
                await target.join()
        done_before = sum(h.done() for h in handles)
        stats = await coord.stats()
        live = [s for s in stats.values() if s.state in ("idle", "busy") and s.pid]
        victim = rng.choice(live)
        try:
            os.kill(victim.pid, signal.SIGKILL)  # type: ignore[arg-type]
            kills += 1
        except ProcessLookupError:
            pass
    results = await asyncio.gather(*(h.join() for h in handles), return_exceptions=True)
    lost = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(r, WorkerLostError) for r in lost), lost[:3]
    assert len(lost) <= kills
    for i, r in enumerate(results):
        if not isinstance(r, BaseException):
            assert r[0] == i * i
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        while True:
            stats = await coord.stats()
            if all(s.state in ("idle", "busy") for s in stats.values()):
                break
            await asyncio.sleep(0.01)
    assert sum(s.restarts for s in stats.values()) == kills
    for s in stats.values():
        assert s.pid is not None and psutil.pid_exists(s.pid)


async def test_failed_restarts_end_in_failed_state(tmp_path: Path) -> None:
    """Test that a worker whose restarts keep failing is marked failed and its Required tasks fail."""
    async with Coordinator(restart_limit=2) as coord:
        coord.register("once", _funcs.build_once, str(tmp_path / "built"))
        await coord.add_worker("w", "once")
        await coord.add_worker("spare", _funcs.double)
        pid = (await coord.stats())["w"].pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await wait_for_state(coord, "w", "failed")
        with pytest.raises(WorkerLostError, match="not restarted"):
            await coord.call(1, TaskPrefs.Required("w"))
        assert await coord.call(2) == (4, "spare")
        assert (await coord.stats())["w"].restarts == 0
