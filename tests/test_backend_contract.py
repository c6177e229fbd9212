"""The backend contract: the same behaviour on local processes and on Ray actors.

Every test here runs once per backend, from the ``backend`` fixture; Ray runs as one
local instance for the whole session (``ray_session`` in conftest).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from procoord import (
    Coordinator,
    SerializationError,
    TaskPrefs,
    TaskProcessError,
    TaskTimeoutError,
    WorkerLostError,
    WorkerStartError,
)
from procoord.backends import Backend, LocalBackend

from . import _funcs, _shapes
from .conftest import DEADLOCK_TIMEOUT, BeaconFactory


@pytest.fixture(params=["local", "ray"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend in turn."""
    if request.param == "local":
        return LocalBackend()
    request.getfixturevalue("ray_session")
    from procoord.backends import RayBackend

    return RayBackend()


@pytest.fixture
async def bcoord(backend: Backend) -> AsyncIterator[Coordinator]:
    """A coordinator whose workers run on ``backend``."""
    async with Coordinator(backend=backend) as c:
        yield c


# -- routing and state --------------------------------------------------------------


async def test_routing(bcoord: Coordinator, backend: Backend) -> None:
    """Test Required, Preferred and Any routing, and one process per worker."""
    await bcoord.add_worker("a", _funcs.getpid)
    await bcoord.add_worker("b", _funcs.getpid)
    pid_a, who = await bcoord.call(None, TaskPrefs.Required("a"))
    assert who == "a"
    pid_b, who = await bcoord.call(None, TaskPrefs.Preferred("b"))
    assert who == "b"
    assert len({pid_a, pid_b, os.getpid()}) == 3
    handles = [await bcoord.run(None) for _ in range(20)]
    assert {w for _, w in await asyncio.gather(*(h.join() for h in handles))} <= {"a", "b"}
    stats = await bcoord.stats()
    assert (stats["a"].pid, stats["b"].pid) == (pid_a, pid_b)
    assert {s.backend for s in stats.values()} == {backend.name}


async def test_state_persists_in_fifo_order(bcoord: Coordinator) -> None:
    """Test that one processor object sees every task of its worker, in order."""
    await bcoord.add_worker("w", _funcs.Counter())
    handles = [await bcoord.run(i, TaskPrefs.Required("w")) for i in range(100)]
    await asyncio.gather(*(h.join() for h in handles))
    history, _ = await bcoord.call("history", TaskPrefs.Required("w"))
    assert history == [*range(100), "history"]


async def test_factory_runs_in_the_worker(bcoord: Coordinator) -> None:
    """Test a registered factory building an unpicklable processor inside the worker."""
    bcoord.register("locker", _funcs.LockHolder, "L", scale=3)
    await bcoord.add_worker("f", "locker")
    (label, value, pid), _ = await bcoord.call(2)
    assert (label, value) == ("L", 6)
    stats = (await bcoord.stats())["f"]
    assert stats.pid == pid != os.getpid() and stats.factory == "locker"


# -- errors -------------------------------------------------------------------------


async def test_task_error_carries_cause(bcoord: Coordinator) -> None:
    """Test TaskProcessError with the original exception as __cause__; the worker goes on."""
    await bcoord.add_worker("w", _funcs.raiser)
    with pytest.raises(TaskProcessError) as info:
        await bcoord.call("boom")
    assert info.value.worker == "w"
    assert isinstance(info.value.__cause__, _funcs.Boom)
    assert "raise Boom" in info.value.remote_traceback
    with pytest.raises(SerializationError) as bad:
        await bcoord.call("lock")  # returns a lock: the result cannot be pickled
    assert bad.value.stage == "result"
    assert await bcoord.call("fine") == ("fine", "w")
    stats = (await bcoord.stats())["w"]
    assert (stats.completed, stats.failed, stats.restarts) == (1, 2, 0)


