"""Interfaces: a class of several async methods served by workers, with a typed client.

``@interface`` turns a class of ``async def`` methods into three things::

    @procoord.interface
    class CatFamily:
        async def meow(self) -> bool: ...                  # no body: workers implement it
        async def meow_repeatedly(self, times: int) -> None:
            for _ in range(times):                         # a default body: runs in the worker
                await self.meow()

    class Cat(CatFamily.Processor):                        # 1. the processor base
        async def meow(self) -> bool: ...

    family = CatFamily(coord)                              # 2. the client
    ok, cat = await family.any().meow().join()             # 3. proxies, one per routing

A proxy call binds its arguments against the method's signature in the caller (a wrong
call raises ``TypeError`` at once), and awaiting it queues a :class:`MethodCall` record
through ``Coordinator.run`` like any other task: the processor's ``do_work`` dispatches it
to the method of that name.

This module is the decorator: it reads the class and builds its processor base and its
proxy class. The worker's side and the spec it records are procoord._interface_spec;
the client, proxies and pending calls are procoord._interface_client.
"""

from __future__ import annotations

import dis
import inspect
from abc import abstractmethod
from collections.abc import Callable, Coroutine, Mapping
from types import FunctionType
from typing import Any, TypeVar

from ._interface_client import InterfaceClient, PendingCall, Proxy
from ._interface_spec import SPEC, InterfaceProcessor, MethodCall, Spec
from .coordinator import Coordinator

__all__ = ("InterfaceClient", "InterfaceProcessor", "MethodCall", "PendingCall", "Proxy", "interface")

T = TypeVar("T")

# Classes whose attributes are machinery, never interface methods (Protocol, Generic, ABC).
_MACHINERY_MODULES = frozenset({"builtins", "typing", "typing_extensions", "abc"})


def interface(cls: type[T]) -> type[T]:
    """Turn a class of ``async def`` methods into an interface.

    Methods whose body is ``...`` (or ``pass``, a docstring, ``raise NotImplementedError``)
    are implemented by processors; methods with a body are defaults that run inside the
    worker and may await the other methods on ``self``. Public names must be ``async def``
    methods; names starting with ``_`` are private helpers, available to default bodies
    in the worker.

    Afterwards ``cls.Processor`` is the processor base to subclass, and ``cls(coord)``
    (or ``cls(**coordinator_options)``) returns an :class:`InterfaceClient`.

    Raises:
        TypeError: ``cls`` is not a class, has no async methods, a public attribute is
            not an ``async def`` method, or it defines ``Processor`` itself.
    """
    if not isinstance(cls, type):
        raise TypeError(f"@interface decorates a class, not {cls!r}")
    name = cls.__qualname__
    if "Processor" in cls.__dict__:
        raise TypeError(f"{name}.Processor is made by @interface; do not define it")
    methods: dict[str, FunctionType] = {}
    helpers: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        if base.__module__ in _MACHINERY_MODULES:
            continue
        for attr, value in base.__dict__.items():
            if attr.startswith("__") and attr.endswith("__"):
                continue
            if attr.startswith("_"):
                if not attr.startswith("_procoord_"):
                    helpers[attr] = value
                continue
            if attr == "Processor" and base is not cls:
                continue
            if not isinstance(value, FunctionType) or not (
                inspect.iscoroutinefunction(value) or inspect.isasyncgenfunction(value)
            ):
                raise TypeError(
                    f"{name}.{attr} must be an `async def` method: an interface's public names are its "
                    "methods (prefix helpers with `_`)"
                )
            methods[attr] = value
    if not methods:
        raise TypeError(f"{name} declares no `async def` methods; an interface needs at least one")

    signatures = {attr: inspect.signature(fn) for attr, fn in methods.items()}
    abstract = frozenset(attr for attr, fn in methods.items() if not _has_body(fn))
    processor = _make_processor(cls, methods, helpers, abstract)
    proxy = _make_proxy(cls, methods, signatures)
    spec = Spec(name, methods, signatures, abstract, processor, proxy)
    type.__setattr__(cls, SPEC, spec)
    type.__setattr__(cls, "Processor", processor)
    type.__setattr__(cls, "__new__", staticmethod(_new_client))
    return cls


