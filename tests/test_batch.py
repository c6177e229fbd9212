"""run_batch: several tasks as one unit."""

from __future__ import annotations

import threading

import pytest

from procoord import Coordinator, SerializationError, TaskPrefs, TaskProcessError

from . import _funcs


async def test_batch_runs_in_order_with_per_item_outcomes(coord: Coordinator) -> None:
    """Test that a batch runs each task in order, one outcome per task, errors in place."""
    await coord.add_worker("w", _funcs.raiser)
    outcomes, worker = await (await coord.run_batch(["a", "value", "b"]))
    assert worker == "w"
    assert outcomes[0] == (True, "a") and outcomes[2] == (True, "b")
    ok, error = outcomes[1]
    assert not ok and isinstance(error, TaskProcessError) and isinstance(error.__cause__, ValueError)
    stats = (await coord.stats())["w"]
    assert (stats.completed, stats.failed) == (2, 1)


async def test_batch_keeps_state_and_works_async(coord: Coordinator) -> None:
    """Test a batch on a stateful async processor: state carries across items and batches."""
    await coord.add_worker("c", _funcs.Counter())
    await coord.run_batch([1, 2, 3], TaskPrefs.Required("c"))
    (outcomes, _) = await (await coord.run_batch(["history"], TaskPrefs.Required("c")))
    assert outcomes == [(True, [1, 2, 3, "history"])]


async def test_batch_unpicklable_item_result(coord: Coordinator) -> None:
    """Test that one unpicklable result fails that item only."""
    await coord.add_worker("w", _funcs.raiser)
    outcomes, _ = await (await coord.run_batch(["x", "lock", "y"]))
    assert outcomes[0] == (True, "x") and outcomes[2] == (True, "y")
    assert isinstance(outcomes[1][1], SerializationError)


async def test_batch_errors_up_front(coord: Coordinator) -> None:
    """Test that an empty or unpicklable batch is refused before anything is queued."""
    await coord.add_worker("w", _funcs.double)
    with pytest.raises(ValueError):
        await coord.run_batch([])
    with pytest.raises(SerializationError):
        await coord.run_batch([1, threading.Lock()])
    assert coord.pending == 0