async def test_start_errors(bcoord: Coordinator) -> None:
    """Test WorkerStartError for a factory that raises (with its traceback) and one that exits."""
    bcoord.register("bad", _funcs.failing_factory)
    bcoord.register("dies", _funcs.dying_factory)
    with pytest.raises(WorkerStartError) as info:
        await bcoord.add_worker("x", "bad")
    assert "factory refuses" in str(info.value) and "failing_factory" in info.value.remote_traceback
    with pytest.raises(WorkerStartError):
        await bcoord.add_worker("y", "dies")
    assert bcoord.workers() == []


# -- crash, timeout, cancel, stop --------------------------------------------------------


async def test_worker_killed_from_outside(bcoord: Coordinator, beacons: BeaconFactory) -> None:
    """Test SIGKILL of the worker's process mid-task: WorkerLostError, then a restart."""
    await bcoord.add_worker("w", _funcs.Counter())
    old_pid = (await bcoord.stats())["w"].pid
    assert old_pid is not None
    started, release = beacons(), beacons()
    doomed = await bcoord.run(("hold", started.path, release.path))
    await started.wait()
    os.kill(old_pid, signal.SIGKILL)
    with pytest.raises(WorkerLostError) as info:
        await asyncio.wait_for(doomed.join(), DEADLOCK_TIMEOUT)
    assert info.value.worker == "w" and info.value.pid == old_pid
    async with asyncio.timeout(DEADLOCK_TIMEOUT):  # a Required task waits for the restart
        new_pid, _ = await bcoord.call("pid", TaskPrefs.Required("w"))
    stats = (await bcoord.stats())["w"]
    assert new_pid == stats.pid != old_pid
    assert (stats.restarts, stats.failed, stats.completed) == (1, 1, 1)


@pytest.mark.parametrize("raised", ["exit", "interrupt", "generator-exit", "cancelled"])
async def test_base_exception_in_do_work_fails_only_the_task(bcoord: Coordinator, raised: str) -> None:
    """Test SystemExit, KeyboardInterrupt, GeneratorExit or CancelledError raised by
    do_work: that task fails with TaskProcessError, and the worker and its state live on."""
    await bcoord.add_worker("w", _funcs.BaseRaiser())
    (_, pid), _ = await bcoord.call("count")
    with pytest.raises(TaskProcessError) as info:
        await bcoord.call(raised)
    assert isinstance(info.value.__cause__, BaseException)
    assert not isinstance(info.value.__cause__, Exception)
    assert await bcoord.call("count") == ((3, pid), "w")
    assert (await bcoord.stats())["w"].restarts == 0


async def test_stats_have_a_load_sample_once_ready(bcoord: Coordinator) -> None:
    """Test that stats() right after add_worker already shows the worker's memory."""
    await bcoord.add_worker("w", _funcs.double)
    assert (await bcoord.stats())["w"].rss_bytes > 0


async def test_timeout_restarts_worker(bcoord: Coordinator) -> None:
    """Test TaskTimeoutError for a task over its timeout, then the worker restarted."""
    await bcoord.add_worker("w", _funcs.sleeper)
    old_pid = (await bcoord.stats())["w"].pid
    with pytest.raises(TaskTimeoutError) as info:
        await bcoord.call(30.0, timeout=0.3)
    assert info.value.worker == "w"
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        assert await bcoord.call(0.0, TaskPrefs.Required("w")) == (0.0, "w")
    stats = (await bcoord.stats())["w"]
    assert stats.restarts == 1 and stats.pid != old_pid and (stats.completed, stats.failed) == (1, 1)


async def test_cancel_running_async_task(bcoord: Coordinator, beacons: BeaconFactory) -> None:
    """Test that cancelling a running async do_work cancels it in the worker."""
    await bcoord.add_worker("w", _funcs.async_hold)
    started, cancelled = beacons(), beacons()
    handle = await bcoord.run((started.path, cancelled.path))
    await started.wait()
    reader = cancelled.open_reader()
    try:
        assert handle.cancel()
        await cancelled.wait()
    finally:
        os.close(reader)
    with pytest.raises(asyncio.CancelledError):
        await handle
    assert (await bcoord.stats())["w"].restarts == 0  # cancelled in place, not killed


