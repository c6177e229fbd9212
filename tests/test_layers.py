"""The import layers: each module imports only from the layers below it, and the worker
process's module imports nothing of the parent's machinery."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "procoord"

# module -> the procoord modules it may import (at module level or inside functions)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "prefs": set(),
    "stats": set(),
    "balancer": set(),
    "_typing": set(),
    "_wire": {"errors"},
    "processor": {"_typing", "_wire", "errors"},
    "_worker.build": {"_wire", "processor"},
    "_worker.core": {"_wire", "errors", "processor", "_worker.build", "_worker.logs"},
    "_worker.logs": {"_wire"},
    "_logs": {"_wire"},
    "_worker.sampler": set(),
    "_worker.tree": set(),
    "_worker.protocol": {"processor"},
    "_worker.pipe": {"_wire", "processor", "_worker.core", "_worker.sampler", "_worker.tree"},
    "_worker.ray_actor": {"_wire", "processor", "_worker.core", "_worker.sampler"},
    "_worker.launcher": {"errors", "_worker.pipe", "_worker.protocol", "_worker.tree"},
    "_remote": {"_wire", "errors"},
    "backends._base": {"_wire", "processor"},
    "backends._pipe": set(),
    "backends._seed": {"_worker.protocol"},
    "backends._launcher": {"errors", "_worker.protocol", "backends._seed"},
    "backends.local": {
        "_remote",
        "_wire",
        "_worker.protocol",
        "errors",
        "processor",
        "backends._base",
        "backends._launcher",
        "backends._pipe",
    },
    "handle": {"_task"},
    "_task": {"prefs"},
    "_slot": {
        "_logs",
        "_remote",
        "_task",
        "_wire",
        "balancer",
        "backends._base",
        "errors",
        "prefs",
        "processor",
        "stats",
    },
    "_ledger": set(),
}


def _is_module(module: str) -> bool:
    return (PACKAGE / (module.replace(".", "/") + ".py")).is_file()


def _imports(module: str) -> set[str]:
    path = PACKAGE / (module.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text())
    package = module.rsplit(".", 1)[0] if "." in module else ""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".") if package else []
            if node.level > 1:
                base = base[: len(base) - (node.level - 1)]
            target = ".".join([*base, node.module] if node.module else base)
            if node.module is None:
                found.update(".".join([*base, alias.name]) for alias in node.names)
            else:
                # ``from .pkg import mod`` imports the module pkg.mod, not (only) pkg
                submodules = {f"{target}.{a.name}" for a in node.names if _is_module(f"{target}.{a.name}")}
                found.update(submodules or {target})
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found.update(n.removeprefix("procoord.") for n in names if n.startswith("procoord."))
    return found


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_module_imports_only_lower_layers(module: str) -> None:
    """Test that a module imports only the procoord modules its layer allows."""
    assert _imports(module) <= ALLOWED[module]


# What the worker side (a worker process, a Ray actor, the launcher) may import of procoord.
WORKER_SIDE = {"_wire", "errors", "processor"}


def _worker_modules() -> list[str]:
    return sorted(f"_worker.{p.stem}" for p in (PACKAGE / "_worker").glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", _worker_modules())
def test_worker_side_imports_only_the_wire_and_the_spec(module: str) -> None:
    """Test that every module of the worker side is in the layer table and imports only
    the worker side, the wire, the processor spec and the errors (no coordinator, no
    backends, no ray)."""
    assert module in ALLOWED
    imported = _imports(module)
    assert {m for m in imported if not m.startswith("_worker.")} <= WORKER_SIDE
    source = (PACKAGE / (module.replace(".", "/") + ".py")).read_text()
    tree = ast.parse(source)
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {n for n in names if n.split(".")[0] == "ray"}
