"""Interfaces through their public API, with real worker processes."""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import pydoc
from pathlib import Path
from typing import Any

import pytest

import procoord
from procoord import Coordinator, JoinHandle, TaskProcessError
from procoord.interface import InterfaceClient, MethodCall, PendingCall

from ._run import run_python

ROOT = Path(__file__).resolve().parent.parent


@procoord.interface
class Counter:
    """A counter with a default method that calls the others."""

    async def add(self, amount: int, *, times: int = 1) -> int:
        """Add ``amount`` ``times`` times; return the new total."""
        ...

    async def total(self) -> int: ...

    async def pid(self) -> int:
        raise NotImplementedError

    async def fail(self, message: str) -> None: ...

    async def add_many(self, amounts: list[int]) -> tuple[int, int]:
        """A default body: runs in the worker, awaiting the other methods on self."""
        for amount in amounts:
            await self.add(amount)
        return await self.total(), await self.pid()


class Tally(Counter.Processor):
    def __init__(self) -> None:
        self.value = 0

    async def add(self, amount: int, *, times: int = 1) -> int:
        self.value += amount * times
        return self.value

    async def total(self) -> int:
        return self.value

    async def pid(self) -> int:
        return os.getpid()

    async def fail(self, message: str) -> None:
        raise ValueError(message)


class DoubleTally(Tally):
    async def add_many(self, amounts: list[int]) -> tuple[int, int]:
        return sum(amounts) * 2, os.getpid()


class HalfTally(Counter.Processor):
    async def add(self, amount: int, *, times: int = 1) -> int:
        return amount


@procoord.interface
class Reserved:
    """Method names that a client or a handle also uses."""

    async def join(self, a: int, b: int) -> int: ...

    async def close(self) -> str: ...

    async def run(self, task: str) -> str: ...

    async def wait_forever(self) -> None:
        await asyncio.Event().wait()


class ReservedImpl(Reserved.Processor):
    async def join(self, a: int, b: int) -> int:
        return a + b

    async def close(self) -> str:
        return "closed"

    async def run(self, task: str) -> str:
        return task.upper()


# -- declaration ------------------------------------------------------------------------


def test_proxy_methods_have_the_interface_signatures() -> None:
    """Test that proxy methods show the interface's signatures and docs to inspect and help()."""
    family = Counter(Coordinator())
    proxy = family.any()
    assert str(inspect.signature(proxy.add)) == "(amount: 'int', *, times: 'int' = 1) -> 'int'"
    assert str(inspect.signature(proxy.add_many)) == "(amounts: 'list[int]') -> 'tuple[int, int]'"
    assert {"add", "total", "pid", "fail", "add_many"} <= set(dir(proxy))
    text = pydoc.render_doc(proxy, renderer=pydoc.plaintext)
    assert "add(self, amount: 'int', *, times: 'int' = 1) -> 'int'" in text
    assert "Add ``amount`` ``times`` times" in text
    assert Counter.Processor.__qualname__ == "Counter.Processor"
    assert issubclass(Counter.Processor, procoord.TaskProcessor)


def test_body_less_methods_are_the_abstract_ones() -> None:
    """Test that `...`, docstring-only and `raise NotImplementedError` bodies must be implemented."""
    assert inspect.isabstract(Counter.Processor)
    assert Counter.Processor.__abstractmethods__ == {"add", "total", "pid", "fail"}
    assert not inspect.isabstract(Tally)


def test_incomplete_processor_is_refused_naming_the_missing_methods() -> None:
    """Test that a processor leaving body-less methods unimplemented cannot be built."""
    with pytest.raises(TypeError, match=r"HalfTally does not implement fail, pid, total"):
        HalfTally()


async def test_client_refuses_incomplete_or_foreign_processors() -> None:
    """Test that add_worker and register on a client refuse what cannot serve the interface."""
    async with Counter() as family:
        with pytest.raises(TypeError, match=r"run a subclass of Counter\.Processor"):
            await family.add_worker("w", lambda x: x)
        with pytest.raises(TypeError, match=r"run a subclass of Counter\.Processor"):
            await family.add_worker("w", ReservedImpl())
        with pytest.raises(TypeError, match="HalfTally does not implement"):
            family.register("half", HalfTally)
        assert await family.stats() == {}


