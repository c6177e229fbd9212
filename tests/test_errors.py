"""The error tree: pickling, messages, and the builtins each error also is."""

from __future__ import annotations

import pickle

import pytest

import procoord
from procoord import errors

SAMPLES = [
    errors.ProcoordError("x"),
    errors.TaskProcessError("w", "Traceback ...", "ValueError: bad"),
    errors.WorkerLostError("w", 123, -9, "detail"),
    errors.TaskTimeoutError("w", 2.5),
    errors.SerializationError("task", "cannot pickle"),
    errors.NoSuchWorkerError("ghost", "removed"),
    errors.NoWorkersError(),
    errors.WorkerStartError("w", "boom", "Traceback ..."),
    errors.CoordinatorClosedError(),
]


def test_every_error_is_sampled() -> None:
    """Test that the samples cover every class in errors.__all__."""
    assert {type(e).__name__ for e in SAMPLES} == set(errors.__all__)


@pytest.mark.parametrize("error", SAMPLES, ids=lambda e: type(e).__name__)
def test_errors_pickle_round_trip(error: Exception) -> None:
    """Test that every error survives pickling with its fields and message."""
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)
    assert isinstance(copy, procoord.ProcoordError)


def test_errors_are_also_builtins() -> None:
    """Test the dual bases that keep existing except clauses working."""
    assert isinstance(errors.TaskTimeoutError("w", 1), TimeoutError)
    assert isinstance(errors.SerializationError("task", "x"), TypeError)
    assert isinstance(errors.NoSuchWorkerError("w"), KeyError)
    assert str(errors.NoSuchWorkerError("w")) == "no worker 'w'"


@pytest.mark.parametrize(
    ("exitcode", "words"),
    [(-9, "SIGKILL"), (-11, "segmentation fault"), (3, "exit code 3"), (None, "unknown"), (-30, "signal 30")],
)
def test_exit_descriptions(exitcode: int | None, words: str) -> None:
    """Test that a worker's end is told with its likely cause."""
    assert words in str(errors.WorkerLostError("w", 1, exitcode))
