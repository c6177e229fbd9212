"""A worker whose channel stops making sense: bytes that are no frame, or a frame that
never ends. The running task fails with WorkerLostError saying why, and the worker is
restarted; nothing hangs."""

from __future__ import annotations

import asyncio

import pytest

from procoord import Coordinator, TaskPrefs, WorkerLostError
from procoord._wire import Kind
from procoord.backends import LocalBackend

from . import _funcs
from .conftest import DEADLOCK_TIMEOUT


async def _restarted(coord: Coordinator, old_pid: int) -> None:
    """The worker serves again, in a new process."""
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        (what, pid), worker = await coord.call(("fine", 0, 0), TaskPrefs.Required("w"))
    assert (what, worker) == ("fine", "w") and pid != old_pid
    stats = (await coord.stats())["w"]
    assert stats.restarts == 1 and stats.state == "idle"


async def test_a_header_of_unknown_kind_fails_the_task_and_restarts_the_worker(coord: Coordinator) -> None:
    """Test a stray header of a kind no worker sends: detected at once."""
    await coord.add_worker("w", _funcs.StrayWriter())
    (_, pid), _ = await coord.call(("fine", 0, 0))
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        with pytest.raises(WorkerLostError, match="stopped making sense: a frame header of unknown kind 250") as info:
            await coord.call(("stray", 250, 0))
    assert info.value.ran and info.value.pid == pid
    await _restarted(coord, pid)


async def test_a_frame_that_never_ends_trips_the_liveness_deadline() -> None:
    """Test a stray header of a valid kind announcing a long payload: the reader waits
    for bytes that never come (the worker's frames vanish into it) until the liveness
    deadline, built on the load samples, ends the worker."""
    async with Coordinator(backend=LocalBackend(liveness_timeout=1.0)) as coord:
        await coord.add_worker("w", _funcs.StrayWriter())
        (_, pid), _ = await coord.call(("fine", 0, 0))
        async with asyncio.timeout(DEADLOCK_TIMEOUT):
            with pytest.raises(WorkerLostError, match="no frame came from the worker for 1 s") as info:
                await coord.call(("stray", int(Kind.LOG), 32 << 20))
        assert info.value.ran
        await _restarted(coord, pid)


async def test_a_busy_worker_and_a_big_result_are_alive() -> None:
    """Test that the deadline counts signs of life, not task time: a task longer than
    the deadline, and a result whose bytes take a while, both come through."""
    async with Coordinator(backend=LocalBackend(liveness_timeout=0.6, sample_interval=0.05)) as coord:
        await coord.add_worker("spinner", _funcs.spin)
        await coord.add_worker("big", _funcs.faulty)
        assert await coord.call(1.5, TaskPrefs.Required("spinner")) == (1.5, "spinner")
        data, _ = await coord.call(("big-result", ""), TaskPrefs.Required("big"))
        assert len(data) == _funcs.BIG_RESULT_BYTES
        assert [s.restarts for s in (await coord.stats()).values()] == [0, 0]


async def test_a_worker_holding_the_gil_is_busy_not_stalled() -> None:
    """Test that a task keeping the worker's sampler from sending for longer than the
    deadline (as one long C call holding the GIL does) is not taken for a stalled channel:
    the worker uses a CPU meanwhile."""
    async with Coordinator(backend=LocalBackend(liveness_timeout=0.6, sample_interval=0.05)) as coord:
        await coord.add_worker("w", _funcs.hold_gil)
        assert await coord.call(2.0) == (2.0, "w")
        assert (await coord.stats())["w"].restarts == 0


def test_liveness_timeout_is_checked() -> None:
    """Test that a deadline the load samples cannot meet is refused."""
    with pytest.raises(ValueError, match="liveness_timeout"):
        LocalBackend(liveness_timeout=0.3, sample_interval=0.25)
