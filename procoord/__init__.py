"""procoord: a multiprocess worker-pool runtime for asyncio.

Stateful processors run in worker processes of their own, one task at a time; a
:class:`Coordinator` routes tasks to them (``TaskPrefs.Any`` / ``Preferred`` /
``Required``), balanced by queue length times each worker's measured task time.
"""

from __future__ import annotations

import importlib as _importlib
import logging as _logging
import sys as _sys
import types as _types
import typing as _typing

if _typing.TYPE_CHECKING:
    from .blocking import BlockingCoordinator as BlockingCoordinator
    from .coordinator import Coordinator as Coordinator
    from .errors import CoordinatorClosedError as CoordinatorClosedError
    from .errors import NoSuchWorkerError as NoSuchWorkerError
    from .errors import NoWorkersError as NoWorkersError
    from .errors import ProcoordError as ProcoordError
    from .errors import SerializationError as SerializationError
    from .errors import TaskProcessError as TaskProcessError
    from .errors import TaskTimeoutError as TaskTimeoutError
    from .errors import WorkerLostError as WorkerLostError
    from .errors import WorkerStartError as WorkerStartError
    from .executor import Executor as Executor
    from .handle import JoinHandle as JoinHandle
    from .interface import interface as interface
    from .prefs import TaskPrefs as TaskPrefs
    from .processor import TaskProcessor as TaskProcessor
    from .stats import WorkerStats as WorkerStats
    from .stats import format_stats as format_stats

__all__ = (
    "BlockingCoordinator",
    "Coordinator",
    "CoordinatorClosedError",
    "Executor",
    "JoinHandle",
    "NoSuchWorkerError",
    "NoWorkersError",
    "ProcoordError",
    "SerializationError",
    "TaskPrefs",
    "TaskProcessError",
    "TaskProcessor",
    "TaskTimeoutError",
    "WorkerLostError",
    "WorkerStartError",
    "WorkerStats",
    "format_stats",
    "interface",
)

__version__ = "0.1.0"

# A library logs and leaves the output to the application: without this, Python's
# last-resort handler would print procoord's warnings when logging is not configured.
_logging.getLogger("procoord").addHandler(_logging.NullHandler())

# Each public name and the module that defines it. Modules are imported on first use
# (PEP 562), so ``import procoord`` stays light and a worker process loads only the
# worker side.
_HOMES: dict[str, str] = {
    "BlockingCoordinator": "blocking",
    "Coordinator": "coordinator",
    "CoordinatorClosedError": "errors",
    "Executor": "executor",
    "JoinHandle": "handle",
    "NoSuchWorkerError": "errors",
    "NoWorkersError": "errors",
    "ProcoordError": "errors",
    "SerializationError": "errors",
    "TaskPrefs": "prefs",
    "TaskProcessError": "errors",
    "TaskProcessor": "processor",
    "TaskTimeoutError": "errors",
    "WorkerLostError": "errors",
    "WorkerStartError": "errors",
    "WorkerStats": "stats",
    "format_stats": "stats",
    "interface": "interface",
}


# The modules of the coordinators: before the first is imported, the launcher seed is
# started, so its interpreter starts while this process imports the coordinator.
_STARTS_WORKERS = frozenset({"blocking", "coordinator", "executor"})


def __getattr__(name: str) -> _typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if home in _STARTS_WORKERS and f"{__name__}.{home}" not in _sys.modules:
        from ._launch import start_seed_early

        start_seed_early()
    _importlib.import_module(f"{__name__}.{home}")
    _export_loaded()
    return globals()[name]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def _export_loaded() -> None:
    """Bind the public names of every module loaded so far, and let them report
    "procoord" as their module (reprs, tracebacks)."""
    namespace = globals()
    for name, home in _HOMES.items():
        if name in namespace and not isinstance(namespace[name], _types.ModuleType):
            continue
        module = _sys.modules.get(f"{__name__}.{home}")
        obj = getattr(module, name, None) if module is not None else None
        if obj is None or isinstance(obj, _types.ModuleType):  # not loaded, or still being initialised
            continue
        if getattr(obj, "__module__", "").startswith(f"{__name__}."):
            try:
                obj.__module__ = __name__
            except (AttributeError, TypeError):
                pass
        namespace[name] = obj


class _Package(_types.ModuleType):
    """The package's module type: a submodule named like a public name (``interface``)
    does not hide that name once it is imported."""

    def __setattr__(self, name: str, value: _typing.Any) -> None:
        super().__setattr__(name, value)
        if isinstance(value, _types.ModuleType) and name in _HOMES:
            _export_loaded()


_sys.modules[__name__].__class__ = _Package
