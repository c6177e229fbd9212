"""The contract at its edges: cancellation by the caller, many cancels, close and remove
while something else is under way, foreign loops and threads."""

from __future__ import annotations

import asyncio
import gc
import os
import pickle
import signal
from pathlib import Path

import pytest

from procoord import (
    BlockingCoordinator,
    Coordinator,
    CoordinatorClosedError,
    NoSuchWorkerError,
    TaskPrefs,
    WorkerLostError,
)

from . import _funcs
from ._run import alive, end_script, start_held_script
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


async def test_a_gather_of_calls_under_a_timeout_cancels_every_queued_task(beacons: BeaconFactory) -> None:
    """Test that calls gathered under ``asyncio.timeout`` (a gather takes each call as a
    future) are cancelled with it: the queued ones never run, nothing stays pending."""
    started, release = beacons(), beacons()
    async with Coordinator() as coord:
        await coord.add_worker("h", _funcs.Counter())
        held = await coord.run(("hold", started.path, release.path), TaskPrefs.Required("h"))
        await started.wait()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await asyncio.gather(*(coord.call(("never", i), TaskPrefs.Required("h")) for i in range(50)))
        await release.signal()
        assert await held == ("released", "h")
        history, _ = await coord.call("history", TaskPrefs.Required("h"))
        assert [t for t in history if t[0] == "never"] == []
        await _until(lambda: coord.pending == 0)


async def test_a_call_waiting_for_room_is_cancelled_with_its_caller(beacons: BeaconFactory) -> None:
    """Test that a call made while ``max_pending`` tasks are unfinished waits for room
    (as a task of create_task, or a future), and that cancelling it then queues nothing."""
    started, release = beacons(), beacons()
    async with Coordinator(max_pending=1) as coord:
        await coord.add_worker("h", _funcs.Counter())
        held = await coord.run(("hold", started.path, release.path))
        await started.wait()
        waiting = asyncio.create_task(coord.call(("never", 1)))
        later = coord.call(("later", 2))
        await asyncio.sleep(0)
        assert coord.pending == 1 and not waiting.done() and not later.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await release.signal()
        assert await held == ("released", "h")
        assert await later == (("later", 2), "h")
        history, _ = await coord.call("history")
        assert ("never", 1) not in history and ("later", 2) in history
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


async def test_close_during_add_worker_leaves_no_worker(beacons: BeaconFactory, tmp_path: Path) -> None:
    """Test that close() while an add_worker is in flight waits for that worker and ends
    it: add_worker raises CoordinatorClosedError, and once close returns its process is gone."""
    started, release = beacons(), beacons()
    pid_file = tmp_path / "pid"
    coord = Coordinator()
    await coord.add_worker("w", _funcs.double)
    coord.register("slow", _funcs.signalling_blocked_factory, (started.path, release.path, str(pid_file)))
    adding = asyncio.ensure_future(coord.add_worker("late", "slow"))
    await started.wait()
    pid = int(pid_file.read_text())
    closing = asyncio.ensure_future(coord.close())
    await release.signal()
    await asyncio.wait_for(closing, DEADLOCK_TIMEOUT)
    assert not alive(pid)
    with pytest.raises(CoordinatorClosedError):
        await adding


async def test_cancelled_close_can_be_finished_later(beacons: BeaconFactory) -> None:
    """Test that a close() cancelled by wait_for leaves the job to a later close(timeout=),
    which kills the busy worker; meanwhile the finalizer stays armed."""
    started, release = beacons(), beacons()
    coord = Coordinator()
    await coord.add_worker("h", _funcs.hold)
    running = await coord.run((started.path, release.path))
    await started.wait()
    pid = (await coord.stats())["h"].pid
    assert pid is not None
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(coord.close(), 0.05)
    assert coord.closed and alive(pid)
    await coord.close(timeout=0.5)
    assert not alive(pid)
    with pytest.raises(WorkerLostError):
        await running


async def test_cancelled_remove_worker_still_retires_it(beacons: BeaconFactory) -> None:
    """Test that a remove_worker cancelled by wait_for leaves the retirement going on:
    the worker is unlisted, finishes its task and exits; close() waits for it."""
    started, release = beacons(), beacons()
    async with Coordinator() as coord:
        await coord.add_worker("h", _funcs.hold)
        running = await coord.run((started.path, release.path))
        await started.wait()
        pid = (await coord.stats())["h"].pid
        assert pid is not None
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(coord.remove_worker("h"), 0.05)
        assert coord.workers() == [] and alive(pid)
        await release.signal()
        assert await running == ("released", "h")
        await coord.close()
        assert not alive(pid)


async def test_non_daemon_thread_does_not_hang_remove_or_close(coord: Coordinator) -> None:
    """Test that a processor that started a non-daemon thread does not make
    remove_worker or close wait forever for its process."""
    await coord.add_worker("a", _funcs.start_lingering_thread)
    await coord.add_worker("b", _funcs.start_lingering_thread)
    assert await coord.call(1, TaskPrefs.Required("a")) == (1, "a")
    assert await coord.call(2, TaskPrefs.Required("b")) == (2, "b")
    pids = [s.pid for s in (await coord.stats()).values()]
    assert await asyncio.wait_for(coord.remove_worker("a"), DEADLOCK_TIMEOUT)
    await asyncio.wait_for(coord.close(), DEADLOCK_TIMEOUT)
    assert not any(alive(pid) for pid in pids if pid is not None)


