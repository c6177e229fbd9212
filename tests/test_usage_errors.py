"""Mistakes a newcomer makes, and errors that say what to write instead."""

from __future__ import annotations

import asyncio
import gc
import io
import sys
import threading
import types
import warnings
from typing import Any

import pytest

from procoord import BlockingCoordinator, Coordinator, SerializationError, TaskPrefs, TaskProcessor
from procoord._progress import PlainBar

from . import _funcs
from .conftest import DEADLOCK_TIMEOUT


class Holder(TaskProcessor):
    def __init__(self) -> None:
        self.lock = threading.Lock()  # cannot be pickled

    def do_work(self, task: Any) -> Any:
        return task


async def test_add_worker_refuses_a_processor_class(coord: Coordinator) -> None:
    """Test that a TaskProcessor class (not an instance) is refused at add_worker, naming
    both fixes, and no worker is started."""
    with pytest.raises(TypeError, match=r"class Counter, not an instance") as info:
        await coord.add_worker("w", _funcs.Counter)
    assert "Counter(...)" in str(info.value) and "register(" in str(info.value)
    assert coord.workers() == []
    assert await coord.add_worker("w", _funcs.Counter()) is False  # the instance works
    assert await coord.call(3) == (3, "w")


class Scorer:
    """A callable class: its instances are processors, the class itself is not."""

    def __init__(self, weight: int = 2) -> None:
        self.weight = weight

    def __call__(self, task: int) -> int:
        return task * self.weight


async def test_add_worker_refuses_a_callable_class_and_accepts_a_builtin_type(coord: Coordinator) -> None:
    """Test that a class whose instances are the callables (it defines __call__) is refused
    at add_worker naming the fix, while a type used as a function (int, str) is a processor."""
    with pytest.raises(TypeError, match=r"class Scorer, not an instance") as info:
        await coord.add_worker("w", Scorer)
    assert "Scorer(...)" in str(info.value)
    assert coord.workers() == []
    await coord.add_worker("w", Scorer())
    assert await coord.call(3) == (6, "w")
    await coord.add_worker("i", int)
    assert await coord.call("7", TaskPrefs.Required("i")) == (7, "i")


async def test_unpicklable_processor_names_register(coord: Coordinator) -> None:
    """Test that a processor that cannot be pickled fails with the way out: a registered factory."""
    with pytest.raises(SerializationError, match=r"coord\.register\(name, factory") as info:
        await coord.add_worker("w", Holder())
    assert info.value.stage == "processor" and "lock" in str(info.value)
    coord.register("holder", Holder)
    await coord.add_worker("w", "holder")
    assert await coord.call(1) == (1, "w")


