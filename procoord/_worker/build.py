"""Building a processor in the worker from its spec, once."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .. import _wire
from ..processor import ProcessorSpec

__all__ = ("build_processor",)


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
    """Whether ``fn`` is async (a coroutine or an async generator function): its tasks run
    on the loop and can be cancelled."""
    if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    return call is not None and (inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call))
