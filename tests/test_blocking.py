"""BlockingCoordinator through the public API, with real worker processes: the blocking
operations, many threads at once, the plain map iterator, errors, and closing."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import procoord
from procoord import (
    BlockingCoordinator,
    CoordinatorClosedError,
    NoWorkersError,
    SerializationError,
    TaskPrefs,
    TaskProcessError,
)
from procoord.interface import InterfaceClient

from . import _funcs
from ._run import run_python
from .conftest import DEADLOCK_TIMEOUT, Beacon, BeaconFactory


@pytest.fixture
def bc() -> Iterator[BlockingCoordinator]:
    with BlockingCoordinator() as c:
        yield c


def _wait(beacon: Beacon) -> None:
    asyncio.run(beacon.wait())


def _signal(beacon: Beacon) -> None:
    asyncio.run(beacon.signal())


@procoord.interface
class Greeter:
    async def greet(self, name: str) -> str:
        raise NotImplementedError


class EnglishGreeter(Greeter.Processor):  # type: ignore[name-defined,misc]
    async def greet(self, name: str) -> str:
        return f"hello {name}"


# -- the operations -----------------------------------------------------------------


def test_blocking_operations(bc: BlockingCoordinator) -> None:
    """Test add_worker, call, run (a concurrent Future), stats, workers and remove_worker without asyncio."""
    assert bc.add_worker("a", _funcs.double) is False
    assert bc.add_worker("b", _funcs.Counter("b")) is False
    assert bc.workers() == ["a", "b"] and len(bc) == 2 and "a" in bc
    assert bc.call(21, TaskPrefs.Required("a")) == (42, "a")
    future = bc.run(5, TaskPrefs.Required("b"))
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(DEADLOCK_TIMEOUT) == (5, "b")
    stats = bc.stats()
    assert stats["a"].completed == 1 and stats["b"].completed == 1
    assert bc.remove_worker("a") is True and bc.workers() == ["b"]
    assert bc.pending == 0 and not bc.closed


def test_blocking_factories(bc: BlockingCoordinator) -> None:
    """Test that registered factories work through the blocking facade."""
    bc.register("locker", _funcs.LockHolder, "L", scale=3)
    bc.add_worker("f", "locker")
    (label, value, _pid), worker = bc.call(5)
    assert (label, value, worker) == ("L", 15, "f")


def test_blocking_errors(bc: BlockingCoordinator) -> None:
    """Test that errors arrive as in the async API: from call, from future.result(), or at once from run."""
    with pytest.raises(NoWorkersError):
        bc.run(1)
    bc.add_worker("w", _funcs.raiser)
    with pytest.raises(TaskProcessError) as info:
        bc.call("value")
    assert isinstance(info.value.__cause__, ValueError) and info.value.worker == "w"
    future = bc.run("boom")
    with pytest.raises(TaskProcessError) as info:
        future.result(DEADLOCK_TIMEOUT)
    assert isinstance(info.value.__cause__, _funcs.Boom)
    with pytest.raises(SerializationError):
        bc.run(threading.Lock())
    assert bc.call("fine") == ("fine", "w")


def test_run_coroutine_reaches_the_whole_async_api(bc: BlockingCoordinator) -> None:
    """Test that run_coroutine runs any coroutine on the coordinator's loop: handles, interfaces."""
    bc.add_worker("w", _funcs.double)
    handle = bc.run_coroutine(bc.coordinator.run(4))
    assert bc.run_coroutine(handle.join()) == (8, "w")
    greeter = InterfaceClient(Greeter, bc.coordinator)
    bc.run_coroutine(greeter.add_worker("g", EnglishGreeter()))
    assert bc.run_coroutine(greeter.require("g").greet("bob").join()) == ("hello bob", "g")
    with pytest.raises(TimeoutError):
        bc.run_coroutine(asyncio.Event().wait(), timeout=0.05)  # never finishes


def test_future_cancel_cancels_a_queued_task(bc: BlockingCoordinator, beacons: BeaconFactory) -> None:
    """Test that cancelling the Future of a queued task cancels the task: it never runs."""
    bc.add_worker("w", _funcs.Counter())
    started, release = beacons(), beacons()
    held = bc.run(("hold", started.path, release.path))
    _wait(started)
    queued = bc.run("never")
    assert queued.cancel()
    _signal(release)
    assert held.result(DEADLOCK_TIMEOUT) == ("released", "w")
    history, _ = bc.call("history")
    assert "never" not in history
    assert bc.pending == 0


# -- many threads -----------------------------------------------------------------------


def test_many_threads_at_once(bc: BlockingCoordinator) -> None:
    """Test that many threads can call, run, map and read stats at the same time."""
    bc.add_worker("a", _funcs.double)
    bc.add_worker("b", _funcs.async_double)
    barrier = threading.Barrier(8)

    def client(k: int) -> list[int]:
        barrier.wait(DEADLOCK_TIMEOUT)
        got = []
        for i in range(30):
            x = k * 1000 + i
            if i % 3 == 0:
                got.append(bc.call(x)[0])
            elif i % 3 == 1:
                got.append(bc.run(x).result(DEADLOCK_TIMEOUT)[0])
            else:
                got.extend(r for r, _ in bc.map([x], window=2))
            bc.stats()
        return got

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(client, range(8)))
    for k, got in enumerate(results):
        assert got == [2 * (k * 1000 + i) for i in range(30)]
    stats = bc.stats()
    assert stats["a"].completed + stats["b"].completed == 8 * 30


