"""Processors, and the spec that lets a worker process rebuild one.

A processor given to ``add_worker`` is a :class:`TaskProcessor` instance, any callable
taking one task (sync or async), or the name of a factory registered with
``Coordinator.register``. The parent turns it into a :class:`ProcessorSpec` (pickled
bytes); the worker process builds the processor from the spec, once.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from . import _wire
from .errors import SerializationError

__all__ = ("Factory", "ProcessorSpec", "TaskProcessor", "build_processor", "make_spec")


class TaskProcessor(ABC):
    """Base class of a stateful processor.

    One instance lives in each worker process and handles one task at a time, in the
    order the tasks were queued to it; attributes set on ``self`` persist from task to
    task. ``do_work`` may be ``async def`` or a plain ``def``.
    """

    @abstractmethod
    def do_work(self, task: Any) -> Any:
        """Process one task and return its result (or an awaitable of it)."""


@dataclass(frozen=True)
class Factory:
    """A registered factory and the arguments bound to it."""

    name: str
    factory: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]


@dataclass(frozen=True)
class ProcessorSpec:
    """What a worker process needs to build its processor."""

    kind: Literal["instance", "callable", "factory"]
    payload: bytes
    factory: str | None = None
    description: str = ""


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
        return ProcessorSpec("factory", payload, factory=processor, description=f"factory {processor!r}")
    if isinstance(processor, type) and hasattr(processor, "do_work"):
        name = processor.__qualname__
        raise TypeError(
            f"add_worker got the class {name}, not an instance of it: pass an instance, "
            f"add_worker(ident, {name}(...)), or register the class as a factory, "
            f"coord.register({name.lower()!r}, {name}, ...), and add_worker(ident, {name.lower()!r}) "
            "to build it inside the worker"
        )
    if isinstance(processor, TaskProcessor) or hasattr(processor, "do_work"):
        payload = _dumps_processor(processor)
        return ProcessorSpec("instance", payload, description=type(processor).__qualname__)
    if callable(processor):
        payload = _dumps_processor(processor)
        name = getattr(processor, "__qualname__", type(processor).__qualname__)
        return ProcessorSpec("callable", payload, description=name)
    raise TypeError(
        f"a processor must be a TaskProcessor, a callable taking one task, or the name of a "
        f"registered factory; got {type(processor).__qualname__}"
    )


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


def build_processor(spec: ProcessorSpec) -> tuple[Callable[[Any], Any], bool]:
    """Build the processor in the worker; return its ``do_work`` and whether it is async."""
    obj = _wire.loads(spec.payload, "processor")
    if spec.kind == "factory":
        factory, args, kwargs = obj
        obj = factory(*args, **kwargs)
    do_work = getattr(obj, "do_work", None)
    if do_work is None:
        if not callable(obj):
            raise TypeError(
                f"{spec.description} gave {type(obj).__qualname__}, which is neither a "
                "TaskProcessor (no do_work method) nor callable"
            )
        do_work = obj
    return do_work, _is_async(do_work)


def _is_async(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    return call is not None and inspect.iscoroutinefunction(call)