def test_decorator_refuses_what_is_not_an_interface() -> None:
    """Test that @interface rejects sync public methods, empty classes and its own names."""
    with pytest.raises(TypeError, match=r"Sync.go must be an `async def` method"):

        @procoord.interface
        class Sync:
            def go(self) -> None: ...

    with pytest.raises(TypeError, match="declares no `async def` methods"):

        @procoord.interface
        class Empty:
            pass

    with pytest.raises(TypeError, match="Processor is made by @interface"):

        @procoord.interface
        class Own:
            class Processor:
                pass

            async def go(self) -> None: ...

    with pytest.raises(TypeError, match="is not an interface"):
        InterfaceClient(Tally)


async def test_wrong_call_raises_type_error_before_queuing(coord: Coordinator) -> None:
    """Test that a call that does not fit the signature raises TypeError and queues nothing."""
    family = Counter(coord)
    await family.add_worker("w", Tally())
    proxy = family.any()
    with pytest.raises(TypeError, match=r"Counter.add\(\): missing a required argument: 'amount'"):
        proxy.add()
    with pytest.raises(TypeError, match="unexpected keyword argument 'tims'"):
        proxy.add(1, tims=2)
    with pytest.raises(TypeError, match="too many positional arguments"):
        proxy.total(1)
    with pytest.raises(TypeError, match="is not a method of the Counter interface"):
        proxy(Reserved.close)
    assert coord.pending == 0
    assert (await family.stats())["w"].completed == 0
    assert await proxy.add(5, times=2).join() == (10, "w")


# -- calls ------------------------------------------------------------------------------


async def test_await_gives_a_join_handle_and_join_the_pair(coord: Coordinator) -> None:
    """Test that awaiting a call gives its JoinHandle (once) and .join() gives (result, worker)."""
    family = Counter(coord)
    await family.add_worker("w", Tally())
    call = family.any().add(3)
    assert isinstance(call, PendingCall)
    handle = await call
    assert isinstance(handle, JoinHandle)
    assert await call is handle  # queued once, however often it is awaited
    assert await handle == (3, "w")
    assert await call.join() == (3, "w")
    assert await family.any().total().join() == (3, "w")


async def test_state_persists_and_calls_reach_the_worker_as_method_calls(coord: Coordinator) -> None:
    """Test that calls are ordinary tasks: MethodCall records through Coordinator.run."""
    family = Counter(coord)
    await family.add_worker("w", Tally())
    for i in range(1, 4):
        await family.any().add(i).join()
    assert await family.any().total().join() == (6, "w")
    # The same record through the coordinator directly is the same call.
    assert await coord.call(MethodCall("add", (4,), {"times": 1})) == (10, "w")
    with pytest.raises(TaskProcessError) as info:
        await coord.call("not a call")
    assert isinstance(info.value.__cause__, TypeError)


async def test_default_method_runs_in_the_worker_awaiting_the_others(coord: Coordinator) -> None:
    """Test that a default-body method runs inside the worker and awaits the others on self."""
    family = Counter(coord)
    await family.add_worker("w", Tally())
    (total, pid), worker = await family.any().add_many([1, 2, 3]).join()
    assert (total, worker) == (6, "w")
    assert pid != os.getpid()
    assert pid == (await family.stats())["w"].pid
    assert await family.any().total().join() == (6, "w")


async def test_a_processor_may_override_a_default_method(coord: Coordinator) -> None:
    """Test that a processor's own version of a default method is the one that runs."""
    family = Counter(coord)
    await family.add_worker("w", DoubleTally())
    (total, _), _ = await family.any().add_many([1, 2]).join()
    assert total == 6


async def test_routing_any_prefer_require(coord: Coordinator) -> None:
    """Test that any(), prefer(ident) and require(ident) route as TaskPrefs do."""
    family = Counter(coord)
    await family.add_worker("a", Tally())
    await family.add_worker("b", Tally())
    _, worker = await family.require("b").add(1).join()
    assert worker == "b"
    _, worker = await family.prefer("a").add(1).join()
    assert worker == "a"
    _, worker = await family.prefer("nobody").add(1).join()
    assert worker in ("a", "b")
    workers = {worker for _, worker in await asyncio.gather(*(family.any().add(1).join() for _ in range(6)))}
    assert workers <= {"a", "b"}
    pids = {(await family.require(w).pid().join())[0] for w in ("a", "b")}
    assert len(pids) == 2
    with pytest.raises(procoord.NoSuchWorkerError):
        await family.require("nobody").total()
    assert await family.remove_worker("b")
    assert list(await family.stats()) == ["a"]


