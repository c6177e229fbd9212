"""Recycling workers (max_tasks / max_rss): fresh processes, nothing lost, stats."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil
import pytest

from procoord import Coordinator, TaskPrefs
from procoord.backends import LocalBackend

from . import _funcs, _shapes
from ._run import ROOT, run_python
from .conftest import DEADLOCK_TIMEOUT, BeaconFactory

W = TaskPrefs.Required("w")

MiB = 1 << 20


@pytest.mark.parametrize("where", ["add_worker", "coordinator"])
async def test_max_rss_recycles_a_growing_worker(where: str) -> None:
    """Test that a worker whose sampled memory passed max_rss (given to add_worker, or
    as the coordinator's default) after a task is replaced by a fresh process, which
    starts small again."""
    default = 160 * MiB if where == "coordinator" else None
    async with Coordinator(backend=LocalBackend(sample_interval=0.02), max_rss_per_worker=default) as coord:
        await coord.add_worker("w", _shapes.Hog(), max_rss=None if default else 160 * MiB)
        fat_pid, _ = await coord.call(0)
        await coord.call(200)  # holds 200 MiB from now on
        async with asyncio.timeout(DEADLOCK_TIMEOUT):
            pid = fat_pid
            while pid == fat_pid:  # the next sample after a task shows the growth
                pid, _ = await coord.call(0, TaskPrefs.Required("w"))
        assert psutil.Process(pid).memory_info().rss < 160 * MiB
        _gone, alive = await asyncio.to_thread(psutil.wait_procs, _procs(fat_pid), DEADLOCK_TIMEOUT)
        assert not alive  # the old process exits once it has handed over
        stats = (await coord.stats())["w"]
        assert (stats.recycles, stats.restarts, stats.failed) == (1, 0, 0)
        assert stats.pid == pid


def _procs(pid: int) -> list[psutil.Process]:
    try:
        return [psutil.Process(pid)]
    except psutil.NoSuchProcess:
        return []


async def test_coordinator_defaults_and_overrides() -> None:
    """Test max_tasks_per_worker as every worker's default, add_worker's override, and
    Any tasks spread over recycled workers without a loss."""
    async with Coordinator(max_tasks_per_worker=20) as coord:
        await coord.add_worker("a", _shapes.PidCounter())
        await coord.add_worker("b", _shapes.PidCounter(), max_tasks=10_000)
        done = 0
        async with asyncio.timeout(DEADLOCK_TIMEOUT):
            while (await coord.stats())["a"].recycles < 2:
                results = [r async for r in coord.map(range(100), window=16)]
                assert len(results) == 100
                done += 100
        stats = await coord.stats()
        assert stats["b"].recycles == 0
        assert stats["a"].completed + stats["b"].completed == done
        assert stats["a"].failed + stats["b"].failed == 0


@pytest.mark.parametrize("max_tasks", [0, -1, 1.5, True])
async def test_bad_limits(max_tasks: object) -> None:
    """Test that a limit that is not a positive int is refused at once."""
    with pytest.raises(ValueError, match="max_tasks"):
        Coordinator(max_tasks_per_worker=max_tasks)  # type: ignore[arg-type]
    async with Coordinator() as coord:
        with pytest.raises(ValueError, match="max_rss"):
            await coord.add_worker("w", _funcs.double, max_rss=max_tasks)  # type: ignore[arg-type]
        assert coord.workers() == []


async def test_close_during_a_recycle() -> None:
    """Test that closing while a replacement starts leaves no process behind and
    loses no task (the autouse leak check looks for stray workers)."""
    coord = Coordinator()
    await coord.add_worker("w", _shapes.PidCounter(), max_tasks=1)
    handles = [await coord.run(i) for i in range(5)]
    await coord.close()
    assert [(await h)[0][1] >= 1 for h in handles] == [True] * 5
    assert (await coord.stats())["w"].state == "stopped"


async def test_remove_during_a_recycle() -> None:
    """Test that a worker removed while its replacement starts stays removed."""
    async with Coordinator() as coord:
        await coord.add_worker("w", _shapes.PidCounter(), max_tasks=1)
        await coord.add_worker("v", _shapes.PidCounter())
        await coord.call(0, TaskPrefs.Required("w"))  # due: its replacement starts now
        assert await coord.remove_worker("w")
        assert coord.workers() == ["v"]
        assert (await coord.call(0))[1] == "v"


def test_recycling_example_runs() -> None:
    """Test that examples/recycling.py recycles both workers and loses nothing."""
    proc = run_python([str(ROOT / "examples" / "recycling.py")])
    assert proc.returncode == 0, proc.stderr
    assert "counted: 500 tasks" in proc.stdout and "leaky: 500 tasks" in proc.stdout
    assert "0 failed" in proc.stdout and " 0 recycles" not in proc.stdout


async def test_the_old_process_serves_while_its_replacement_starts(tmp_path: Path, beacons: BeaconFactory) -> None:
    """Test that while a recycled worker's replacement is built (its factory waits), the
    old process goes on running the worker's tasks; once the replacement is ready it
    takes over: no task fails, is lost or runs twice, each process ran its tasks in one
    run."""
    starting, release = beacons(), beacons()
    async with Coordinator() as coord:
        coord.register("gated", _shapes.gated_counter, str(tmp_path / "builds"), starting.path, release.path)
        await coord.add_worker("w", "gated", max_tasks=3)
        async with asyncio.timeout(DEADLOCK_TIMEOUT):
            results = [(await coord.call(i, W))[0] for i in range(3)]  # due: the replacement starts
            await starting.wait()
            results += [(await coord.call(i, W))[0] for i in range(3, 10)]  # served meanwhile
            assert len({pid for pid, _ in results}) == 1
            assert [n for _, n in results] == list(range(1, 11))
            backlog = [await coord.run(i, W) for i in range(10, 200)]
            await release.signal()
            results += [r for r, _ in await asyncio.gather(*backlog)]
            while results[-1][0] == results[0][0]:  # until the replacement serves
                results.append((await coord.call(0, W))[0])
        stats = (await coord.stats())["w"]
    runs: list[list[int]] = []
    for i, (pid, n) in enumerate(results):
        if not i or pid != results[i - 1][0]:
            runs.append([])
        runs[-1].append(n)
    assert len(runs) == len({pid for pid, _ in results}) >= 2  # each process in one run of tasks
    assert all(counts == list(range(1, len(counts) + 1)) for counts in runs)
    assert (stats.recycles, stats.completed, stats.failed, stats.restarts) == (len(runs) - 1, len(results), 0, 0)
