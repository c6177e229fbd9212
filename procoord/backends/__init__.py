"""Where workers run: :class:`LocalBackend` (processes on this machine, the default) or
:class:`RayBackend` (Ray actors, possibly on a cluster)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._base import Backend as Backend
from ._base import ChannelHandler as ChannelHandler
from ._base import WorkerChannel as WorkerChannel
from .local import LocalBackend as LocalBackend

if TYPE_CHECKING:
    from .ray import RayBackend as RayBackend  # type: ignore[import-not-found, unused-ignore]

__all__ = ("Backend", "ChannelHandler", "LocalBackend", "RayBackend", "WorkerChannel")


def __getattr__(name: str) -> Any:
    if name == "RayBackend":  # imported lazily: ray is an optional extra
        from .ray import RayBackend

        return RayBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