async def test_method_errors_propagate_as_task_process_error(coord: Coordinator) -> None:
    """Test that an exception in a method fails that call only, with the original as __cause__."""
    family = Counter(coord)
    await family.add_worker("w", Tally())
    with pytest.raises(TaskProcessError) as info:
        await family.any().fail("no luck").join()
    assert info.value.worker == "w"
    assert isinstance(info.value.__cause__, ValueError)
    assert "no luck" in info.value.remote_traceback
    assert await family.any().add(1).join() == (1, "w")


async def test_method_names_join_close_run_are_usable(coord: Coordinator) -> None:
    """Test that interface methods named join, close and run do not clash with internals."""
    family = Reserved(coord)
    await family.add_worker("r", ReservedImpl())
    proxy = family.any()
    assert await proxy.join(2, 3).join() == (5, "r")
    assert await proxy.close().join() == ("closed", "r")
    assert await (await proxy.run("x")) == ("X", "r")
    assert await proxy(Reserved.join, 1, b=1).join() == (2, "r")
    assert not coord.closed


async def test_typed_spelling_is_the_same_call(coord: Coordinator) -> None:
    """Test that proxy(Interface.method, ...) runs the same call as proxy.method(...)."""
    family = InterfaceClient(Counter, coord)
    await family.add_worker("w", Tally())
    assert await family.any()(Counter.add, 2, times=3).join() == (6, "w")
    with pytest.raises(TypeError, match="missing a required argument"):
        family.any()(Counter.add)


async def test_client_with_its_own_coordinator() -> None:
    """Test that Interface(**options) builds its own coordinator and `async with` closes it."""
    async with Counter(queue_threshold=2) as family:
        assert family.coordinator.queue_threshold == 2
        family.register("tally", Tally)
        await family.add_worker("w", "tally")
        assert await family.any().add(7).join() == (7, "w")
        assert (await family.stats())["w"].factory == "tally"
    assert family.coordinator.closed
    with pytest.raises(TypeError, match="takes no Coordinator options"):
        Counter(family.coordinator, queue_threshold=2)
    with pytest.raises(ValueError, match="positive number of seconds"):
        family.any(timeout=0)


async def test_per_call_timeout_applies(coord: Coordinator) -> None:
    """Test that a proxy's timeout becomes the task's timeout, and the worker serves on afterwards."""
    family = Reserved(coord)
    await family.add_worker("r", ReservedImpl())
    with pytest.raises(procoord.TaskTimeoutError):
        await family.any(timeout=0.2).wait_forever().join()
    assert await family.require("r").run("after").join() == ("AFTER", "r")


def test_a_call_never_awaited_warns() -> None:
    """Test that dropping a call without awaiting it warns, as a coroutine does."""
    family = Counter(Coordinator())
    with pytest.warns(RuntimeWarning, match="never awaited"):
        family.any().add(1)
        gc.collect()


# -- the example and static typing --------------------------------------------------------


def test_cat_family_example_runs() -> None:
    """Test that examples/cat_family.py runs to the end with four cats and ten jobs."""
    proc = run_python([str(ROOT / "examples" / "cat_family.py")])  # against this checkout
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.count("made ball-") == 10
    assert "jobs per cat:" in out
    assert out.count("meow") + out.count("MEOW") == 30
    for cat in ("Maple", "Suduko", "Autocat", "Oktocat"):
        assert cat in out


def test_mypy_checks_the_typed_spelling(tmp_path: Path) -> None:
    """Test that mypy accepts the typed spelling and reports each misuse marked `# E`."""
    api = pytest.importorskip("mypy.api")
    ok = ROOT / "tests" / "typing" / "interface_ok.py"
    bad = ROOT / "tests" / "typing" / "interface_bad.py"
    stdout, stderr, _ = api.run(
        ["--strict", "--no-error-summary", "--cache-dir", str(tmp_path / "cache"), str(ok), str(bad)]
    )
    assert not stderr
    reported = {_error_line(line) for line in stdout.splitlines() if ": error:" in line}
    expected = {
        ("interface_bad.py", n)
        for n, text in enumerate(bad.read_text().splitlines(), start=1)
        if text.rstrip().endswith("# E")
    }
    assert reported == expected, stdout


def _error_line(line: str) -> Any:
    path, number, *_ = line.split(":")
    return (Path(path).name, int(number))