def _new_client(iface: type[Any], coordinator: Coordinator | None = None, /, **kwargs: Any) -> InterfaceClient[Any]:
    # Interface(...) builds a client, which is not an instance of the interface class, so
    # Python does not call the interface's __init__ afterwards.
    return InterfaceClient(iface, coordinator, **kwargs)


def _make_processor(
    cls: type, methods: Mapping[str, FunctionType], helpers: Mapping[str, Any], abstract: frozenset[str]
) -> type[InterfaceProcessor]:
    namespace: dict[str, Any] = dict(helpers)
    for attr, fn in methods.items():
        namespace[attr] = _abstract_stub(fn) if attr in abstract else fn
    namespace.update(
        {
            "__module__": cls.__module__,
            "__qualname__": f"{cls.__qualname__}.Processor",
            "__doc__": f"Base class of the processors of the {cls.__qualname__} interface: implement "
            f"{', '.join(sorted(abstract)) or 'any methods you override'}.",
            "_procoord_interface": cls.__qualname__,
            "_procoord_methods": frozenset(methods),
        }
    )
    return type("Processor", (InterfaceProcessor,), namespace)


def _abstract_stub(fn: FunctionType) -> Callable[..., Coroutine[Any, Any, Any]]:
    name = fn.__name__

    async def stub(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__}.{name} is not implemented")

    _copy_metadata(stub, fn)
    return abstractmethod(stub)


def _make_proxy(
    cls: type, methods: Mapping[str, FunctionType], signatures: Mapping[str, inspect.Signature]
) -> type[Proxy[Any]]:
    namespace: dict[str, Any] = {
        "__slots__": (),
        "__module__": cls.__module__,
        "__qualname__": f"{cls.__qualname__}.Proxy",
        "__doc__": f"The methods of the {cls.__qualname__} interface, routed one way (``any()``, "
        "``prefer(ident)`` or ``require(ident)``); each call returns a PendingCall.",
    }
    for attr, fn in methods.items():
        namespace[attr] = _proxy_method(attr, fn, signatures[attr])
    return type("Proxy", (Proxy,), namespace)


def _proxy_method(name: str, fn: FunctionType, signature: inspect.Signature) -> Callable[..., PendingCall[Any]]:
    def method(self: Proxy[Any], /, *args: Any, **kwargs: Any) -> PendingCall[Any]:
        return self._procoord_call(name, args, kwargs)

    _copy_metadata(method, fn)
    method.__signature__ = signature  # type: ignore[attr-defined]
    doc = inspect.getdoc(fn)
    method.__doc__ = (doc + "\n\n" if doc else "") + (
        "Through a proxy: returns a PendingCall; `await` it for the JoinHandle, "
        "`await ....join()` for (result, worker_ident), or `async for` over it for the "
        "parts of a generator method."
    )
    return method


def _copy_metadata(target: Callable[..., Any], source: FunctionType) -> None:
    target.__name__ = source.__name__
    target.__qualname__ = source.__qualname__
    target.__doc__ = source.__doc__
    target.__module__ = source.__module__
    target.__annotations__ = dict(source.__annotations__)
    target.__wrapped__ = source  # type: ignore[attr-defined]


# Instructions that every function has whatever its body: preamble and padding.
_PREAMBLE = frozenset({"RESUME", "RETURN_GENERATOR", "POP_TOP", "NOP", "CACHE", "COPY_FREE_VARS", "MAKE_CELL"})
_CALL_OPS = frozenset({"PUSH_NULL", "PRECALL", "CALL", "KW_NAMES", "CALL_NO_KW"})


def _has_body(fn: FunctionType) -> bool:
    """False for a body of ``...``, ``pass``, a docstring, ``return None`` or
    ``raise NotImplementedError``: a method for processors to implement."""
    ops = [(i.opname, i.argval) for i in dis.get_instructions(fn) if i.opname not in _PREAMBLE]
    if ops in ([("LOAD_CONST", None), ("RETURN_VALUE", None)], [("RETURN_CONST", None)]):
        return False
    names = [op for op, _ in ops if op not in _CALL_OPS]
    return not (names == ["LOAD_GLOBAL", "RAISE_VARARGS"] and ("LOAD_GLOBAL", "NotImplementedError") in ops)
