"""The Coordinator through its public API, with real worker processes."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest

import procoord
from procoord import (
    Coordinator,
    CoordinatorClosedError,
    NoSuchWorkerError,
    NoWorkersError,
    SerializationError,
    TaskPrefs,
    TaskProcessError,
    WorkerLostError,
    WorkerStartError,
)
from procoord.errors import RemoteTraceback

from . import _funcs
from .conftest import BeaconFactory

# -- processor forms ---------------------------------------------------------------


class LocalDoubler(procoord.TaskProcessor):
    """Defined in the test module: must work as a processor."""

    def __init__(self) -> None:
        self.seen = 0

    async def do_work(self, task: int) -> tuple[int, int]:
        self.seen += 1
        return task * 2, self.seen


async def test_taskprocessor_instance_keeps_state(coord: Coordinator) -> None:
    """Test that a TaskProcessor is rebuilt once in its worker and keeps state across tasks."""
    await coord.add_worker("w", LocalDoubler())
    results = [await coord.call(i) for i in range(5)]
    assert results == [((i * 2, i + 1), "w") for i in range(5)]


async def test_sync_taskprocessor(coord: Coordinator) -> None:
    """Test a TaskProcessor with a plain def do_work."""
    await coord.add_worker("s", _funcs.SyncCounter())
    for i in range(3):
        await coord.call(i)
    assert await coord.call("count") == (4, "s")


@pytest.mark.parametrize(
    "make",
    [
        lambda: lambda x: x * 2,
        lambda: _funcs.double,
        lambda: _funcs.async_double,
        lambda: functools.partial(lambda k, x: x * k, 2),
        lambda: (lambda k: lambda x: x * k)(2),  # a closure
    ],
    ids=["lambda", "function", "async-function", "partial", "closure"],
)
async def test_callable_processors(coord: Coordinator, make: object) -> None:
    """Test that any callable taking one task is a processor, sync or async."""
    await coord.add_worker("c", make())  # type: ignore[operator]
    assert await coord.call(21) == (42, "c")


async def test_factory_builds_unpicklable_processor_in_worker(coord: Coordinator) -> None:
    """Test that a registered factory runs inside the worker, with its bound arguments."""
    coord.register("locker", _funcs.LockHolder, "L", scale=3)
    await coord.add_worker("f", "locker")
    (label, value, pid), worker = await coord.call(5)
    assert (label, value, worker) == ("L", 15, "f")
    assert pid == (await coord.stats())["f"].pid != os.getpid()
    assert (await coord.stats())["f"].factory == "locker"


async def test_processor_defined_in_main(tmp_path: Path) -> None:
    """Test a processor class and a lambda defined in a script's __main__."""
    script = (
        "import asyncio, procoord\n"
        "class Tripler(procoord.TaskProcessor):\n"
        "    def do_work(self, x): return x * 3\n"
        "async def main():\n"
        "    async with procoord.Coordinator() as c:\n"
        "        await c.add_worker('t', Tripler())\n"
        "        await c.add_worker('l', lambda x: x + 1)\n"
        "        print((await c.call(2, procoord.TaskPrefs.Required('t')))[0],"
        " (await c.call(2, procoord.TaskPrefs.Required('l')))[0])\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n"
    )
    path = tmp_path / "script.py"
    path.write_text(script)
    proc = await asyncio.create_subprocess_exec(sys.executable, str(path), stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    assert out.decode().split() == ["6", "3"]


async def test_each_worker_is_its_own_process(coord: Coordinator) -> None:
    """Test one OS process per worker, none of them the parent."""
    await coord.add_worker(1, _funcs.getpid)
    await coord.add_worker(2, _funcs.getpid)
    pid1, _ = await coord.call(None, TaskPrefs.Required(1))
    pid2, _ = await coord.call(None, TaskPrefs.Required(2))
    assert len({pid1, pid2, os.getpid()}) == 3
    stats = await coord.stats()
    assert (stats[1].pid, stats[2].pid) == (pid1, pid2)


async def test_fifo_order_per_worker(coord: Coordinator) -> None:
    """Test that a worker handles its tasks one at a time in the order queued."""
    await coord.add_worker("w", _funcs.Counter())
    handles = [await coord.run(i, TaskPrefs.Required("w")) for i in range(200)]
    await asyncio.gather(*(h.join() for h in handles))
    history, _ = await coord.call("history", TaskPrefs.Required("w"))
    assert history[:-1] == list(range(200))


# -- routing -----------------------------------------------------------------------


async def test_required_goes_to_that_worker(coord: Coordinator) -> None:
    """Test Required routing, however long the queue."""
    await coord.add_worker("a", _funcs.double)
    await coord.add_worker("b", _funcs.double)
    handles = [await coord.run(i, TaskPrefs.Required("b")) for i in range(50)]
    assert {w for _, w in await asyncio.gather(*(h.join() for h in handles))} == {"b"}


async def test_preferred_uses_worker_until_threshold(beacons: BeaconFactory) -> None:
    """Test that Preferred falls back to Any once the worker's queue reaches the threshold."""
    started, release = beacons(), beacons()
    async with Coordinator(queue_threshold=2) as coord:
        await coord.add_worker("busy", _funcs.hold)
        await coord.add_worker("other", _funcs.double)
        blocker = await coord.run((started.path, release.path), TaskPrefs.Required("busy"))
        await started.wait()
        # queue_len of "busy" is 1 (< 2): Preferred still goes there
        first = await coord.run(1, TaskPrefs.Preferred("busy"))
        # now queue_len is 2 (not < 2): falls back to Any, which is "other"
        second = await coord.run(2, TaskPrefs.Preferred("busy"))
        assert await second == (4, "other")
        assert (await coord.stats())["busy"].queue_len == 2
        await release.signal()
        assert await blocker == ("released", "busy")
        # hold() returns a str, so "busy" cannot double; the task was bound there
        with pytest.raises(TaskProcessError):
            await first


async def test_preferred_unknown_falls_back_to_any(coord: Coordinator) -> None:
    """Test that Preferred of an unknown ident runs as Any."""
    await coord.add_worker("a", _funcs.double)
    assert await coord.call(4, TaskPrefs.Preferred("nope")) == (8, "a")


async def test_any_spreads_sequential_calls(coord: Coordinator) -> None:
    """Test that ties rotate: sequential small tasks reach every worker."""
    for ident in ("a", "b", "c"):
        await coord.add_worker(ident, _funcs.double)
    workers = [(await coord.call(i))[1] for i in range(30)]
    assert set(workers) == {"a", "b", "c"}
    stats = await coord.stats()
    assert all(s.ewma_ms is not None for s in stats.values())


async def test_any_avoids_slow_worker() -> None:
    """Test that Any sends most of a burst to the faster worker (score = queue x EWMA)."""
    async with Coordinator() as coord:
        await coord.add_worker("fast", functools.partial(_funcs.spin_then, 0.002))
        await coord.add_worker("slow", functools.partial(_funcs.spin_then, 0.032))  # 16x slower
        handles = [await coord.run(i) for i in range(200)]
        counts: dict[str, int] = {"fast": 0, "slow": 0}
        for h in handles:
            _, worker = await h
            counts[worker] += 1
        assert counts["fast"] > 3 * counts["slow"] > 0


async def test_prefs_values() -> None:
    """Test that TaskPrefs values compare by content and work with match."""
    assert TaskPrefs.Required("a") == TaskPrefs.Required("a") != TaskPrefs.Preferred("a")
    assert TaskPrefs.Any == TaskPrefs.Any

    def where(p: object) -> str:
        match p:
            case TaskPrefs.Any:
                return "any"
            case TaskPrefs.Preferred(ident):
                return f"prefer {ident}"
            case TaskPrefs.Required(ident):
                return f"require {ident}"
        return "?"

    assert [where(p) for p in (TaskPrefs.Any, TaskPrefs.Preferred(1), TaskPrefs.Required("x"))] == [
        "any",
        "prefer 1",
        "require x",
    ]


# -- errors from run ---------------------------------------------------------------


async def test_run_errors_queue_nothing(coord: Coordinator) -> None:
    """Test the errors run raises up front, each leaving nothing queued."""
    with pytest.raises(NoWorkersError):
        await coord.run(1)
    await coord.add_worker("w", _funcs.double)
    with pytest.raises(SerializationError) as info:
        await coord.run(threading.Lock())
    assert isinstance(info.value, TypeError)
    with pytest.raises(NoSuchWorkerError) as missing:
        await coord.run(1, TaskPrefs.Required("ghost"))
    assert isinstance(missing.value, KeyError) and "ghost" in str(missing.value)
    with pytest.raises(TypeError, match=r"prefs must be TaskPrefs\.Any, .* not 'w'"):
        await coord.run(1, "w")  # type: ignore[arg-type]
    assert coord.pending == 0
    assert (await coord.stats())["w"].queue_len == 0
    assert await coord.call(2) == (4, "w")


async def test_run_after_close() -> None:
    """Test CoordinatorClosedError after close."""
    coord = Coordinator()
    await coord.add_worker("w", _funcs.double)
    await coord.close()
    with pytest.raises(CoordinatorClosedError):
        await coord.run(1)
    with pytest.raises(CoordinatorClosedError):
        await coord.add_worker("x", _funcs.double)
    await coord.close()  # harmless


# -- task errors -------------------------------------------------------------------


async def test_task_error_carries_cause_and_traceback(coord: Coordinator) -> None:
    """Test TaskProcessError: .worker, .remote_traceback, the original as __cause__."""
    await coord.add_worker("w", _funcs.raiser)
    with pytest.raises(TaskProcessError) as info:
        await coord.call("boom")
    err = info.value
    assert err.worker == "w"
    assert isinstance(err.__cause__, _funcs.Boom)
    assert "raise Boom" in err.remote_traceback
    assert "boom" in str(err)
    assert await coord.call("fine") == ("fine", "w")  # the worker goes on


async def test_task_error_that_cannot_unpickle(coord: Coordinator) -> None:
    """Test an exception whose __init__ cannot be re-run: message and traceback still arrive."""
    await coord.add_worker("w", _funcs.raiser)
    with pytest.raises(TaskProcessError) as info:
        await coord.call("stubborn")
    assert isinstance(info.value.__cause__, RemoteTraceback)  # the worker's frames, as text
    assert "StubbornError" in str(info.value) and "stubborn 1 2" in str(info.value)
    assert "StubbornError" in info.value.remote_traceback


async def test_unpicklable_result_keeps_worker_state(coord: Coordinator) -> None:
    """Test that an unpicklable result fails that task only; state survives."""

    class Keeper(procoord.TaskProcessor):
        def __init__(self) -> None:
            self.n = 0

        def do_work(self, task: str) -> object:
            self.n += 1
            return threading.Lock() if task == "lock" else self.n

    await coord.add_worker("k", Keeper())
    assert await coord.call("x") == (1, "k")
    with pytest.raises(SerializationError) as info:
        await coord.call("lock")
    assert info.value.stage == "result"
    assert str(info.value) == (
        "could not serialize the result: cannot pickle it in the worker: TypeError: cannot pickle '_thread.lock' object"
    )
    assert await coord.call("x") == (3, "k")


async def test_task_that_fails_to_unpickle_in_worker(coord: Coordinator) -> None:
    """Test SerializationError for a task that pickles but cannot be rebuilt in the worker."""
    await coord.add_worker("w", _funcs.double)
    with pytest.raises(SerializationError) as info:
        await coord.call(_funcs.FailsOnUnpickle())
    assert info.value.stage == "task" and "cannot rebuild me here" in str(info.value)
    assert await coord.call(1) == (2, "w")


async def test_worker_output_does_not_corrupt_channel(coord: Coordinator) -> None:
    """Test that a processor printing to stdout and stderr is fine."""
    await coord.add_worker("p", _funcs.printer)
    for text in ("a", "b\n", "\x00\x01"):
        assert await coord.call(text) == (text, "p")


# -- join handles ------------------------------------------------------------------


async def test_join_handle_api(coord: Coordinator) -> None:
    """Test join, await, map, done and task_id."""
    await coord.add_worker("w", _funcs.double)
    h = await coord.run(3)
    assert isinstance(h.task_id, int)
    assert await h.join() == (6, "w")
    assert await h == (6, "w")
    assert h.done()
    mapped = (await coord.run(5)).map(lambda pair: pair[0] + 1).map(str)
    assert await mapped == "11"
    h2 = await coord.run(1)
    assert h2.task_id != h.task_id
    del h2  # dropping a handle unjoined is fine: the task still runs
    assert await coord.call(2) == (4, "w")


async def test_cancel_queued_task_never_runs(beacons: BeaconFactory) -> None:
    """Test that a cancelled queued task never runs and its awaiter sees CancelledError."""
    started, release = beacons(), beacons()
    async with Coordinator() as coord:
        await coord.add_worker("h", _funcs.Counter())
        held = await coord.run(("hold", started.path, release.path), TaskPrefs.Required("h"))
        await started.wait()
        queued = [await coord.run(("never", i), TaskPrefs.Required("h")) for i in range(5)]
        assert all(h.cancel() for h in queued)
        assert not queued[0].cancel()  # already cancelled
        with pytest.raises(asyncio.CancelledError):
            await queued[0]
        await release.signal()
        assert await held == ("released", "h")
        history, _ = await coord.call("history", TaskPrefs.Required("h"))
        assert [t for t in history if t[0] == "never"] == []
        assert coord.pending == 0


async def test_awaiter_cancellation_does_not_cancel_task(coord: Coordinator) -> None:
    """Test that cancelling the asyncio task awaiting a handle leaves the procoord task running."""
    await coord.add_worker("w", _funcs.sleeper)
    h = await coord.run(0.2)
    waiter = asyncio.ensure_future(h.join())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert await h == (0.2, "w")


# -- workers come and go -----------------------------------------------------------


async def test_add_worker_replaces_and_retires_old(coord: Coordinator) -> None:
    """Test that add_worker with a used ident returns True and the old process exits."""
    assert await coord.add_worker("w", _funcs.getpid) is False
    old_pid, _ = await coord.call(None)
    assert await coord.add_worker("w", _funcs.getpid) is True
    new_pid, _ = await coord.call(None)
    assert new_pid != old_pid
    psutil.wait_procs([psutil.Process(old_pid)] if psutil.pid_exists(old_pid) else [], timeout=10)
    assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == psutil.STATUS_ZOMBIE
    assert coord.workers() == ["w"]
    assert "w" in coord and "x" not in coord and len(coord) == 1


async def test_remove_worker(beacons: BeaconFactory) -> None:
    """Test remove_worker: finishes the running task and those already sent to the worker,
    re-routes Any, fails the Required tasks never sent, exits."""
    started, release = beacons(), beacons()
    async with Coordinator() as coord:
        assert await coord.remove_worker("nobody") is False
        await coord.add_worker("r", _funcs.hold)
        running = await coord.run((started.path, release.path), TaskPrefs.Required("r"))
        await started.wait()
        required = [await coord.run((started.path, release.path), TaskPrefs.Required("r")) for _ in range(3)]
        preferred = await coord.run(7, TaskPrefs.Preferred("r"))  # over the threshold: Any
        await coord.add_worker("other", _funcs.double)
        stats = (await coord.stats())["r"]
        pid, sent = stats.pid, stats.in_flight - 1
        assert pid is not None and sent < len(required)
        removal = asyncio.ensure_future(coord.remove_worker("r"))
        # Tasks still in the parent fail at once; those already in the worker's pipe run.
        with pytest.raises(NoSuchWorkerError):
            await required[-1]
        await release.signal()
        assert await running == ("released", "r")
        for h in required[:sent]:
            await started.wait()
            await release.signal()
            assert await h == ("released", "r")
        for h in required[sent:]:
            with pytest.raises(NoSuchWorkerError):
                await h
        assert await preferred == (14, "other")
        assert await removal is True
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        assert coord.workers() == ["other"]
        with pytest.raises(NoSuchWorkerError):
            await coord.run(1, TaskPrefs.Required("r"))


# -- start-up failures -------------------------------------------------------------


@pytest.mark.parametrize(
    ("processor", "register", "expect"),
    [
        ("nope", None, "no factory named 'nope'"),
        ("bad", _funcs.failing_factory, "factory refuses"),
        ("dies", _funcs.dying_factory, "exit code 7"),
        (_funcs.BadUnpickle(), None, "factory refuses"),
    ],
    ids=["unknown-factory", "factory-raises", "process-dies", "rebuild-raises"],
)
async def test_worker_start_error(coord: Coordinator, processor: object, register: object, expect: str) -> None:
    """Test WorkerStartError: clear reason, remote traceback, nothing left behind."""
    await coord.add_worker("ok", _funcs.double)
    if register is not None:
        coord.register(str(processor), register)  # type: ignore[arg-type]
    with pytest.raises(WorkerStartError) as info:
        await coord.add_worker("x", processor)
    assert expect in str(info.value)
    if expect == "factory refuses":
        assert "RuntimeError" in info.value.remote_traceback
    assert coord.workers() == ["ok"]
    assert await coord.call(1) == (2, "ok")


async def test_bad_processor_values(coord: Coordinator) -> None:
    """Test that a processor of no accepted form, or one that cannot pickle, is refused."""
    with pytest.raises(TypeError, match="processor must be"):
        await coord.add_worker("x", 42)
    with pytest.raises(SerializationError):
        await coord.add_worker("x", _funcs.Unpicklable().__reduce__)
    with pytest.raises(TypeError):
        await coord.add_worker(["unhashable"], _funcs.double)
    assert coord.workers() == []


# -- closing -----------------------------------------------------------------------


async def test_close_drains_then_stops_every_process() -> None:
    """Test that close lets queued tasks finish and no worker survives it."""
    coord = Coordinator()
    await coord.add_worker("a", _funcs.sleeper)
    await coord.add_worker("b", _funcs.sleeper)
    handles = [await coord.run(0.01) for _ in range(20)]
    pids = [s.pid for s in (await coord.stats()).values()]
    await coord.close()
    assert all(h.done() for h in handles)
    assert [(await h)[0] for h in handles] == [0.01] * 20
    _gone, alive = psutil.wait_procs([psutil.Process(p) for p in pids if p and psutil.pid_exists(p)], timeout=0)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert {s.state for s in (await coord.stats()).values()} == {"stopped"}


async def test_close_cancel_pending(beacons: BeaconFactory) -> None:
    """Test close(cancel_pending=True): queued tasks fail, the running one finishes."""
    started, release = beacons(), beacons()
    coord = Coordinator()
    await coord.add_worker("w", _funcs.hold)
    running = await coord.run((started.path, release.path))
    await started.wait()
    queued = [await coord.run((started.path, release.path)) for _ in range(5)]
    closing = asyncio.ensure_future(coord.close(cancel_pending=True))
    with pytest.raises(CoordinatorClosedError):
        await queued[-1]
    await release.signal()
    await closing
    assert await running == ("released", "w")
    for h in queued:
        with pytest.raises(CoordinatorClosedError):
            await h


async def test_close_timeout_kills_stuck_workers(beacons: BeaconFactory) -> None:
    """Test close(timeout=...): a task that never ends is lost, queued ones fail, no process survives."""
    started, release = beacons(), beacons()
    coord = Coordinator()
    await coord.add_worker("w", _funcs.hold)
    stuck = await coord.run((started.path, release.path))
    await started.wait()
    queued = await coord.run((started.path, release.path))
    pid = (await coord.stats())["w"].pid
    await coord.close(timeout=0.5)
    with pytest.raises(WorkerLostError, match="was killed by close"):
        await stuck
    with pytest.raises(CoordinatorClosedError):
        await queued
    assert pid is not None and (not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)


async def test_error_inside_async_with_does_not_wait_for_long_tasks(beacons: BeaconFactory) -> None:
    """Test that leaving `async with` on an exception fails queued tasks and does not hang on a running one."""
    started, release = beacons(), beacons()
    with pytest.raises(RuntimeError, match="leaving"):
        async with Coordinator() as coord:
            await coord.add_worker("w", _funcs.hold)
            running = await coord.run((started.path, release.path))
            queued = await coord.run((started.path, release.path))
            await started.wait()
            raise RuntimeError("leaving")
    with pytest.raises(CoordinatorClosedError):
        await queued
    with pytest.raises(WorkerLostError):
        await running


async def test_spawn_start_method() -> None:
    """Test workers started with spawn: tasks, state, a crash with its exit code, a restart, close."""
    from procoord.backends import LocalBackend

    async with Coordinator(backend=LocalBackend(start_method="spawn")) as coord:
        await coord.add_worker("s", _funcs.Counter())
        await coord.add_worker("r", _funcs.raiser)
        for i in range(3):
            await coord.call(i, TaskPrefs.Required("s"))
        assert await coord.call("history", TaskPrefs.Required("s")) == ([0, 1, 2, "history"], "s")
        with pytest.raises(WorkerLostError, match="exit code 42"):
            await coord.call("_exit", TaskPrefs.Required("r"))
        assert await coord.call("back", TaskPrefs.Required("r")) == ("back", "r")
        assert (await coord.stats())["r"].restarts == 1


def test_fork_start_method_is_refused() -> None:
    """Test that a bare fork of a process running an event loop is refused with a reason."""
    from procoord.backends import LocalBackend

    with pytest.raises(ValueError, match="must not be forked"):
        LocalBackend(start_method="fork")


async def test_large_buffers_travel_out_of_band(coord: Coordinator) -> None:
    """Test a task and a result carrying large out-of-band buffers (as numpy arrays do)."""
    await coord.add_worker("w", _funcs.blob_sum)
    data = bytearray(range(256)) * 8192  # 2 MiB
    (total, doubled), worker = await coord.call(_funcs.Blob(data))
    assert worker == "w" and total == sum(bytes(data)[::4096])
    assert doubled == _funcs.Blob(data * 2)


def _array_stats(arr: Any) -> tuple[float, Any]:
    return float(arr.sum()), arr * 2


async def test_numpy_arrays_round_trip(coord: Coordinator) -> None:
    """Test numpy arrays both ways through the out-of-band path."""
    np = pytest.importorskip("numpy")
    await coord.add_worker("w", _array_stats)
    arr = np.arange(4 * 2**20, dtype=np.float64)  # 32 MiB
    (total, doubled), _ = await coord.call(arr)
    assert total == float(arr.sum())
    assert doubled.shape == arr.shape and np.array_equal(doubled, arr * 2)


async def test_task_is_a_snapshot_taken_at_run(coord: Coordinator, beacons: BeaconFactory) -> None:
    """Test that changing a large buffer after run() does not change the queued task."""
    started, release = beacons(), beacons()
    await coord.add_worker("w", _funcs.Counter())
    held = await coord.run(("hold", started.path, release.path))
    await started.wait()
    filler = await coord.run("filler")  # the worker's window (2 while unmeasured) is now full
    data = bytearray(b"a" * 2**20)
    queued = await coord.run(("blob", _funcs.Blob(data)))  # waits in the parent, out of band
    data[:] = b"b" * 2**20
    await release.signal()
    await held
    await filler
    (_, blob), _ = await queued
    assert bytes(blob.data[:1]) == b"a" and bytes(blob.data[-1:]) == b"a"


async def test_worker_not_ready_in_time(beacons: BeaconFactory) -> None:
    """Test LocalBackend(ready_timeout=...): a processor that takes too long to build fails
    add_worker with WorkerStartError, and its process is killed."""
    from procoord.backends import LocalBackend

    never = beacons()  # nobody ever signals it: the factory blocks
    async with Coordinator(backend=LocalBackend(ready_timeout=0.5)) as coord:
        coord.register("slow", _funcs.blocked_factory, never.path)
        with pytest.raises(WorkerStartError, match=r"not ready within 0\.5 s"):
            await coord.add_worker("s", "slow")
        assert coord.workers() == []
