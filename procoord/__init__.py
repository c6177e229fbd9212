"""procoord: a multiprocess worker-pool runtime for asyncio.

Stateful processors run in worker processes of their own, one task at a time; a
:class:`Coordinator` routes tasks to them (``TaskPrefs.Any`` / ``Preferred`` /
``Required``), balanced by queue length times each worker's measured task time.
"""

from __future__ import annotations

import logging as _logging

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

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("procoord."):
        try:
            _obj.__module__ = "procoord"
        except (AttributeError, TypeError):
            pass
del _name, _obj
