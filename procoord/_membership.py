"""Workers joining and leaving a coordinator: a worker built from what ``add_worker``
was given, started and made routable; several started at once; one retired."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from ._dispatch import Dispatcher
from ._recycle import RecyclePolicy, check_limits
from ._shutdown import retire_in_background
from ._slot import WorkerSlot
from .backends._base import Backend
from .errors import WorkerStartError
from .processor import Factory, make_spec, with_environment

__all__ = ("WorkerDefaults", "add_many", "free_idents", "retire", "start_worker")


@dataclass(frozen=True, slots=True)
class WorkerDefaults:
    """What a worker gets from its coordinator unless ``add_worker`` says otherwise."""

    backend: Backend
    restart_limit: int
    restart_window_s: float
    max_tasks: int | None
    max_rss: int | None


async def start_worker(
    dispatch: Dispatcher,
    factories: Mapping[str, Factory],
    defaults: WorkerDefaults,
    ident: Hashable,
    processor: Any,
    *,
    restart: bool,
    backend: Backend | None,
    env: Mapping[str, str | None] | None,
    max_tasks: int | None,
    max_rss: int | None,
) -> bool:
    """Start a worker and make it routable; True when it replaced one of that ident
    (which is retired in the background)."""
    hash(ident)  # an unhashable ident fails here, with Python's own TypeError
    check_limits(max_tasks, max_rss)
    policy = RecyclePolicy(
        defaults.max_tasks if max_tasks is None else max_tasks,
        defaults.max_rss if max_rss is None else max_rss,
    )
    try:
        spec = with_environment(make_spec(processor, factories), env)
        if policy.max_rss is not None:
            spec = dataclasses.replace(spec, sample_after_task=True)
    except KeyError:
        known = ", ".join(repr(n) for n in sorted(factories)) or "none"
        raise WorkerStartError(
            ident, f"no factory named {processor!r} is registered (registered: {known}); use register() first"
        ) from None
    slot = WorkerSlot(
        dispatch,
        ident,
        spec,
        backend if backend is not None else defaults.backend,
        restart=restart,
        restart_limit=defaults.restart_limit,
        restart_window_s=defaults.restart_window_s,
        recycle=policy,
    )
    retiring = dispatch.retiring
    retiring.add(slot)  # covered by the finalizer, and stopped by close(), while it starts
    try:
        await slot.start()
    finally:
        retiring.discard(slot)
    old = dispatch.install(slot)
    if old is not None:
        retire_in_background(dispatch, old)
    return old is not None


def free_idents(taken: Mapping[Hashable, Any], factory: str, count: int) -> list[str]:
    """``count`` idents ``"<factory>-<n>"``, numbered from 0, skipping those ``taken``."""
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be an int >= 1, not {count!r}")
    idents: list[str] = []
    n = 0
    while len(idents) < count:
        ident = f"{factory}-{n}"
        if ident not in taken:
            idents.append(ident)
        n += 1
    return idents


async def add_many(
    idents: list[str], add: Callable[[str], Awaitable[bool]], remove: Callable[[str], Awaitable[bool]]
) -> list[str]:
    """Start every worker at once; if any fails, remove the others and raise the first error."""
    outcomes = await asyncio.gather(*(add(ident) for ident in idents), return_exceptions=True)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    if errors:
        started = [i for i, o in zip(idents, outcomes, strict=True) if not isinstance(o, BaseException)]
        await asyncio.gather(*(remove(i) for i in started))
        raise errors[0]
    return idents


async def retire(dispatch: Dispatcher, ident: Hashable) -> bool:
    """Take a worker out of routing and wait until its process is gone; False for an
    unknown ident. Cancelling the wait leaves the retirement going on."""
    slot = dispatch.unlist(ident)
    if slot is None:
        return False
    await asyncio.shield(retire_in_background(dispatch, slot))
    return True
