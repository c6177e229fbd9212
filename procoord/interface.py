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
"""

from __future__ import annotations

import dis
import inspect
import warnings
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Generator, Hashable, Mapping
from dataclasses import dataclass
from types import FunctionType, TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, Generic, NamedTuple, ParamSpec, TypeVar, cast, final

from ._stream import StreamIterator
from ._typing import InterfaceT
from .coordinator import Coordinator
from .handle import JoinHandle
from .prefs import ANY, Pref, Preferred, Required
from .processor import TaskProcessor
from .stats import WorkerStats

if TYPE_CHECKING:
    from .backends._base import Backend

__all__ = ("InterfaceClient", "InterfaceProcessor", "MethodCall", "PendingCall", "Proxy", "interface")

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")

# Attribute of a decorated interface class holding its _Spec. Internal names carry the
# _procoord_ prefix so that they cannot clash with the user's method names.
_SPEC = "_procoord_spec"

# Classes whose attributes are machinery, never interface methods (Protocol, Generic, ABC).
_MACHINERY_MODULES = frozenset({"builtins", "typing", "typing_extensions", "abc"})


class MethodCall(NamedTuple):
    """The task a proxy call queues: the method's name and its bound arguments.

    ``do_work`` of an interface processor receives it and calls
    ``getattr(self, method)(*args, **kwargs)``.
    """

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass(frozen=True)
class _Spec:
    """What the decorator learned about an interface class."""

    name: str
    methods: Mapping[str, FunctionType]
    signatures: Mapping[str, inspect.Signature]
    abstract: frozenset[str]
    processor: type[InterfaceProcessor]
    proxy: type[Proxy[Any]]


# -- the worker side -------------------------------------------------------------------


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
            raise TypeError(_missing_message(cls, missing))
        return super().__new__(cls)

    def __class_getitem__(cls, item: Any) -> Any:
        # InterfaceProcessor[CatFamily] is CatFamily.Processor: a base class both Python
        # and a type checker accept (a checker cannot see attributes a decorator adds).
        spec = getattr(item, _SPEC, None)
        if isinstance(spec, _Spec):
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


def _missing_message(cls: type, missing: list[str]) -> str:
    iface = getattr(cls, "_procoord_interface", "the interface")
    names = ", ".join(missing)
    return (
        f"{cls.__qualname__} does not implement {names}: the {iface} interface declares "
        f"{'it' if len(missing) == 1 else 'them'} without a body, so every processor must define "
        f"{'it' if len(missing) == 1 else 'them'}"
    )


# -- the caller side -------------------------------------------------------------------


@final
class PendingCall(Generic[R]):
    """A proxy call, bound and not yet queued.

    ``await call`` queues it (through ``Coordinator.run``) and gives its
    :class:`~procoord.JoinHandle`; ``await call.join()`` queues it and waits for
    ``(result, worker_ident)``. Awaiting it again gives the same handle: a call is
    queued once. A call that is never awaited never runs (a ``RuntimeWarning`` says so,
    as for a coroutine).

    A method that is a generator streams: ``async for part in call`` queues it through
    ``Coordinator.stream`` and gives its parts as the worker yields them (``join``
    gives the list of all of them).
    """

    __slots__ = ("_procoord_client", "_procoord_handle", "_procoord_record", "_procoord_route", "_procoord_state")

    def __init__(self, client: InterfaceClient[Any], record: MethodCall, route: _Route) -> None:
        self._procoord_client = client
        self._procoord_record = record
        self._procoord_route = route
        self._procoord_handle: JoinHandle[tuple[R, Hashable]] | None = None
        self._procoord_state = "new"

    async def _procoord_schedule(self) -> JoinHandle[tuple[R, Hashable]]:
        if self._procoord_handle is not None:
            return self._procoord_handle
        if self._procoord_state == "queuing":
            raise RuntimeError(f"{self!r} is already being queued by another awaiter; await it once")
        if self._procoord_state == "streamed":
            raise RuntimeError(f"{self!r} is already queued as a stream; a call is queued once")
        self._procoord_state = "queuing"
        route = self._procoord_route
        try:
            handle = await self._procoord_client.coordinator.run(
                self._procoord_record, route.prefs, timeout=route.timeout
            )
        except BaseException:
            self._procoord_state = "failed"
            raise
        self._procoord_state = "queued"
        self._procoord_handle = cast("JoinHandle[tuple[R, Hashable]]", handle)
        return self._procoord_handle

    def __await__(self) -> Generator[Any, None, JoinHandle[tuple[R, Hashable]]]:
        return self._procoord_schedule().__await__()

    def __aiter__(self) -> StreamIterator[Any]:
        """Stream the call (a generator method): its parts, as the worker yields them."""
        if self._procoord_state != "new":
            raise RuntimeError(f"{self!r} is already queued; a call is queued (or streamed) once")
        self._procoord_state = "streamed"
        route = self._procoord_route
        return self._procoord_client.coordinator.stream(self._procoord_record, route.prefs, timeout=route.timeout)

    async def join(self) -> tuple[R, Hashable]:
        """Queue the call (unless it already is) and wait for ``(result, worker_ident)``."""
        handle = await self._procoord_schedule()
        return await handle.join()

    def __del__(self) -> None:
        if getattr(self, "_procoord_state", None) == "new":
            warnings.warn(f"{self!r} was never awaited, so it never ran", RuntimeWarning, stacklevel=1)

    def __repr__(self) -> str:
        record = self._procoord_record
        return (
            f"<PendingCall {self._procoord_client._procoord_spec.name}.{record.method}() "
            f"{self._procoord_route.prefs!r} {self._procoord_state}>"
        )


@dataclass(frozen=True, slots=True)
class _Route:
    prefs: Pref
    timeout: float | None


class Proxy(Generic[T]):
    """The interface's methods, routed one way (``any()``, ``prefer(ident)``, ``require(ident)``).

    Each method has the interface method's signature; calling it binds the arguments
    (a wrong call raises ``TypeError`` before anything is queued) and returns a
    :class:`PendingCall`. ``proxy(Interface.method, *args, **kwargs)`` is the same call,
    spelled so that a type checker sees the argument and result types.
    """

    __slots__ = ("_procoord_client", "_procoord_route")

    def __init__(self, client: InterfaceClient[T], route: _Route) -> None:
        self._procoord_client = client
        self._procoord_route = route

    def __call__(
        self, method: Callable[Concatenate[T, P], Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> PendingCall[R]:
        """Call ``method`` (an interface method, e.g. ``CatFamily.meow``) through this proxy."""
        spec = self._procoord_client._procoord_spec
        name = getattr(method, "__name__", None)
        if not isinstance(name, str) or spec.methods.get(name) is not method:
            raise TypeError(f"{method!r} is not a method of the {spec.name} interface")
        return self._procoord_call(name, args, kwargs)

    def _procoord_call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> PendingCall[Any]:
        spec = self._procoord_client._procoord_spec
        try:
            bound = spec.signatures[name].bind(None, *args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{spec.name}.{name}(): {exc}") from None
        record = MethodCall(name, bound.args[1:], bound.kwargs)
        return PendingCall(self._procoord_client, record, self._procoord_route)

    if TYPE_CHECKING:
        # The generated methods are unknown to a type checker: the plain spelling
        # proxy.method(...) is Any to it; proxy(Interface.method, ...) is checked.
        def __getattr__(self, name: str) -> Any: ...

    def __repr__(self) -> str:
        return f"<{self._procoord_client._procoord_spec.name} proxy {self._procoord_route.prefs!r}>"


class InterfaceClient(Generic[T]):
    """The caller's side of an interface, on one coordinator.

    ``Interface(coord)`` makes one; so does ``InterfaceClient(Interface, coord)``, the
    spelling a type checker understands. Without a coordinator it creates its own,
    passing keyword arguments to :class:`~procoord.Coordinator`. ``add_worker``,
    ``remove_worker``, ``register``, ``stats``, ``close`` and ``async with`` pass
    through to the coordinator (:attr:`coordinator`).
    """

    __slots__ = ("_procoord_coordinator", "_procoord_spec")

    def __init__(self, iface: type[T], coordinator: Coordinator | None = None, /, **kwargs: Any) -> None:
        spec = iface.__dict__.get(_SPEC) if isinstance(iface, type) else None
        if not isinstance(spec, _Spec):
            raise TypeError(f"{iface!r} is not an interface: decorate the class with @procoord.interface")
        if coordinator is None:
            coordinator = Coordinator(**kwargs)
        elif kwargs:
            raise TypeError(f"{spec.name}(coordinator, ...) takes no Coordinator options; give one or the other")
        elif not isinstance(coordinator, Coordinator):
            raise TypeError(f"{spec.name}(...) takes a Coordinator, not {type(coordinator).__qualname__}")
        self._procoord_spec = spec
        self._procoord_coordinator = coordinator

    @property
    def coordinator(self) -> Coordinator:
        """The coordinator that runs the calls."""
        return self._procoord_coordinator

    # -- routing --------------------------------------------------------------------

    def any(self, *, timeout: float | None = None) -> Proxy[T]:
        """Calls that run on the most available worker (``TaskPrefs.Any``)."""
        return self._procoord_proxy(ANY, timeout)

    def prefer(self, ident: Hashable, *, timeout: float | None = None) -> Proxy[T]:
        """Calls that run on ``ident`` while its queue is short (``TaskPrefs.Preferred``)."""
        return self._procoord_proxy(Preferred(ident), timeout)

    def require(self, ident: Hashable, *, timeout: float | None = None) -> Proxy[T]:
        """Calls that run on ``ident`` only (``TaskPrefs.Required``)."""
        return self._procoord_proxy(Required(ident), timeout)

    def _procoord_proxy(self, prefs: Pref, timeout: float | None) -> Proxy[T]:
        if timeout is not None and not timeout > 0:
            raise ValueError(f"a timeout must be a positive number of seconds, not {timeout!r}")
        return cast("Proxy[T]", self._procoord_spec.proxy(self, _Route(prefs, timeout)))

    # -- pass-through ---------------------------------------------------------------

    async def add_worker(
        self,
        ident: Hashable,
        processor: InterfaceProcessor | str,
        *,
        restart: bool = True,
        backend: Backend | None = None,
    ) -> bool:
        """``Coordinator.add_worker`` for an instance of ``<Interface>.Processor`` (or the
        name of a registered factory that builds one). A processor of any other kind, or
        one that leaves methods without a body unimplemented, raises ``TypeError``."""
        if not isinstance(processor, str):
            self._procoord_check_processor(type(processor), processor)
        return await self._procoord_coordinator.add_worker(ident, processor, restart=restart, backend=backend)

    def _procoord_check_processor(self, cls: type, what: object) -> None:
        base = self._procoord_spec.processor
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(
                f"workers of the {self._procoord_spec.name} interface run a subclass of "
                f"{base.__qualname__}, not {what!r}"
            )
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            raise TypeError(_missing_message(cls, missing))

    async def remove_worker(self, ident: Hashable) -> bool:
        """``Coordinator.remove_worker``."""
        return await self._procoord_coordinator.remove_worker(ident)

    def register(self, name: str, factory: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        """``Coordinator.register``. A factory that is a class must be a complete
        ``<Interface>.Processor`` subclass (checked now, not in the worker)."""
        if isinstance(factory, type):
            self._procoord_check_processor(factory, factory)
        self._procoord_coordinator.register(name, factory, *args, **kwargs)

    async def stats(self) -> dict[Hashable, WorkerStats]:
        """``Coordinator.stats``."""
        return await self._procoord_coordinator.stats()

    async def close(self, cancel_pending: bool = False) -> None:
        """``Coordinator.close``."""
        await self._procoord_coordinator.close(cancel_pending=cancel_pending)

    async def __aenter__(self) -> InterfaceClient[T]:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._procoord_coordinator.__aexit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"<{self._procoord_spec.name} client on {self._procoord_coordinator!r}>"


# -- the decorator ---------------------------------------------------------------------


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
    spec = _Spec(name, methods, signatures, abstract, processor, proxy)
    type.__setattr__(cls, _SPEC, spec)
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
