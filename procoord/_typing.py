"""The type variables of typed coordinators and processors.

They have defaults (PEP 696) for type checkers, so an unparameterized ``Coordinator()``
or ``class P(TaskProcessor)`` means tasks and results of type ``Any``, as before; the
defaults exist for checkers only (``typing_extensions`` is not needed at run time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ("InterfaceT", "ResultT", "ResultT_co", "TaskT", "TaskT_contra")

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    TaskT = TypeVar("TaskT", default=Any)
    ResultT = TypeVar("ResultT", default=Any)
    TaskT_contra = TypeVar("TaskT_contra", contravariant=True, default=Any)
    ResultT_co = TypeVar("ResultT_co", covariant=True, default=Any)
    InterfaceT = TypeVar("InterfaceT", default=Any)
else:
    from typing import TypeVar

    TaskT = TypeVar("TaskT")
    ResultT = TypeVar("ResultT")
    TaskT_contra = TypeVar("TaskT_contra", contravariant=True)
    ResultT_co = TypeVar("ResultT_co", covariant=True)
    InterfaceT = TypeVar("InterfaceT")