async def test_remove_worker_runs_the_tasks_it_sent(beacons: BeaconFactory) -> None:
    """Test that remove_worker of a busy worker runs the Required tasks already sent to
    it (not handed back to fail with NoSuchWorkerError); only tasks never sent fail."""
    started, release = beacons(), beacons()
    async with Coordinator() as coord:
        await coord.add_worker("h", _funcs.Counter())
        held = await coord.run(("hold", started.path, release.path), TaskPrefs.Required("h"))
        await started.wait()
        behind = [await coord.run(("sent", i), TaskPrefs.Required("h")) for i in range(3)]
        sent = (await coord.stats())["h"].in_flight - 1
        assert sent >= 1
        removing = asyncio.ensure_future(coord.remove_worker("h"))
        await _until(lambda: "h" not in coord)
        await release.signal()
        assert await removing is True
        assert await held == ("released", "h")
        outcomes = await asyncio.gather(*(h.join() for h in behind), return_exceptions=True)
        assert outcomes[:sent] == [(("sent", i), "h") for i in range(sent)]
        assert all(isinstance(o, NoSuchWorkerError) for o in outcomes[sent:])


def test_coordinator_refuses_another_loop_or_thread() -> None:
    """Test that a coordinator used from a second asyncio.run, or from another thread,
    raises RuntimeError naming the fix at once, and that nothing hangs."""
    box = {"coord": Coordinator()}  # dropped at the end: its finalizer stops the workers

    async def first() -> None:
        coord = box["coord"]
        await coord.add_worker("w", _funcs.double)
        assert await coord.call(2) == (4, "w")

        def from_thread() -> BaseException | None:
            try:
                coord.run_nowait(1)
            except RuntimeError as exc:
                return exc
            return None

        error = await asyncio.to_thread(from_thread)
        assert isinstance(error, RuntimeError) and "BlockingCoordinator" in str(error)

        def other_loop() -> None:
            with pytest.raises(RuntimeError, match="BlockingCoordinator"):
                asyncio.run(coord.run(1))

        await asyncio.to_thread(other_loop)
        assert await coord.call(3) == (6, "w")

    asyncio.run(first())

    async def second() -> None:
        coord = box["coord"]
        with pytest.raises(RuntimeError, match="one Coordinator per event loop"):
            await coord.call(2)
        with pytest.raises(RuntimeError, match="BlockingCoordinator"):
            await coord.close()

    asyncio.run(second())
    box.clear()
    gc.collect()  # the finalizer stops the workers (the no-leak check waits for them)


async def test_a_pending_handle_awaited_on_another_loop_says_so(beacons: BeaconFactory) -> None:
    """Test that awaiting a handle from another event loop (in another thread) while its
    task runs raises RuntimeError naming the fix instead of hanging, and that the task
    still gives its result on its own loop."""
    started, release = beacons(), beacons()
    async with Coordinator() as coord:
        await coord.add_worker("w", _funcs.hold)
        handle = coord.run_nowait((started.path, release.path))
        await started.wait()

        def from_other_loop() -> None:
            async def join() -> object:
                return await handle

            with pytest.raises(RuntimeError, match="BlockingCoordinator"):
                asyncio.run(join())

        await asyncio.to_thread(from_other_loop)
        assert not handle.done()
        await release.signal()
        async with asyncio.timeout(DEADLOCK_TIMEOUT):
            assert (await handle)[1] == "w"


INTERRUPTED_SCRIPT = """
import logging, sys
from procoord import BlockingCoordinator
from tests import _funcs

logging.basicConfig(level=logging.WARNING, format="%(message)s")
with BlockingCoordinator() as bc:
    bc.add_worker("w", _funcs.hold)
    print(bc.stats()["w"].pid, flush=True)
    bc.call((sys.argv[1], sys.argv[2]))  # never released: it runs until killed
"""


def test_blocking_ctrl_c_gives_running_tasks_the_grace_then_kills(beacons: BeaconFactory) -> None:
    """Test that a BlockingCoordinator left by Ctrl-C kills a long running task after
    the same grace as async with, instead of waiting for it to end."""
    proc, worker_pid = start_held_script(INTERRUPTED_SCRIPT, beacons)
    try:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=DEADLOCK_TIMEOUT)
        assert "KeyboardInterrupt" in stderr and "did not stop in time" in stderr
        assert not alive(worker_pid)
    finally:
        end_script(proc)


def test_blocking_ctrl_c_again_right_after_the_warning_exits_at_once(beacons: BeaconFactory) -> None:
    """Test that a second Ctrl-C arriving as the warning is written (before the close
    begins to wait) also kills the workers and exits, rather than waiting for the task."""
    again = INTERRUPTED_SCRIPT.replace(
        'logging.basicConfig(level=logging.WARNING, format="%(message)s")',
        """logging.basicConfig(level=logging.WARNING, format="%(message)s")
class CtrlCAgain(logging.Handler):
    def emit(self, record):
        if "Ctrl-C again" in record.getMessage():
            raise KeyboardInterrupt
logging.getLogger("procoord").addHandler(CtrlCAgain())""",
    )
    proc, worker_pid = start_held_script(again, beacons)
    try:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=DEADLOCK_TIMEOUT)
        assert "KeyboardInterrupt" in stderr and "did not stop in time" not in stderr, stderr
        assert not alive(worker_pid)
    finally:
        end_script(proc)


def test_blocking_second_ctrl_c_exits_at_once(beacons: BeaconFactory) -> None:
    """Test that a second Ctrl-C during that grace kills the workers and exits."""
    proc, worker_pid = start_held_script(INTERRUPTED_SCRIPT, beacons)
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        before = []
        while not before or "Ctrl-C again" not in before[-1]:
            before.append(proc.stderr.readline())
            assert before[-1], "".join(before)
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=DEADLOCK_TIMEOUT)
        stderr = "".join(before) + rest
        assert "KeyboardInterrupt" in stderr and "did not stop in time" not in stderr, stderr
        assert not alive(worker_pid)
    finally:
        end_script(proc)