async def test_remove_worker_hands_back_queued(bcoord: Coordinator, beacons: BeaconFactory) -> None:
    """Test STOP: the running task finishes, tasks queued in the worker go elsewhere,
    and the worker's process ends."""
    await bcoord.add_worker("r", _funcs.Counter())
    started, release = beacons(), beacons()
    running = await bcoord.run(("hold", started.path, release.path), TaskPrefs.Required("r"))
    await started.wait()
    # Any tasks, written to r's window behind the running one.
    behind = [bcoord.run_nowait(("n", i)) for i in range(3)]
    pid = (await bcoord.stats())["r"].pid
    assert pid is not None
    await bcoord.add_worker("other", _funcs.Counter())
    removal = asyncio.ensure_future(bcoord.remove_worker("r"))
    await asyncio.sleep(0)  # a yield, not a wait: lets the removal send its STOP
    await release.signal()
    assert await running == ("released", "r")
    results = await asyncio.gather(*(h.join() for h in behind))
    # Handed back by the STOP (or run on r first, when the STOP arrives after the release).
    assert [r for r, _ in results] == [("n", i) for i in range(3)]
    assert {w for _, w in results} <= {"r", "other"}
    assert await removal is True
    _gone, alive = psutil.wait_procs([psutil.Process(pid)] if psutil.pid_exists(pid) else [], timeout=10)
    assert not alive
    assert bcoord.workers() == ["other"]


# -- stats --------------------------------------------------------------------------


async def test_stats(bcoord: Coordinator, backend: Backend) -> None:
    """Test stats: the worker's own pid, CPU and RSS sampled inside it, the counters."""
    await bcoord.add_worker("w", _funcs.spin)
    await bcoord.add_worker("p", _funcs.getpid)
    pid, _ = await bcoord.call(None, TaskPrefs.Required("p"))
    assert (await bcoord.stats())["p"].pid == pid != os.getpid()
    assert await bcoord.call(0.6, TaskPrefs.Required("w")) == (0.6, "w")
    stats = (await bcoord.stats())["w"]
    assert stats.cpu_percent > 10.0
    assert stats.rss_bytes > 10 * 2**20
    assert (stats.completed, stats.failed, stats.restarts, stats.in_flight) == (1, 0, 0, 0)
    assert stats.state == "idle" and stats.ewma_ms is not None and stats.ewma_ms >= 600.0
    assert stats.backend == backend.name


# -- Ray only -------------------------------------------------------------------------


@pytest.mark.usefixtures("ray_session")
async def test_local_and_ray_workers_in_one_coordinator() -> None:
    """Test one coordinator mixing local and Ray workers: routing, stats, close."""
    from procoord.backends import RayBackend

    async with Coordinator() as coord:
        await coord.add_worker("local", _funcs.getpid)
        await coord.add_worker("ray", _funcs.getpid, backend=RayBackend())
        handles = [await coord.run(None) for _ in range(30)]
        results = await asyncio.gather(*(h.join() for h in handles))
        assert {w for _, w in results} <= {"local", "ray"}
        local_pid, _ = await coord.call(None, TaskPrefs.Required("local"))
        ray_pid, _ = await coord.call(None, TaskPrefs.Required("ray"))
        stats = await coord.stats()
        assert {i: (s.backend, s.pid) for i, s in stats.items()} == {
            "local": ("local", local_pid),
            "ray": ("ray", ray_pid),
        }
        assert local_pid != ray_pid
    _gone, alive = psutil.wait_procs([psutil.Process(ray_pid)] if psutil.pid_exists(ray_pid) else [], timeout=10)
    assert not alive, "close() must end the Ray actor"


