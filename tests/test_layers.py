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
    "_wire": {"errors"},
    "processor": {"_wire", "errors"},
    "_child": {"_wire", "errors", "processor"},
    "_remote": {"_wire", "errors"},
    "backends._base": {"_wire", "processor"},
    "backends.local": {"_child", "_remote", "_wire", "errors", "processor", "backends._base"},
    "handle": {"_task"},
    "_task": {"prefs"},
    "_slot": {"_remote", "_task", "_wire", "balancer", "backends._base", "errors", "prefs", "processor", "stats"},
    "_ledger": set(),
}


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
                found.add(target)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found.update(n.removeprefix("procoord.") for n in names if n.startswith("procoord."))
    return found


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_module_imports_only_lower_layers(module: str) -> None:
    """Test that a module imports only the procoord modules its layer allows."""
    assert _imports(module) <= ALLOWED[module]


def test_worker_module_imports_no_heavy_dependency() -> None:
    """Test that the worker's own module never imports ray or the coordinator."""
    source = (PACKAGE / "_child.py").read_text()
    tree = ast.parse(source)
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {n for n in names if n.split(".")[0] == "ray" or n.endswith("coordinator")}
