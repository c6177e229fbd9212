"""procoord.Executor against the concurrent.futures.Executor contract, in real worker
processes: what the standard library's own executor tests check, plus a crash that fails
one future only."""

from __future__ import annotations

import asyncio
import concurrent.futures
import operator
import os
import select
import threading
import time
from collections.abc import Iterator

import psutil
import pytest

import procoord
from procoord import Executor, SerializationError, TaskPrefs, TaskProcessError, WorkerLostError
from procoord.errors import RemoteTraceback

from . import _funcs
from ._run import ROOT, run_python
from .conftest import (
    DEADLOCK_TIMEOUT,
    Beacon,
    BeaconFactory,
    _write_fifo,
)


@pytest.fixture
def ex() -> Iterator[Executor]:
    with Executor(max_workers=2) as executor:
        yield executor


@pytest.fixture
def ex1() -> Iterator[Executor]:
    """One worker: calls queue behind each other."""
    with Executor(max_workers=1) as executor:
        yield executor


def wait_signal(beacon: Beacon) -> None:
    """Block until a worker signals the beacon (``_funcs.signal_beacon``)."""
    fd = os.open(beacon.path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        deadline = time.monotonic() + DEADLOCK_TIMEOUT
        while True:
            ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise TimeoutError("the worker never signalled")
            if os.read(fd, 1):
                return
    finally:
        os.close(fd)


def release(beacon: Beacon) -> None:
    """Release a worker blocked in ``_funcs.wait_beacon``."""
    _write_fifo(beacon.path)


def held(ex: Executor, beacons: BeaconFactory) -> tuple[concurrent.futures.Future[str], Beacon]:
    """A call that is running on a worker (it has signalled) and blocks until released."""
    started, gate = beacons(), beacons()
    future = ex.submit(_funcs.hold, (started.path, gate.path))
    wait_signal(started)
    return future, gate


def mul(x: int, y: int) -> int:
    return x * y


def capture(*args: object, **kwargs: object) -> tuple[tuple[object, ...], dict[str, object]]:
    return args, kwargs


# -- submit and map ------------------------------------------------------------------


def test_is_an_executor_and_submit_runs_in_a_worker(ex: Executor) -> None:
    """Test submit with positional and keyword arguments, a lambda, and that calls run
    in the worker processes, not in the caller."""
    assert isinstance(ex, concurrent.futures.Executor)
    assert ex.submit(pow, 2, 8).result(DEADLOCK_TIMEOUT) == 256
    assert ex.submit(mul, 2, y=8).result(DEADLOCK_TIMEOUT) == 16
    assert ex.submit(capture, 1, 2, fn=3, self=4).result(DEADLOCK_TIMEOUT) == ((1, 2), {"fn": 3, "self": 4})
    offset = 10
    assert ex.submit(lambda x: x + offset, 5).result(DEADLOCK_TIMEOUT) == 15
    pids = {ex.submit(os.getpid).result(DEADLOCK_TIMEOUT) for _ in range(20)}
    workers = {s.pid for s in ex.stats().values()}
    assert pids <= workers and os.getpid() not in pids
    assert len(workers) == ex.max_workers == 2


@pytest.mark.parametrize("chunksize", [1, 3, 100])
def test_map(ex: Executor, chunksize: int) -> None:
    """Test map over one and two iterables (the shorter ends it), in order, any chunksize."""
    assert list(ex.map(abs, range(-10, 10), chunksize=chunksize)) == list(map(abs, range(-10, 10)))
    assert list(ex.map(pow, range(10), range(5), chunksize=chunksize)) == list(map(pow, range(10), range(5)))
    assert list(ex.map(abs, [], chunksize=chunksize)) == []


def test_map_chunksize_must_be_positive(ex: Executor) -> None:
    """Test that chunksize < 1 is refused, as by ProcessPoolExecutor."""
    with pytest.raises(ValueError, match="chunksize"):
        ex.map(abs, [1], chunksize=0)


def test_map_exception(ex: Executor) -> None:
    """Test that a failing call raises its own exception where its result would be."""
    results = ex.map(divmod, [1, 1, 1, 1], [2, 2, 0, 2])
    assert next(results) == (0, 1)
    assert next(results) == (0, 1)
    with pytest.raises(ZeroDivisionError):
        next(results)


def test_map_timeout(ex1: Executor, beacons: BeaconFactory) -> None:
    """Test that map's iterator raises TimeoutError when a result is late, after the
    results that were ready."""
    started, gate = beacons(), beacons()
    results = ex1.map(_funcs.hold, [(started.path, gate.path)], timeout=0.2)
    wait_signal(started)
    with pytest.raises(TimeoutError):
        next(results)
    release(gate)
    quick = ex1.map(abs, [-1, -2], timeout=DEADLOCK_TIMEOUT)
    assert list(quick) == [1, 2]


# -- futures: cancel, wait, as_completed -----------------------------------------------


def test_cancel_queued_but_not_running(ex1: Executor, beacons: BeaconFactory) -> None:
    """Test that a queued call can be cancelled (it never runs) and a running one cannot."""
    running, gate = held(ex1, beacons)
    queued = ex1.submit(_funcs.double, 21)
    assert queued.cancel() is True
    assert queued.cancelled() and queued.done()
    assert running.cancel() is False
    assert not running.cancelled()
    release(gate)
    assert running.result(DEADLOCK_TIMEOUT) == "released"
    with pytest.raises(concurrent.futures.CancelledError):
        queued.result()
    assert ex1.submit(_funcs.double, 2).result(DEADLOCK_TIMEOUT) == 4


def test_wait_and_as_completed(ex: Executor, beacons: BeaconFactory) -> None:
    """Test the futures with wait (FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED) and
    as_completed, a pending one included."""
    slow, gate = held(ex, beacons)
    quick = ex.submit(mul, 6, 7)
    done, not_done = concurrent.futures.wait([slow, quick], timeout=DEADLOCK_TIMEOUT, return_when="FIRST_COMPLETED")
    assert done == {quick} and not_done == {slow}
    failing = ex.submit(divmod, 1, 0)
    done, not_done = concurrent.futures.wait([slow, failing], timeout=DEADLOCK_TIMEOUT, return_when="FIRST_EXCEPTION")
    assert done == {failing} and not_done == {slow}
    with pytest.raises(TimeoutError):
        list(concurrent.futures.as_completed([slow, quick], timeout=0.1))
    release(gate)
    finished = list(concurrent.futures.as_completed([slow, quick, failing], timeout=DEADLOCK_TIMEOUT))
    assert set(finished) == {slow, quick, failing}
    done, not_done = concurrent.futures.wait([slow, quick, failing], timeout=DEADLOCK_TIMEOUT)
    assert not not_done
    assert slow.result() == "released" and quick.result() == 42


def test_done_callback(ex: Executor) -> None:
    """Test add_done_callback: called once with the future, once it is done."""
    seen: list[concurrent.futures.Future[int]] = []
    called = threading.Event()

    def callback(future: concurrent.futures.Future[int]) -> None:
        seen.append(future)
        called.set()

    future = ex.submit(mul, 3, 3)
    future.add_done_callback(callback)
    assert called.wait(DEADLOCK_TIMEOUT)
    assert seen == [future] and future.result() == 9


# -- errors ------------------------------------------------------------------------------


def test_exception_is_the_original_with_the_worker_traceback(ex: Executor) -> None:
    """Test that a call's exception is raised as itself, with the worker's traceback as
    its cause, as ProcessPoolExecutor does."""
    future = ex.submit(_funcs.raiser, "boom")
    exc = future.exception(DEADLOCK_TIMEOUT)
    assert type(exc) is _funcs.Boom
    assert isinstance(exc.__cause__, RemoteTraceback)
    assert "raise Boom" in exc.__cause__.text and "in raiser" in exc.__cause__.text
    with pytest.raises(_funcs.Boom):
        future.result()


def test_exception_that_cannot_be_rebuilt(ex: Executor) -> None:
    """Test that an exception that does not unpickle arrives as TaskProcessError, text intact."""
    exc = ex.submit(_funcs.raiser, "stubborn").exception(DEADLOCK_TIMEOUT)
    assert isinstance(exc, TaskProcessError)
    assert "stubborn 1 2" in str(exc)


def test_unpicklable_argument_fails_its_future(ex: Executor) -> None:
    """Test that an argument that cannot be pickled fails that future, not submit."""
    future = ex.submit(_funcs.double, threading.Lock())
    assert isinstance(future.exception(DEADLOCK_TIMEOUT), SerializationError)
    assert ex.submit(_funcs.double, 2).result(DEADLOCK_TIMEOUT) == 4


@pytest.mark.parametrize("kind", ["_exit", "kill"])
def test_crash_fails_only_the_running_future(ex: Executor, kind: str) -> None:
    """Test that a worker dying fails only its running call (WorkerLostError, no
    BrokenProcessPool), the other calls complete and the worker is restarted."""
    others = [ex.submit(mul, i, 2) for i in range(20)]
    crash = ex.submit(_funcs.raiser, kind)
    more = [ex.submit(mul, i, 3) for i in range(20)]
    lost = crash.exception(DEADLOCK_TIMEOUT)
    assert isinstance(lost, WorkerLostError)
    assert [f.result(DEADLOCK_TIMEOUT) for f in others] == [i * 2 for i in range(20)]
    assert [f.result(DEADLOCK_TIMEOUT) for f in more] == [i * 3 for i in range(20)]
    assert list(ex.map(abs, [-1, -2, -3])) == [1, 2, 3]
    # A Required task waits for the restart; then the restarted worker answers.
    result, worker = ex.coordinator.call((abs, (-5,), {}), TaskPrefs.Required(lost.worker))
    assert (result, worker) == (5, lost.worker)
    stats = ex.stats()
    assert stats[lost.worker].restarts == 1
    assert sum(s.restarts for s in stats.values()) == 1


# -- shutdown ------------------------------------------------------------------------------


def test_shutdown_waits_and_stops_the_workers(beacons: BeaconFactory) -> None:
    """Test shutdown(wait=True): it returns once the running call is done and every worker
    process has exited; submit afterwards raises RuntimeError."""
    ex = Executor(max_workers=2)
    pids = [s.pid for s in ex.stats().values()]
    running, gate = held(ex, beacons)
    releaser = threading.Thread(target=release, args=(gate,))
    releaser.start()
    ex.shutdown(wait=True)
    releaser.join()
    assert running.done() and running.result() == "released"
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(abs, 1)
    ex.shutdown()  # again: harmless


def test_shutdown_cancel_futures(beacons: BeaconFactory) -> None:
    """Test shutdown(wait=False, cancel_futures=True): it returns at once, queued calls
    are cancelled, the running one finishes."""
    ex = Executor(max_workers=1)
    running, gate = held(ex, beacons)
    queued = [ex.submit(mul, i, 2) for i in range(10)]
    ex.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    assert not running.done()
    release(gate)
    assert running.result(DEADLOCK_TIMEOUT) == "released"
    ex.shutdown(wait=True)  # waits for the background shutdown


def test_context_manager_waits_for_submitted_calls() -> None:
    """Test that leaving `with` runs every submitted call to the end."""
    with Executor(max_workers=2) as ex:
        futures = [ex.submit(mul, i, i) for i in range(50)]
    assert [f.result(0) for f in futures] == [i * i for i in range(50)]


def test_max_workers() -> None:
    """Test that max_workers must be positive and defaults to the CPU count."""
    with pytest.raises(ValueError, match="max_workers"):
        Executor(max_workers=0)
    with Executor() as ex:
        assert ex.max_workers == (os.cpu_count() or 1) == len(ex.stats())


# -- asyncio and the example -----------------------------------------------------------------


async def test_run_in_executor() -> None:
    """Test loop.run_in_executor with a procoord Executor, several calls at once."""
    loop = asyncio.get_running_loop()
    ex = Executor(max_workers=2)
    try:
        results = await asyncio.gather(*(loop.run_in_executor(ex, operator.pow, 2, n) for n in range(10)))
        assert results == [2**n for n in range(10)]
        with pytest.raises(ZeroDivisionError):
            await loop.run_in_executor(ex, divmod, 1, 0)
    finally:
        await asyncio.to_thread(ex.shutdown)


def test_executor_example_runs() -> None:
    """Test that examples/executor.py runs and prints what it says."""
    proc = run_python([str(ROOT / "examples" / "executor.py")])
    assert proc.returncode == 0, proc.stderr
    assert "2 ** 10 = 1024" in proc.stdout
    assert "sum of squares below 10000: 333283335000" in proc.stdout
    assert "the crash cost one call" in proc.stdout


def test_exported() -> None:
    """Test that procoord.Executor is the executor class."""
    assert procoord.Executor is Executor