@pytest.mark.usefixtures("ray_session")
def test_ray_backend_rejects_options_it_cannot_honour() -> None:
    """Test that Ray restarting the actor itself is refused."""
    from procoord.backends import RayBackend

    with pytest.raises(ValueError, match="max_restarts"):
        RayBackend(max_restarts=3)
    assert "num_cpus=1" in repr(RayBackend(num_cpus=1))


def test_ray_backend_without_ray_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test the ImportError when ray is not installed."""
    from procoord.backends import RayBackend

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install 'procoord\[ray\]'"):
        RayBackend()


# -- the channel: order and flow -----------------------------------------------------


async def test_burst_of_results_and_errors(bcoord: Coordinator) -> None:
    """Test many tasks issued at once, results and errors mixed: each handle gets its own."""
    await bcoord.add_worker("w", _funcs.raiser)
    tasks = ["boom" if i % 7 == 0 else f"ok-{i}" for i in range(400)]
    outcomes = await asyncio.gather(*(bcoord.run_nowait(t) for t in tasks), return_exceptions=True)
    for task, outcome in zip(tasks, outcomes, strict=True):
        if task == "boom":
            assert isinstance(outcome, TaskProcessError) and isinstance(outcome.__cause__, _funcs.Boom)
        else:
            assert outcome == (task, "w")
    stats = (await bcoord.stats())["w"]
    assert (stats.completed, stats.failed) == (400 - 58, 58)


async def test_load_samples_keep_coming_after_many_tasks(backend: Backend) -> None:
    """Test that after many tasks the worker's samples still reach stats(): memory it
    takes shows in rss_bytes by the time the task that took it returns."""
    fast: Backend = LocalBackend(sample_interval=0.05)
    if backend.name == "ray":
        from procoord.backends import RayBackend

        fast = RayBackend(sample_interval=0.05)
    async with Coordinator(backend=fast) as coord:
        await coord.add_worker("w", _funcs.Grower())
        await asyncio.gather(*(coord.run_nowait(i) for i in range(500)))
        before = (await coord.stats())["w"].rss_bytes
        assert await coord.call("grow") == ("grow", "w")
        assert (await coord.stats())["w"].rss_bytes > before + 32 * 2**20


async def test_cancel_queued_task_while_one_runs(bcoord: Coordinator, beacons: BeaconFactory) -> None:
    """Test cancelling a task written to the worker behind a running one: it is
    cancelled, the running one's result still arrives, and the worker goes on. (The
    cancel may reach the worker after the running task ended, so the cancelled one may
    have run there: its result is dropped.)"""
    await bcoord.add_worker("w", _funcs.Counter())
    started, release = beacons(), beacons()
    running = await bcoord.run(("hold", started.path, release.path))
    await started.wait()
    queued = await bcoord.run("queued")
    assert queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    await release.signal()
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        assert await running == ("released", "w")
        assert await bcoord.call("after") == ("after", "w")
    stats = (await bcoord.stats())["w"]
    assert (stats.failed, stats.restarts, stats.in_flight) == (0, 0, 0)


async def test_logs_arrive_before_the_result(bcoord: Coordinator, caplog: pytest.LogCaptureFixture) -> None:
    """Test that a record logged while the processor is built, and one logged by a task,
    have reached the parent's logger by the time add_worker and the task return."""
    caplog.set_level(logging.INFO, logger="procoord.worker")
    bcoord.register("logging", _funcs.logging_factory)
    await bcoord.add_worker("w", "logging")
    messages = [r.getMessage() for r in caplog.records if r.name == "procoord.worker.w"]
    assert messages == ["loading the model"]
    for i in range(20):
        assert await bcoord.call((logging.INFO, f"m{i}")) == (f"m{i}", "w")
        assert caplog.records[-1].getMessage() == f"said m{i}"


# -- streaming ----------------------------------------------------------------------


