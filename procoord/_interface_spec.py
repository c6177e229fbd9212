"""The worker's side of an interface, and what ``@interface`` records about one.

A proxy call queues a :class:`MethodCall` record; the processor base of every
interface, :class:`InterfaceProcessor`, dispatches it to the method it names. The
:class:`Spec` an interface class carries (under :data:`SPEC`) names its methods, their
signatures, which of them have no body, and the classes built for it.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from types import FunctionType
from typing import Any, Generic, NamedTuple

from ._typing import InterfaceT
from .processor import TaskProcessor

__all__ = ("SPEC", "InterfaceProcessor", "MethodCall", "Spec", "missing_message")

# Attribute of a decorated interface class holding its Spec. Internal names carry the
# _procoord_ prefix so that they cannot clash with the user's method names.
SPEC = "_procoord_spec"


class MethodCall(NamedTuple):
    """The task a proxy call queues: the method's name and its bound arguments.

    ``do_work`` of an interface processor receives it and calls
    ``getattr(self, method)(*args, **kwargs)``.
    """

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class Spec:
    """What the decorator learned about an interface class."""

    name: str
    methods: Mapping[str, FunctionType]
    signatures: Mapping[str, inspect.Signature]
    abstract: frozenset[str]
    processor: type[InterfaceProcessor]
    proxy: type[Any]
    """A subclass of procoord.interface.Proxy with a method for each interface method."""


class InterfaceProcessor(TaskProcessor[MethodCall, Any], Generic[InterfaceT]):
    """Base of every ``<Interface>.Processor``: dispatches :class:`MethodCall` records.

    Subclass ``<Interface>.Processor``, or ``InterfaceProcessor[<Interface>]``, which is
    the same class spelled so that a type checker knows it; not this class alone.
    Methods of the interface without a body are abstract: a subclass that leaves one
    unimplemented cannot be instantiated, and the error names the missing methods.
    """

    _procoord_interface: str = ""
    _procoord_methods: frozenset[str] = frozenset()

    def __new__(cls, *args: Any, **kwargs: Any) -> InterfaceProcessor:
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            raise TypeError(missing_message(cls, missing))
        return super().__new__(cls)

    def __class_getitem__(cls, item: Any) -> Any:
        # InterfaceProcessor[CatFamily] is CatFamily.Processor: a base class both Python
        # and a type checker accept (a checker cannot see attributes a decorator adds).
        spec = getattr(item, SPEC, None)
        if isinstance(spec, Spec):
            return spec.processor
        return super().__class_getitem__(item)  # type: ignore[misc]

    async def do_work(self, task: MethodCall) -> Any:
        """Run the interface method the call names, with its arguments, on this instance."""
        methods = type(self)._procoord_methods
        if not isinstance(task, MethodCall) or task.method not in methods:
            raise TypeError(
                f"{type(self).__qualname__} serves the {type(self)._procoord_interface} interface and takes "
                f"MethodCall records naming one of {sorted(methods)}, not {task!r}"
            )
        result = getattr(self, task.method)(*task.args, **task.kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result


def missing_message(cls: type, missing: list[str]) -> str:
    """The TypeError message for a processor class that leaves ``missing`` unimplemented."""
    iface = getattr(cls, "_procoord_interface", "the interface")
    names = ", ".join(missing)
    return (
        f"{cls.__qualname__} does not implement {names}: the {iface} interface declares "
        f"{'it' if len(missing) == 1 else 'them'} without a body, so every processor must define "
        f"{'it' if len(missing) == 1 else 'them'}"
    )
