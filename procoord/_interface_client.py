"""The caller's side of an interface: the client on a coordinator, its proxies (one per
routing), and the pending calls they return.

A proxy call binds its arguments against the method's signature in the caller (a wrong
call raises ``TypeError`` at once), and awaiting it queues a
:class:`~procoord._interface_spec.MethodCall` record through ``Coordinator.run`` like
any other task.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable, Generator, Hashable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, cast, final

from ._interface_spec import SPEC, InterfaceProcessor, MethodCall, Spec, missing_message
from ._stream import StreamIterator
from .coordinator import Coordinator
from .handle import JoinHandle
from .prefs import ANY, Pref, Preferred, Required
from .stats import WorkerStats

if TYPE_CHECKING:
    from .backends._base import Backend

__all__ = ("InterfaceClient", "PendingCall", "Proxy", "Route")

T = TypeVar("T")
R = TypeVar("R")
P = ParamSpec("P")


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

    def __init__(self, client: InterfaceClient[Any], record: MethodCall, route: Route) -> None:
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
class Route:
    """How a proxy's calls are routed: their prefs and timeout."""

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

    def __init__(self, client: InterfaceClient[T], route: Route) -> None:
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
        spec = iface.__dict__.get(SPEC) if isinstance(iface, type) else None
        if not isinstance(spec, Spec):
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
        return cast("Proxy[T]", self._procoord_spec.proxy(self, Route(prefs, timeout)))

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
            raise TypeError(missing_message(cls, missing))

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