# -- map ----------------------------------------------------------------------------------


def test_blocking_map(bc: BlockingCoordinator) -> None:
    """Test that map is a plain iterator, in order, with errors raised or yielded in place."""
    bc.add_worker("a", _funcs.raiser)
    bc.add_worker("b", _funcs.raiser)
    assert [r for r, _ in bc.map(range(50), window=8)] == list(range(50))
    assert sorted(r for r, _ in bc.map(range(50), ordered=False)) == list(range(50))
    out = list(bc.map(["x", "value", "y"], return_exceptions=True))
    assert out[0][0] == "x" and isinstance(out[1], TaskProcessError) and out[2][0] == "y"  # type: ignore[index]
    with pytest.raises(TaskProcessError):
        list(bc.map(["x", "value", "y"]))


def test_blocking_map_break_cancels_queued_tasks(bc: BlockingCoordinator, beacons: BeaconFactory) -> None:
    """Test that breaking out of a blocking map cancels the tasks it queued: they never run."""
    bc.add_worker("w", _funcs.Counter())
    started, release = beacons(), beacons()
    hold = ("hold", started.path, release.path)
    items = (hold if i == 1 else i for i in range(1_000_000))
    for result, _ in bc.map(items, window=6):
        assert result == 0
        _wait(started)
        break
    _signal(release)
    history, _ = bc.call("history")
    assert history == [0, hold, "history"]
    assert bc.pending == 0


# -- closing ------------------------------------------------------------------------------


def test_bad_arguments_raise_in_the_caller() -> None:
    """Test that a bad constructor argument raises in the caller and leaves no thread behind."""
    before = threading.active_count()
    with pytest.raises(ValueError, match="queue_threshold"):
        BlockingCoordinator(queue_threshold=0)
    assert threading.active_count() == before


def test_close_is_final_and_idempotent() -> None:
    """Test that close stops every worker and the loop thread, may be repeated, and refuses new work."""
    bc = BlockingCoordinator()
    bc.add_worker("w", _funcs.getpid)
    pid, _ = bc.call(0)
    bc.close()
    bc.close()
    assert bc.closed and bc.loop.is_closed() and not psutil.pid_exists(pid)
    with pytest.raises(CoordinatorClosedError):
        bc.call(1)
    with pytest.raises(CoordinatorClosedError):
        bc.add_worker("x", _funcs.double)


def test_error_in_with_block_drops_queued_work() -> None:
    """Test that an exception in the with block closes with cancel_pending: queued tasks fail at once."""
    with pytest.raises(RuntimeError, match="user error"), BlockingCoordinator() as bc:
        bc.add_worker("w", _funcs.spin)
        futures = [bc.run(0.01) for _ in range(300)]  # 3 s of work
        raise RuntimeError("user error")
    outcomes = [f.exception(DEADLOCK_TIMEOUT) for f in futures]
    assert all(e is None or isinstance(e, CoordinatorClosedError) for e in outcomes)
    assert sum(isinstance(e, CoordinatorClosedError) for e in outcomes) > 250


def test_collected_without_close_stops_its_workers() -> None:
    """Test that a facade dropped without close stops its workers and its thread."""
    bc = BlockingCoordinator()
    bc.add_worker("w", _funcs.getpid)
    pid, _ = bc.call(0)
    loop = bc.loop
    del bc
    gc.collect()
    assert loop.is_closed()  # its thread has ended
    psutil.wait_procs([psutil.Process(pid)] if psutil.pid_exists(pid) else [], timeout=DEADLOCK_TIMEOUT)
    assert not psutil.pid_exists(pid)


_FORGETFUL_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    import procoord

    def work(task):
        import os
        if task == "block":
            threading.Event().wait()  # a task that never ends
        return os.getpid()

    if __name__ == "__main__":
        if sys.argv[1] == "executor":
            ex = procoord.Executor(max_workers=1)
            print(ex.submit(work, 0).result(), flush=True)
            sys.exit()  # without shutdown()
        bc = procoord.BlockingCoordinator()
        bc.add_worker("w", work)
        pid, _ = bc.call(0)
        print(pid, flush=True)
        if sys.argv[1] == "busy":
            bc.run("block")
            bc.run("queued")
        # exits without close()
    """
)


@pytest.mark.parametrize("state", ["idle", "busy", "executor"])
def test_exit_without_close_is_prompt_and_leaves_no_worker(tmp_path: Path, state: str) -> None:
    """Test that a script exiting without close (or an executor's shutdown) exits
    promptly, quietly (nothing on stderr) and leaves no worker alive."""
    script = tmp_path / "forgetful.py"
    script.write_text(_FORGETFUL_SCRIPT)
    proc = run_python([str(script), state])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    pid = int(proc.stdout.split()[0])
    if psutil.pid_exists(pid):
        _, alive = psutil.wait_procs([psutil.Process(pid)], timeout=10)
        assert not alive, f"worker {pid} outlived its parent"