async def test_stream_parts_credit_and_break(bcoord: Coordinator) -> None:
    """Test that a stream delivers every part past several rounds of credit (so credit
    reaches the worker), and that a break closes the generator in the worker."""
    from procoord._stream import STREAM_CREDIT

    from . import _stream_funcs

    w = TaskPrefs.Required("s")
    await bcoord.add_worker("s", _stream_funcs.AsyncStreamer())
    count = 4 * STREAM_CREDIT + 1
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        assert [p async for p in bcoord.stream(("count", count), w)] == list(range(count))
        async for part in bcoord.stream(("count", 10_000_000), w):
            if part == 5:
                break
        [(yielded, closed)], _ = await bcoord.call(("report", None), w)
    assert closed
    assert yielded <= 6 + STREAM_CREDIT
    assert count + 6 <= (await bcoord.stats())["s"].parts_streamed <= count + yielded


async def test_stream_crash_after_parts(bcoord: Coordinator, beacons: BeaconFactory) -> None:
    """Test that a worker dying mid-stream gives the parts that arrived, then WorkerLostError."""
    from . import _stream_funcs

    release = beacons()
    await bcoord.add_worker("s", _stream_funcs.SyncStreamer())
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        parts = bcoord.stream(("exit_when", (3, release.path)))
        assert [await anext(parts) for _ in range(3)] == [0, 1, 2]
        await release.signal()
        with pytest.raises(WorkerLostError):
            await anext(parts)
    assert (await bcoord.stats())["s"].failed == 1


# -- priorities, retries, recycling ------------------------------------------------------


@pytest.mark.parametrize("prefs", [TaskPrefs.Any, TaskPrefs.Required("w")], ids=["any", "required"])
async def test_priority_overtakes_queued_tasks(bcoord: Coordinator, beacons: BeaconFactory, prefs: TaskPrefs) -> None:
    """Test that a high-priority task overtakes 1,000 queued ones, FIFO among the rest,
    without preempting the running one."""
    await bcoord.add_worker("w", _funcs.Counter())
    started, release = beacons(), beacons()
    running = await bcoord.run(("hold", started.path, release.path), prefs)
    await started.wait()
    low = [await bcoord.run(i, prefs) for i in range(1000)]
    written = (await bcoord.stats())["w"].in_flight  # in the worker already: beyond reordering
    urgent = await bcoord.run("urgent", prefs, priority=1)
    later = await bcoord.run("later", prefs)
    await release.signal()
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        assert (await running)[0] == "released"
        await asyncio.gather(urgent, later, *low)
    history, _ = await bcoord.call("history", prefs)
    assert history[0][0] == "hold"
    assert history.index("urgent") == written
    assert [t for t in history if isinstance(t, int)] == list(range(1000))
    assert history[-2:] == ["later", "history"]


async def test_retry_after_crash(bcoord: Coordinator, tmp_path: Path) -> None:
    """Test that a task whose worker died under it runs again after the restart
    (Required waits for it), counted in stats, and that the final error gives the
    number of attempts once retries run out."""
    await bcoord.add_worker("w", _shapes.lost_until)
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        run, who = await bcoord.call((str(tmp_path / "a"), 1, "exit"), TaskPrefs.Required("w"), retries=2)
        assert (run, who) == (2, "w")
        with pytest.raises(WorkerLostError) as lost:
            await bcoord.call((str(tmp_path / "b"), 9, "exit"), TaskPrefs.Required("w"), retries=1)
        assert (await bcoord.call((str(tmp_path / "c"), 0, "exit"), TaskPrefs.Required("w")))[0] == 1
    assert lost.value.attempts == 2
    assert "2 attempts" in str(lost.value)
    stats = (await bcoord.stats())["w"]
    assert (stats.retries, stats.restarts, stats.failed, stats.completed) == (2, 3, 1, 2)


async def test_retry_after_timeout(bcoord: Coordinator, tmp_path: Path) -> None:
    """Test that a timed-out task runs again when it has retries left."""
    await bcoord.add_worker("w", _shapes.lost_until)
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        run, _ = await bcoord.call((str(tmp_path / "a"), 1, "hang"), timeout=0.5, retries=1)
        assert run == 2
        with pytest.raises(TaskTimeoutError) as timed_out:
            await bcoord.call((str(tmp_path / "b"), 9, "hang"), timeout=0.5, retries=1)
    assert timed_out.value.attempts == 2
    assert "2 attempts" in str(timed_out.value)
    assert (await bcoord.stats())["w"].retries == 2


