"""The import layers: every module of procoord, found on disk, has a rule naming the
procoord modules it may import; there is no import circle; and the worker side imports
nothing of the parent's machinery."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "procoord"

WORKER_SIDE = {"_typing", "_wire", "_wire.memory", "_wire.payload", "errors", "processor"}
"""What the code that runs in a worker process may import (plus itself): the wire (with
its payloads), the errors, the processor spec and its type variables."""

ANY_MODULE = {"*"}

# module, or package (its rule covers every module in it) -> what it may import; a
# package in a set allows every module of that package. A module always may import
# the modules of its own package. Layers, bottom up: leaves (stdlib only); the wire and
# the records; the worker side; the parent's channel ends (backends); per-worker state
# and the public records; dispatch and bulk work; the coordinator; what builds on it;
# the package, the command line and tooling.
RULES: dict[str, set[str]] = {
    "errors": set(),
    "prefs": set(),
    "stats": set(),
    "balancer": set(),
    "_ledger": set(),
    "_progress": set(),
    "_misuse": set(),
    "_typing": set(),
    "_launch": set(),
    "_wire": {"errors"},
    "processor": {"_typing", "_wire", "errors"},
    "_task": {"prefs"},
    "_worker": WORKER_SIDE,
    "_remote": {"_wire", "errors"},
    "_logs": {"_wire"},
    "backends._base": {"_wire", "processor"},
    "backends._pipe": set(),
    "backends._seed": {"_launch", "_worker"},
    "backends._launcher": {"_worker", "backends._seed", "errors"},
    "backends._shm": {"_wire", "_worker"},
    "backends._channel": {
        "_remote",
        "_wire",
        "errors",
        "backends._base",
        "backends._launcher",
        "backends._pipe",
        "backends._shm",
    },
    "backends.local": {
        "_worker",
        "errors",
        "processor",
        "backends._base",
        "backends._channel",
        "backends._launcher",
        "backends._seed",
        "backends._shm",
    },
    "backends.inline": {"_remote", "_wire", "_worker", "errors", "processor", "backends._base"},
    "backends.ray": {"_remote", "_wire", "_worker", "errors", "processor", "backends._base"},
    "backends": {"backends._base", "backends.local", "backends.inline", "backends.ray"},
    "handle": {"_task"},
    "_options": {"_recycle", "backends._base"},
    "_restarts": set(),
    "_recycle": set(),
    "_loss": {"_task", "errors", "prefs"},
    "_slot_life": {"_recycle", "_restarts", "_task", "_wire", "backends._base", "errors", "processor", "stats"},
    "_slot": {
        "_logs",
        "_loss",
        "_misuse",
        "_recycle",
        "_remote",
        "_slot_life",
        "_stream",
        "_task",
        "_wire",
        "backends._base",
        "balancer",
        "errors",
        "prefs",
        "processor",
        "stats",
    },
    "_loops": set(),
    "_stream": {"_loops", "_misuse", "_task", "_wire"},
    "_dispatch": {"_ledger", "_slot", "_task", "_wire", "balancer", "errors", "prefs", "stats"},
    "_shutdown": {"_dispatch", "_slot"},
    "_bulk": {"_loops", "_misuse", "_options", "_progress", "_task", "errors", "handle", "prefs"},
    "_recycler": {"_dispatch", "_slot", "errors"},
    "_call": set(),
    "_work_shapes": {"_bulk", "_dispatch", "_ledger", "_options", "_stream", "_task", "_typing", "prefs"},
    "_membership": {"_dispatch", "_recycle", "_shutdown", "_slot", "backends._base", "errors", "processor"},
    "coordinator": {
        "_bulk",
        "_call",
        "_dispatch",
        "_membership",
        "_misuse",
        "_options",
        "_recycler",
        "_remote",
        "_shutdown",
        "_stream",
        "_task",
        "_typing",
        "_wire",
        "_work_shapes",
        "backends._base",
        "backends.local",
        "errors",
        "handle",
        "prefs",
        "processor",
        "stats",
    },
    "_loop_thread": {"coordinator"},
    "blocking": {
        "_bulk",
        "_loop_thread",
        "_loops",
        "_options",
        "_stream",
        "_typing",
        "backends._base",
        "coordinator",
        "errors",
        "handle",
        "prefs",
        "processor",
        "stats",
    },
    "_interface_spec": {"_typing", "processor"},
    "_interface_client": {
        "_interface_spec",
        "_stream",
        "backends._base",
        "coordinator",
        "handle",
        "prefs",
        "stats",
    },
    "interface": {"_interface_client", "_interface_spec", "coordinator"},
    "_demo": {"coordinator", "prefs", "processor", "stats"},
    "executor": {"backends._base", "blocking", "coordinator", "errors", "prefs", "stats", "_loop_thread", "_options"},
    "metrics": {"blocking", "coordinator", "stats"},
    # The package, the command line and the benchmark sit on top of everything.
    "__init__": ANY_MODULE,
    "__main__": ANY_MODULE,
    "_bench": ANY_MODULE,
}


def _discover() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _discover()


def _package_of(module: str, path: Path) -> str:
    if module == "__init__":
        return ""
    if path.name == "__init__.py":
        return module
    return module.rsplit(".", 1)[0] if "." in module else ""


def _resolve(name: str) -> str:
    """The module a dotted name imports: itself, or the package it is an attribute of."""
    while name and name not in MODULES:
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return name or "__init__"


def _imports(module: str) -> set[str]:
    """The procoord modules ``module`` imports, anywhere in it (TYPE_CHECKING too)."""
    path = MODULES[module]
    package = _package_of(module, path)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".") if package else []
            if node.level > 1:
                base = base[: len(base) - (node.level - 1)]
            prefix = [*base, node.module] if node.module else base
            for alias in node.names:
                found.add(_resolve(".".join([*prefix, alias.name])))
        elif isinstance(node, ast.Import):
            found.update(
                _resolve(a.name.removeprefix("procoord.")) for a in node.names if a.name.startswith("procoord.")
            )
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("procoord."):
            prefix = (node.module or "").removeprefix("procoord.")
            found.update(_resolve(f"{prefix}.{alias.name}") for alias in node.names)
    found.discard(module)
    return found


def _rule_for(module: str) -> str | None:
    name = module
    while name:
        if name in RULES:
            return name
        name = name.rsplit(".", 1)[0] if "." in name else ""
    return None


def _allowed(target: str, allowed: set[str], own_package: str) -> bool:
    if "*" in allowed:
        return True
    if own_package and (target == own_package or target.startswith(own_package + ".")):
        return True
    return any(target == a or target.startswith(a + ".") for a in allowed)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_only_lower_layers(module: str) -> None:
    """Test that every module has a rule and imports only the procoord modules it allows."""
    rule = _rule_for(module)
    assert rule is not None, f"procoord.{module} has no rule: add one to RULES in tests/test_layers.py"
    own_package = rule if rule in MODULES and MODULES[rule].name == "__init__.py" else ""
    denied = {t for t in _imports(module) if not _allowed(t, RULES[rule], own_package)}
    assert not denied, f"procoord.{module} may not import {sorted(denied)} (rule {rule!r})"


def test_no_import_circle() -> None:
    """Test that no procoord module imports itself through others (TYPE_CHECKING imports
    and imports inside functions count)."""
    graph = {m: _imports(m) & set(MODULES) for m in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if target == "__init__" or module == "__init__":
                continue  # the package itself only re-exports
            if state.get(target) == 1:
                cycle = [*path[path.index(target) :], target] if target in path else [module, target]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_worker_side_imports_nothing_of_the_parent() -> None:
    """Test that the worker side, followed import by import, reaches only the wire, the
    errors and the processor spec: never the coordinator, dispatch, backends or ray."""
    worker = {m for m in MODULES if _rule_for(m) == "_worker"}
    assert worker, "no worker-side module found"
    reached: set[str] = set()
    todo = list(worker)
    while todo:
        module = todo.pop()
        for target in _imports(module) - reached:
            reached.add(target)
            if target in MODULES:
                todo.append(target)
    assert reached <= WORKER_SIDE | worker, sorted(reached - WORKER_SIDE - worker)
    for module in worker:
        tree = ast.parse(MODULES[module].read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {n for n in names if n.split(".")[0] == "ray"}, module