async def test_map_progress_takes_tqdm_options(coord: Coordinator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Test that progress=dict(...) reaches tqdm.auto's tqdm over procoord's defaults."""
    bars: list[Any] = []

    class FakeTqdm:
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs, self.n, self.closed = kwargs, 0, False
            bars.append(self)

        def update(self, n: int = 1) -> None:
            self.n += n

        def close(self) -> None:
            self.closed = True

    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(auto=None))
    monkeypatch.setitem(sys.modules, "tqdm.auto", types.SimpleNamespace(tqdm=FakeTqdm))
    await coord.add_worker("w", _funcs.double)
    async for _ in coord.map(range(5), progress={"desc": "pages", "unit": "page", "leave": False}):
        pass
    [bar] = bars
    assert bar.kwargs["desc"] == "pages" and bar.kwargs["unit"] == "page" and bar.kwargs["leave"] is False
    assert bar.kwargs["total"] == 5 and bar.n == 5 and bar.closed


async def test_map_progress_options_without_tqdm(
    coord: Coordinator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Test that the plain bar honours desc, and disable draws nothing."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    await coord.add_worker("w", _funcs.double)
    async for _ in coord.map(range(3), progress={"desc": "pages"}):
        pass
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("pages: 3/3")
    async for _ in coord.map(range(3), progress={"disable": True}):
        pass
    assert capsys.readouterr().err == ""


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_bar_leaves_no_stale_tail() -> None:
    """Test that a redraw shorter than the last one blanks the leftover characters."""
    out = FakeTerminal()
    bar = PlainBar(10, desc="job", file=out)
    bar.update(5)
    bar._draw(bar._start + 1.0)  # 5/10 with an ETA
    bar.update(5)
    bar.close()  # 10/10: no ETA, a shorter line
    screen: list[str] = []
    for segment in out.getvalue().split("\r")[1:]:
        line = segment.rstrip("\n")
        screen = list(line) + screen[len(line) :]
    shown = "".join(screen)
    assert "ETA" not in shown and shown.rstrip().endswith("]")


# -- async API used as if it were sync -------------------------------------------------------


def test_sync_with_names_async_with_and_the_blocking_facade() -> None:
    """Test that `with Coordinator()` says to write `async with`, or to use BlockingCoordinator."""
    with pytest.raises(TypeError, match=r"async with Coordinator\(\.\.\.\) as coord") as info, Coordinator():
        pass
    assert "BlockingCoordinator" in str(info.value)


async def test_plain_for_over_map_names_async_for(coord: Coordinator) -> None:
    """Test that a plain `for` over map() says to write `async for`, and nothing runs."""
    await coord.add_worker("w", _funcs.double)
    results = coord.map(range(3))
    with pytest.raises(TypeError, match=r"async for result, worker in coord\.map"):
        for _ in results:
            pass
    assert [r async for r, _ in results] == [0, 2, 4]  # the iterator is still usable


async def test_unawaited_run_says_to_await(coord: Coordinator) -> None:
    """Test that using run()'s coroutine as a handle says to write `await coord.run(...)`;
    awaiting it, create_task and gather still work."""
    await coord.add_worker("w", _funcs.double)
    pending = coord.run(2)
    with pytest.raises(AttributeError, match=r"handle = await coord\.run\(\.\.\.\)"):
        pending.join()
    handle = await pending
    assert await handle == (4, "w")
    handle = await asyncio.create_task(coord.run(3))
    assert await handle == (6, "w")
    [handle] = await asyncio.gather(coord.run(4))
    assert await handle == (8, "w")
    call = coord.call(5)
    with pytest.raises(asyncio.InvalidStateError, match=r"await coord\.call\(\.\.\.\)"):
        call.result()
    assert await call == (10, "w")
    assert await asyncio.create_task(coord.call(6)) == (12, "w")
    [pair] = await asyncio.gather(coord.call(7))
    assert pair == (14, "w")
    assert await asyncio.wait_for(coord.call(8), DEADLOCK_TIMEOUT) == (16, "w")


async def test_a_run_awaited_twice_says_to_call_it_again(coord: Coordinator) -> None:
    """Test that awaiting one `coord.run(...)` twice raises (as a coroutine does), saying to
    call run again, and queues nothing more; a closed one queues nothing and does not warn."""
    await coord.add_worker("w", _funcs.double)
    pending = coord.run(2)
    handle = await pending
    with pytest.raises(RuntimeError, match=r"coord\.run\(\.\.\.\) was awaited already: call it again"):
        await pending
    assert await handle == (4, "w")
    assert (await coord.stats())["w"].completed == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        closed = coord.run(3)
        closed.close()
        del closed
        gc.collect()
    assert coord.pending == 0


async def test_unpacking_a_handle_says_to_await_it(coord: Coordinator) -> None:
    """Test that unpacking what `await coord.run(...)` gives (a handle, not the result)
    says to await the handle or to use call; the task still runs."""
    await coord.add_worker("w", _funcs.double)
    with pytest.raises(TypeError, match=r"result, worker = await handle") as info:
        _result, _worker = await coord.run(2)  # type: ignore[misc]
    assert "await coord.call(...)" in str(info.value)
    assert await coord.call(3) == (6, "w")
    assert (await coord.stats())["w"].completed == 2  # the first ran before it, on the one worker


async def test_a_call_never_awaited_warns_and_its_task_runs(coord: Coordinator) -> None:
    """Test that a call dropped without awaiting it warns, as a coroutine would, naming
    the fix; its task was queued at once and runs."""
    await coord.add_worker("w", _funcs.double)
    with pytest.warns(RuntimeWarning, match=r"coord\.call\(\.\.\.\) was never awaited"):
        coord.call(1)
        assert coord.pending == 1
        assert await coord.call(2) == (4, "w")  # the first ran before it, on the one worker
        gc.collect()
    assert (await coord.stats())["w"].completed == 2


async def test_a_run_never_awaited_warns_naming_the_fix(coord: Coordinator) -> None:
    """Test that a run dropped without awaiting it (its task is never queued) warns once,
    saying what to write, and not in terms of procoord's internals."""
    await coord.add_worker("w", _funcs.double)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coord.run(1)
        gc.collect()
    [warning] = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    text = str(warning.message)
    assert "coord.run(...) was never awaited" in text and "handle = await coord.run(...)" in text
    assert "_run" not in text.replace("coord.run", "")
    assert coord.pending == 0
    assert await coord.call(2) == (4, "w")


def test_outside_any_event_loop_names_asyncio() -> None:
    """Test that driving the coordinator from a non-asyncio loop (a bare coroutine send)
    says procoord needs an asyncio event loop."""
    coordinator = Coordinator()
    step = coordinator.__aenter__()
    with pytest.raises(RuntimeError, match=r"needs a running asyncio event loop"):
        step.send(None)


def test_under_trio_names_asyncio() -> None:
    """Test that under trio, the first use says procoord runs on asyncio, and how to get there."""
    trio = pytest.importorskip("trio")

    async def main() -> None:
        async with Coordinator() as coordinator:
            await coordinator.add_worker("w", _funcs.double)

    with pytest.raises(RuntimeError, match=r"procoord runs on asyncio, and this is trio") as info:
        trio.run(main)
    assert "anyio" in str(info.value) and "BlockingCoordinator" in str(info.value)


def test_anyio_asyncio_backend_works_and_trio_reaches_the_blocking_facade() -> None:
    """Test the two ways out the trio error names: anyio on its asyncio backend runs the
    coordinator, and trio code reaches workers through BlockingCoordinator in a thread."""
    anyio = pytest.importorskip("anyio")
    trio = pytest.importorskip("trio")

    async def with_anyio() -> list[Any]:
        async with Coordinator() as coordinator:
            await coordinator.add_worker("w", _funcs.double)
            return [await coordinator.call(1), *[r async for r, _ in coordinator.map(range(3))]]

    assert anyio.run(with_anyio, backend="asyncio") == [(2, "w"), 0, 2, 4]

    def blocking() -> Any:
        with BlockingCoordinator() as coordinator:
            coordinator.add_worker("w", _funcs.double)
            return coordinator.call(5)

    async def from_trio() -> Any:
        return await trio.to_thread.run_sync(blocking)

    assert trio.run(from_trio) == (10, "w")
