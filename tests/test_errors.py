"""The error tree: pickling, messages, and the builtins each error also is."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import procoord
from procoord import errors

from ._run import run_python

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


FAILING_SCRIPT = """
import asyncio
from procoord import Coordinator

def parse_number(text):
    return int(text)

def convert(text):
    return parse_number(text)

async def main():
    async with Coordinator() as coord:
        await coord.add_worker("w", convert)
        await coord.call("seven")

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_uncaught_task_error_shows_the_worker_frames(tmp_path: Path) -> None:
    """Test that an uncaught TaskProcessError prints the worker's frames (file, line and
    source of functions defined in the script), the original exception and the parent's
    frames, in that order, as concurrent.futures does."""
    script = tmp_path / "failing.py"
    script.write_text(FAILING_SCRIPT)
    proc = run_python([str(script)])
    assert proc.returncode == 1
    err = proc.stderr
    order = [
        "procoord.errors.RemoteTraceback:",
        'failing.py", line 9, in convert',
        "return parse_number(text)",
        'failing.py", line 6, in parse_number',
        "return int(text)",
        "ValueError: invalid literal for int() with base 10: 'seven'",
        "The above exception was the direct cause of the following exception:",
        "The above exception was the direct cause of the following exception:",
        'failing.py", line',
        "procoord.TaskProcessError: task failed in worker 'w': ValueError",
    ]
    at = 0
    for text in order:
        found = err.find(text, at)
        assert found >= 0, f"{text!r} missing after offset {at} in:\n{err}"
        at = found + len(text)


def test_remote_traceback_is_the_cause_when_the_original_cannot_be_rebuilt() -> None:
    """Test task_error with an exception that does not unpickle: the remote text is the cause."""
    error = errors.task_error("w", "Traceback ...\nStubbornError: x\n", "StubbornError: x", b"not a pickle")
    assert isinstance(error.__cause__, errors.RemoteTraceback)
    assert "StubbornError: x" in str(error.__cause__)
    rebuilt = errors.task_error("w", "Traceback ...\nValueError: y\n", "ValueError: y", pickle.dumps(ValueError("y")))
    assert isinstance(rebuilt.__cause__, ValueError)
    assert isinstance(rebuilt.__cause__.__cause__, errors.RemoteTraceback)
