"""Retries of lost tasks at the edges: a worker that is not restarted, a restart limit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from procoord import Coordinator, TaskPrefs, TaskTimeoutError, WorkerLostError

from . import _shapes
from .conftest import DEADLOCK_TIMEOUT

W = TaskPrefs.Required("w")


@pytest.mark.parametrize(("options", "runs"), [({"restart": False}, 1), ({}, 2)], ids=["no_restart", "limit"])
async def test_a_required_retry_without_a_restart_says_the_task_ran(
    tmp_path: Path, options: dict[str, bool], runs: int
) -> None:
    """Test that a Required task lost with a worker that is then given up (restart=False,
    or its restart limit reached) fails with the loss it met: ``ran`` True (it may have had
    effects), the runs made, the exit code; not as a task that never ran."""
    path = tmp_path / "runs"
    async with Coordinator(restart_limit=1) as coord:
        await coord.add_worker("w", _shapes.lost_until, **options)
        with pytest.raises(WorkerLostError) as lost:
            async with asyncio.timeout(DEADLOCK_TIMEOUT):
                await coord.call((str(path), 9, "exit"), W, retries=5)
        stats = (await coord.stats())["w"]
    assert path.read_text() == "x" * runs
    error = lost.value
    assert (error.ran, error.attempts, error.exitcode) == (True, runs, 9)
    assert "never ran" not in str(error)
    assert "not restarted" in str(error)
    assert stats.retries == runs - 1


async def test_a_retry_waiting_for_a_restart_that_fails_says_the_task_ran(tmp_path: Path) -> None:
    """Test that a Required task waiting to run again for a worker whose restart then
    fails (so it is given up) ends with ``ran`` True and the runs it had, not as a task
    that never ran; a task queued behind it that never ran says so."""
    path = tmp_path / "runs"
    async with Coordinator(restart_limit=1) as coord:
        coord.register("once", _shapes.built_once, str(tmp_path / "built"))
        await coord.add_worker("w", "once")
        lost = await coord.run((str(path), 9, "exit"), W, retries=3)
        queued = await coord.run((str(tmp_path / "other"), 0, "exit"), W)
        async with asyncio.timeout(DEADLOCK_TIMEOUT):
            outcomes = await asyncio.gather(lost, queued, return_exceptions=True)
        stats = (await coord.stats())["w"]
    assert path.read_text() == "x"
    error, never = outcomes
    assert isinstance(error, WorkerLostError) and isinstance(never, WorkerLostError)
    assert (error.ran, error.attempts) == (True, 1)
    assert "not restarted" in str(error)
    assert (never.ran, never.attempts) == (False, 1)
    assert (stats.state, stats.retries) == ("failed", 0)


async def test_a_required_timeout_without_a_restart_is_not_retried(tmp_path: Path) -> None:
    """Test that a Required task that timed out on a worker that is not restarted fails
    with TaskTimeoutError after its one run."""
    path = tmp_path / "runs"
    async with Coordinator() as coord:
        await coord.add_worker("w", _shapes.lost_until, restart=False)
        with pytest.raises(TaskTimeoutError) as timed_out:
            async with asyncio.timeout(DEADLOCK_TIMEOUT):
                await coord.call((str(path), 9, "hang"), W, timeout=0.3, retries=2)
        stats = (await coord.stats())["w"]
    assert path.read_text() == "x"
    assert timed_out.value.attempts == 1
    assert (stats.state, stats.retries, stats.failed) == ("failed", 0, 1)
