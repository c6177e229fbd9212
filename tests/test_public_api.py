"""The public surface: exports, module names, and what a worker imports."""

from __future__ import annotations

import sys

import procoord
from procoord import Coordinator, TaskPrefs


def test_all_matches_exports() -> None:
    """Test that __all__ is a tuple naming exactly the public objects, each documented."""
    assert isinstance(procoord.__all__, tuple)
    public = {
        n
        for n in dir(procoord)
        if not n.startswith("_") and n != "annotations" and not isinstance(getattr(procoord, n), type(sys))
    }
    assert set(procoord.__all__) == public
    for name in procoord.__all__:
        obj = getattr(procoord, name)
        assert obj.__doc__, f"{name} has no docstring"


def test_public_names_report_the_package() -> None:
    """Test that public classes show "procoord" as their module (reprs, tracebacks)."""
    for name in ("Coordinator", "JoinHandle", "TaskProcessError", "WorkerStats"):
        assert getattr(procoord, name).__module__ == "procoord"


def child_modules(_: object) -> list[str]:
    return sorted(sys.modules)


async def test_worker_does_not_import_ray() -> None:
    """Test that a worker process stays light: no ray, no backends' heavy imports."""
    async with Coordinator() as coord:
        await coord.add_worker("w", child_modules)
        modules, _ = await coord.call(None, TaskPrefs.Any)
    assert "ray" not in modules
    assert "procoord.backends.ray" not in modules
    assert "procoord._worker.core" in modules
