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
from typing import Any, TypedDict

from .backends._base import Backend

__all__ = ("CoordinatorOptions", "MapOptions", "check_options")


class CoordinatorOptions(TypedDict, total=False):
    """Keyword arguments of :class:`~procoord.Coordinator` after ``queue_threshold``."""

    backend: Backend | None
    ewma_floor: float
    max_pending: int | None
    task_timeout: float | None
    restart_limit: int
    restart_window: float


class MapOptions(TypedDict, total=False):
    """Keyword arguments of ``map`` besides ``return_exceptions``."""

    ordered: bool
    window: int
    progress: bool | Mapping[str, Any]
    timeout: float | None


def check_options(options: Mapping[str, Any], allowed: type[Any], caller: str) -> None:
    """Raise TypeError, as Python would for a plain signature, for an unknown keyword."""
    known: frozenset[str] = allowed.__optional_keys__ | allowed.__required_keys__
    for name in options:
        if name not in known:
            raise TypeError(
                f"{caller}() got an unexpected keyword argument {name!r} (it takes {', '.join(sorted(known))})"
            )
