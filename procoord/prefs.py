"""Routing preferences: where a task may run."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import ClassVar, Final

__all__ = ("TaskPrefs",)


@dataclass(frozen=True, slots=True)
class _Any:
    """Run on the most available worker."""

    def __repr__(self) -> str:
        return "TaskPrefs.Any"


@dataclass(frozen=True, slots=True)
class Preferred:
    """Run on ``ident`` while its queue is shorter than the coordinator's
    ``queue_threshold``; otherwise (or when there is no such worker) as ``Any``."""

    ident: Hashable

    def __repr__(self) -> str:
        return f"TaskPrefs.Preferred({self.ident!r})"


@dataclass(frozen=True, slots=True)
class Required:
    """Run on ``ident`` only, however long its queue."""

    ident: Hashable

    def __repr__(self) -> str:
        return f"TaskPrefs.Required({self.ident!r})"


Pref = _Any | Preferred | Required

ANY: Final = _Any()


class TaskPrefs:
    """Namespace of routing preferences.

    ``TaskPrefs.Any``, ``TaskPrefs.Preferred(ident)`` and ``TaskPrefs.Required(ident)`` are
    values that compare equal by content and work with ``match``::

        match prefs:
            case TaskPrefs.Required(ident): ...
    """

    Any: ClassVar[_Any] = ANY
    Preferred = Preferred
    Required = Required
    AnyType = _Any