async def test_errors_of_the_task_are_not_retried(bcoord: Coordinator, tmp_path: Path) -> None:
    """Test that an exception raised by the task, or an unpicklable result, is never retried."""
    await bcoord.add_worker("w", _shapes.raise_counted)
    await bcoord.add_worker("v", _funcs.raiser)
    path = tmp_path / "runs"
    with pytest.raises(TaskProcessError):
        await bcoord.call(str(path), TaskPrefs.Required("w"), retries=3)
    with pytest.raises(SerializationError):
        await bcoord.call("lock", TaskPrefs.Required("v"), retries=3)
    assert path.read_text() == "x"
    stats = await bcoord.stats()
    assert stats["w"].retries == stats["v"].retries == 0


async def test_recycle_after_max_tasks(bcoord: Coordinator) -> None:
    """Test that a worker is replaced by a fresh process after max_tasks tasks, with
    no task lost, failed or re-run, and its state starting again."""
    await bcoord.add_worker("w", _shapes.PidCounter(), max_tasks=50)
    results: list[tuple[int, int]] = []
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        # The old process goes on while its replacement starts: run until two took over.
        while len(results) < 500 or (await bcoord.stats())["w"].recycles < 2:
            handles = [await bcoord.run(i, TaskPrefs.Required("w")) for i in range(50)]
            results.extend(r for r, _ in await asyncio.gather(*handles))
    _assert_recycled(results, 50)
    stats = (await bcoord.stats())["w"]
    # Every process that ran a task but the first took over from another; one more may
    # have taken over since the last result (when its predecessor's last task ended).
    assert stats.recycles - (len({pid for pid, _ in results}) - 1) in (0, 1)
    assert (stats.completed, stats.failed, stats.restarts) == (len(results), 0, 0)


def _assert_recycled(results: list[tuple[int, int]], max_tasks: int) -> None:
    """Each process counted its own tasks from 1, each pid in one run of tasks, and
    every process but the last ran at least ``max_tasks`` of them."""
    runs: list[list[int]] = []
    last_pid = None
    for pid, n in results:
        if pid != last_pid:
            runs.append([])
            last_pid = pid
        runs[-1].append(n)
    assert len(runs) >= 2
    assert len({pid for pid, _ in results}) == len(runs)
    for counts in runs:
        assert counts == list(range(1, len(counts) + 1))
    assert all(len(counts) >= max_tasks for counts in runs[:-1])


async def test_recycle_after_max_rss(backend: Backend) -> None:
    """Test that a worker whose memory grows past max_rss is replaced by a fresh process
    once the task that took it there has finished: its memory is measured after every
    task (here the periodic samples come once a minute), and no task fails."""
    if isinstance(backend, LocalBackend):
        backend = LocalBackend(sample_interval=60.0, liveness_timeout=None)
    else:
        backend = type(backend)(sample_interval=60.0)  # type: ignore[call-arg]
    w = TaskPrefs.Required("w")
    async with Coordinator(backend=backend) as coord:
        await coord.add_worker("w", _shapes.Hog())
        await coord.call(0, w)
        limit = (await coord.stats())["w"].rss_bytes + (64 << 20)
        await coord.add_worker("w", _shapes.Hog(), max_rss=limit)  # replaces it: a fresh process
        first, _ = await coord.call(0, w)
        async with asyncio.timeout(DEADLOCK_TIMEOUT):
            for _ in range(5):  # 80 MiB more: past the limit
                await coord.call(16, w)
            while (await coord.call(0, w))[0] == first:  # until the replacement serves
                pass
        stats = (await coord.stats())["w"]
    assert (stats.recycles, stats.failed, stats.restarts) == (1, 0, 0)
