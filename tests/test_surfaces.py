"""The async and the blocking surface are one: same names, same parameters, same docs."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from procoord import BlockingCoordinator, Coordinator

# What only one side has, and why: the facade adds its bridge to the event loop it owns.
# (The context-manager protocols differ by nature and are left out.)
ASYNC_ONLY: set[str] = set()
BLOCKING_ONLY = {"coordinator", "loop", "run_coroutine", "run_coroutine_nowait"}
DUNDERS = {"__init__", "__len__", "__contains__"}


def _surface(cls: type) -> set[str]:
    own = [k for k in cls.__mro__ if k.__module__.startswith("procoord")]  # with its procoord bases
    return {n for k in own for n in vars(k) if not n.startswith("_") or n in DUNDERS}


MIRRORED = sorted((_surface(Coordinator) - ASYNC_ONLY) & (_surface(BlockingCoordinator) - BLOCKING_ONLY))


def _parameters(fn: Any) -> list[tuple[str, Any, Any, Any]]:
    params = list(inspect.signature(fn).parameters.values())[1:]  # without self
    return [(p.name, p.kind, p.default, p.annotation) for p in params]


def test_same_names() -> None:
    """Test that every public name of Coordinator has its blocking twin, and no more."""
    assert _surface(Coordinator) - ASYNC_ONLY == _surface(BlockingCoordinator) - BLOCKING_ONLY


@pytest.mark.parametrize("name", MIRRORED)
def test_same_parameters(name: str) -> None:
    """Test that a blocking method takes exactly the parameters of its async twin."""
    async_attr = inspect.getattr_static(Coordinator, name)
    blocking_attr = inspect.getattr_static(BlockingCoordinator, name)
    assert type(async_attr) is type(blocking_attr)  # a property stays a property
    if callable(async_attr):
        assert _parameters(async_attr) == _parameters(blocking_attr)


@pytest.mark.parametrize("name", [n for n in MIRRORED if n not in DUNDERS])
def test_same_docstrings(name: str) -> None:
    """Test that a blocking method is documented by its async twin's docstring (plus a
    note on what blocking changes)."""
    async_doc = inspect.cleandoc(inspect.getattr_static(Coordinator, name).__doc__ or "")
    blocking_doc = inspect.cleandoc(inspect.getattr_static(BlockingCoordinator, name).__doc__ or "")
    assert async_doc, f"Coordinator.{name} has no docstring"
    assert blocking_doc == async_doc or blocking_doc.startswith(async_doc + "\n\nBlocking: ")
