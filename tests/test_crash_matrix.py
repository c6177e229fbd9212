"""The crash matrix: where a fault happens x how, each mapped to the error the user gets.

After every case the same coordinator must still serve new tasks correctly. Faults that
would kill the test process itself (os._exit or SIGSEGV while the parent pickles or
unpickles) are left out: they are the caller's own process.
"""

from __future__ import annotations

import pytest

from procoord import (
    Coordinator,
    SerializationError,
    TaskPrefs,
    TaskProcessError,
    WorkerLostError,
    WorkerStartError,
)

from . import _funcs

# (where, how, expected error, text expected in the message or remote traceback)
TASK_CASES = [
    ("pickle-task", "exception", SerializationError, "injected fault"),
    ("unpickle-task", "exception", SerializationError, "injected fault"),
    ("unpickle-task", "stubborn", SerializationError, "StubbornError"),
    ("unpickle-task", "sys.exit", SerializationError, "SystemExit: 5"),
    ("unpickle-task", "os._exit", WorkerLostError, "exit code 6"),
    ("unpickle-task", "sigsegv", WorkerLostError, "SIGSEGV"),
    ("run", "exception", TaskProcessError, "injected fault"),
    ("run", "stubborn", TaskProcessError, "stubborn 1 2"),
    ("run", "sys.exit", TaskProcessError, "SystemExit: 5"),
    ("run", "os._exit", WorkerLostError, "exit code 6"),
    ("run", "sigsegv", WorkerLostError, "SIGSEGV"),
    ("pickle-result", "exception", SerializationError, "injected fault"),
    ("pickle-result", "stubborn", SerializationError, "stubborn 1 2"),
    ("pickle-result", "sys.exit", SerializationError, "SystemExit: 5"),
    ("pickle-result", "os._exit", WorkerLostError, "exit code 6"),
    ("pickle-result", "sigsegv", WorkerLostError, "SIGSEGV"),
    ("unpickle-result", "exception", SerializationError, "injected fault"),
    ("unpickle-result", "stubborn", SerializationError, "StubbornError"),
    ("unpickle-result", "sys.exit", SerializationError, "SystemExit"),
]


def _task_for(where: str, how: str) -> object:
    if where == "pickle-task":
        return _funcs.FaultAtPickle(how)
    if where == "unpickle-task":
        return _funcs.FaultAtUnpickle(how)
    return (where, how)


@pytest.mark.parametrize(
    ("where", "how", "error", "text"),
    TASK_CASES,
    ids=[f"{w}-{h}" for w, h, _, _ in TASK_CASES],
)
async def test_task_fault(coord: Coordinator, where: str, how: str, error: type[Exception], text: str) -> None:
    """Test that each task fault gives its error, and the coordinator serves on."""
    await coord.add_worker("w", _funcs.faulty)
    await coord.add_worker("v", _funcs.faulty)
    assert await coord.call(("ok", "before"), TaskPrefs.Required("w")) == ("before", "w")
    with pytest.raises(error) as info:
        await coord.call(_task_for(where, how), TaskPrefs.Required("w"))
    detail = str(info.value) + getattr(info.value, "remote_traceback", "")
    assert text in detail
    # the same coordinator still serves, on the same worker (restarted if it died)
    assert await coord.call(("ok", "after"), TaskPrefs.Required("w")) == ("after", "w")
    assert await coord.call(("ok", "other"), TaskPrefs.Required("v")) == ("other", "v")


@pytest.mark.parametrize(
    ("how", "text"),
    [
        ("exception", "injected fault"),
        ("stubborn", "StubbornError"),
        ("sys.exit", "SystemExit"),
        ("os._exit", "exit code 6"),
        ("sigsegv", "SIGSEGV"),
    ],
)
async def test_processor_build_fault(coord: Coordinator, how: str, text: str) -> None:
    """Test that a processor failing to build gives WorkerStartError and leaves nothing behind."""
    await coord.add_worker("ok", _funcs.faulty)
    with pytest.raises(WorkerStartError) as info:
        await coord.add_worker("bad", _funcs.FaultyProcessor(how))
    assert text in str(info.value)
    assert coord.workers() == ["ok"]
    assert await coord.call(("ok", 1)) == (1, "ok")


async def test_big_result(coord: Coordinator) -> None:
    """Test that a 200 MB result arrives whole, and the worker serves on."""
    await coord.add_worker("w", _funcs.faulty)
    data, worker = await coord.call(("big-result", ""))
    assert worker == "w" and len(data) == _funcs.BIG_RESULT_BYTES and data[:1] == data[-1:] == b"x"
    del data
    assert await coord.call(("ok", "after")) == ("after", "w")
