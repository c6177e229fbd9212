"""Mistakes a newcomer makes, and errors that say what to write instead."""

from __future__ import annotations

import io
import sys
import threading
import types
from typing import Any

import pytest

from procoord import Coordinator, SerializationError, TaskProcessor
from procoord._progress import PlainBar

from . import _funcs


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
