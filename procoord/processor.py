"""Processors, and the spec that lets a worker process rebuild one.

A processor given to ``add_worker`` is a :class:`TaskProcessor` instance, any callable
taking one task (sync or async), or the name of a factory registered with
``Coordinator.register``. The parent turns it into a :class:`ProcessorSpec` (pickled
bytes); the worker process builds the processor from the spec, once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeAlias

from . import _wire
from ._typing import ResultT, ResultT_co, TaskT, TaskT_contra
from .errors import SerializationError

__all__ = (
    "Factory",
    "ProcessorLike",
    "ProcessorSpec",
    "SupportsDoWork",
    "TaskProcessor",
    "make_spec",
    "with_environment",
)


class TaskProcessor(ABC, Generic[TaskT_contra, ResultT_co]):
    """Base class of a stateful processor.

    One instance lives in each worker process and handles one task at a time, in the
    order the tasks were queued to it; attributes set on ``self`` persist from task to
    task. ``do_work`` may be ``async def`` or a plain ``def``.

    ``TaskProcessor[T, R]`` declares the type of its tasks and results for type
    checkers: ``class Doubler(TaskProcessor[int, int])``; a typed
    ``Coordinator[int, int]`` then types what ``run``, ``call`` and ``map`` give.
    Without type arguments both are ``Any``.
    """

    @abstractmethod
    def do_work(self, task: TaskT_contra) -> ResultT_co | Awaitable[ResultT_co]:
        """Process one task and return its result (or an awaitable of it)."""


class SupportsDoWork(Protocol[TaskT_contra, ResultT_co]):
    """Any object with a ``do_work(task)`` method, a TaskProcessor or not."""

    def do_work(self, task: TaskT_contra, /) -> ResultT_co | Awaitable[ResultT_co]: ...


ProcessorLike: TypeAlias = (
    TaskProcessor[TaskT, ResultT]
    | SupportsDoWork[TaskT, ResultT]
    | Callable[[TaskT], ResultT]
    | Callable[[TaskT], Awaitable[ResultT]]
    | str
)
"""What ``add_worker`` takes for a coordinator of tasks ``TaskT`` and results ``ResultT``:
a processor, a callable taking one task (sync or async), or a registered factory's name."""


@dataclass(frozen=True)
class Factory:
    """A registered factory and the arguments bound to it."""

    name: str
    factory: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]


@dataclass(frozen=True)
class ProcessorSpec:
    """What a worker process needs to build its processor, and the environment it runs in.

    ``environ`` is the parent's ``os.environ`` as it was when ``add_worker`` was called,
    ``env`` the worker's own overrides (a value of None removes the variable): a local
    worker runs with :meth:`environment`, a remote one applies ``env`` to its own.
    """

    kind: Literal["instance", "callable", "factory"]
    payload: bytes
    factory: str | None = None
    description: str = ""
    env: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    log_level: int = logging.WARNING
    """The level from which the worker sends its log records to the parent."""
    environ: Mapping[str, str] = dataclasses.field(default_factory=dict)
    sample_after_task: bool = False
    """Whether the worker sends its memory after every task (it has a ``max_rss``)."""

    def environment(self) -> dict[str, str]:
        """The whole environment of a worker on this machine."""
        result = dict(self.environ)
        for name, value in self.env.items():
            if value is None:
                result.pop(name, None)
            else:
                result[name] = value
        return result


def make_spec(processor: object, factories: Mapping[str, Factory]) -> ProcessorSpec:
    """Turn what the user gave ``add_worker`` into a spec, pickling it now.

    Raises:
        KeyError: ``processor`` names no registered factory (the caller reports it).
        TypeError: ``processor`` is of no accepted form, or is a processor class
            rather than an instance.
        SerializationError: it cannot be pickled.
    """
    if isinstance(processor, str):
        factory = factories[processor]
        payload = _wire.dumps((factory.factory, factory.args, dict(factory.kwargs)), "processor")
        return ProcessorSpec(
            "factory", payload, factory=processor, description=f"factory {processor!r}", log_level=_log_level()
        )
    if isinstance(processor, type) and (hasattr(processor, "do_work") or _instances_are_callable(processor)):
        name = processor.__qualname__
        raise TypeError(
            f"add_worker got the class {name}, not an instance of it: pass an instance, "
            f"add_worker(ident, {name}(...)), or register the class as a factory, "
            f"coord.register({name.lower()!r}, {name}, ...), and add_worker(ident, {name.lower()!r}) "
            "to build it inside the worker"
        )
    if isinstance(processor, TaskProcessor) or hasattr(processor, "do_work"):
        payload = _dumps_processor(processor)
        return ProcessorSpec("instance", payload, description=type(processor).__qualname__, log_level=_log_level())
    if callable(processor):
        payload = _dumps_processor(processor)
        name = getattr(processor, "__qualname__", type(processor).__qualname__)
        return ProcessorSpec("callable", payload, description=name, log_level=_log_level())
    raise TypeError(
        f"a processor must be a TaskProcessor, a callable taking one task, or the name of a "
        f"registered factory; got {type(processor).__qualname__}"
    )


def _instances_are_callable(cls: type) -> bool:
    """Whether ``cls`` defines ``__call__`` for its instances: then an instance is the
    processor, and the class given to add_worker is a mistake (``int`` or ``str``, types
    used as functions, define none)."""
    return any("__call__" in vars(klass) for klass in cls.__mro__ if klass is not object)


def _log_level() -> int:
    """The level a new worker sends log records from: what the parent's
    ``procoord.worker`` loggers would handle at all."""
    return logging.getLogger("procoord.worker").getEffectiveLevel()


def _dumps_processor(processor: object) -> bytes:
    try:
        return _wire.dumps(processor, "processor")
    except SerializationError as exc:
        raise SerializationError(
            "processor",
            f"{exc.detail}; a processor that holds what cannot be pickled (a lock, a socket, a "
            "model in memory) can be built inside the worker instead: register a factory with "
            "coord.register(name, factory, *args, **kwargs), then add_worker(ident, name)",
        ) from exc


def with_environment(spec: ProcessorSpec, env: Mapping[str, str | None] | None) -> ProcessorSpec:
    """The spec with ``os.environ`` as it is now and the worker's overrides ``env``.

    Raises:
        TypeError: a name is not a str, or a value neither a str nor None.
    """
    overrides = dict(env or {})
    for name, value in overrides.items():
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise TypeError(f"env names must be non-empty str without '=' or NUL, not {name!r}")
        if value is not None and (not isinstance(value, str) or "\0" in value):
            raise TypeError(f"env[{name!r}] must be a str without NUL (set) or None (remove), not {value!r}")
    return dataclasses.replace(spec, env=overrides, environ=dict(os.environ))
