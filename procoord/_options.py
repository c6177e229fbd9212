"""The keyword options of the public surface, stated once.

:class:`CoordinatorOptions` are the keyword arguments of
:class:`~procoord.Coordinator` (and of everything that builds one:
:class:`~procoord.BlockingCoordinator`, interface clients); :class:`MapOptions` are the
keyword arguments ``map`` takes besides ``return_exceptions`` (which decides its item
type). Their meaning and defaults are documented on :class:`~procoord.Coordinator` and
:meth:`Coordinator.map <procoord.Coordinator.map>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from ._recycle import check_limits
from .backends._base import Backend

__all__ = ("CoordinatorOptions", "MapOptions", "Settings", "check_options", "check_timeout", "settings")

# Default restart policy: more than this many crashes of one worker within the window
# marks it failed instead of restarting it again.
DEFAULT_RESTART_LIMIT = 5
DEFAULT_RESTART_WINDOW_S = 60.0

# Task times below this count as this for routing: below it the dispatch itself
# dominates and the measurement is mostly noise.
DEFAULT_EWMA_FLOOR_S = 0.001


class CoordinatorOptions(TypedDict, total=False):
    """Keyword arguments of :class:`~procoord.Coordinator` after ``queue_threshold``."""

    backend: Backend | None
    ewma_floor: float
    max_pending: int | None
    task_timeout: float | None
    restart_limit: int
    restart_window: float
    max_tasks_per_worker: int | None
    max_rss_per_worker: int | None


class MapOptions(TypedDict, total=False):
    """Keyword arguments of ``map`` besides ``return_exceptions``."""

    ordered: bool
    window: int | None
    progress: bool | Mapping[str, Any]
    timeout: float | None
    retries: int
    priority: int


def check_options(options: Mapping[str, Any], allowed: type[Any], caller: str) -> None:
    """Raise TypeError, as Python would for a plain signature, for an unknown keyword."""
    known: frozenset[str] = allowed.__optional_keys__ | allowed.__required_keys__
    for name in options:
        if name not in known:
            raise TypeError(
                f"{caller}() got an unexpected keyword argument {name!r} (it takes {', '.join(sorted(known))})"
            )


def check_timeout(timeout: float | None) -> None:
    """Raise ValueError for a timeout that is not a positive number of seconds."""
    if timeout is not None and not timeout > 0:
        raise ValueError(f"a timeout must be a positive number of seconds, not {timeout!r}")


@dataclass(frozen=True, slots=True)
class Settings:
    """A coordinator's options, checked, with their defaults filled in."""

    queue_threshold: int
    backend: Backend | None
    ewma_floor: float
    max_pending: int | None
    task_timeout: float | None
    restart_limit: int
    restart_window: float
    max_tasks_per_worker: int | None = None
    max_rss_per_worker: int | None = None


def settings(queue_threshold: int, options: CoordinatorOptions) -> Settings:
    """Check a coordinator's arguments (ValueError, TypeError naming the one at fault)
    and fill in the defaults."""
    check_options(options, CoordinatorOptions, "Coordinator")
    chosen = Settings(
        queue_threshold,
        options.get("backend"),
        options.get("ewma_floor", DEFAULT_EWMA_FLOOR_S),
        options.get("max_pending"),
        options.get("task_timeout"),
        options.get("restart_limit", DEFAULT_RESTART_LIMIT),
        options.get("restart_window", DEFAULT_RESTART_WINDOW_S),
        options.get("max_tasks_per_worker"),
        options.get("max_rss_per_worker"),
    )
    if not isinstance(queue_threshold, int) or queue_threshold < 1:
        raise ValueError(f"queue_threshold must be an int >= 1, not {queue_threshold!r}")
    if chosen.ewma_floor < 0:
        raise ValueError("ewma_floor must be >= 0")
    if chosen.max_pending is not None and chosen.max_pending < 1:
        raise ValueError("max_pending must be >= 1 (or None for no limit)")
    check_timeout(chosen.task_timeout)
    if chosen.restart_limit < 0 or chosen.restart_window <= 0:
        raise ValueError("restart_limit must be >= 0 and restart_window > 0")
    check_limits(chosen.max_tasks_per_worker, chosen.max_rss_per_worker)
    return chosen
