"""The small contract between the coordinator and wherever workers live.

A backend starts a worker from a :class:`~procoord.processor.ProcessorSpec` and hands
back a :class:`WorkerChannel`: send frames, learn of frames and of the worker's end
through a :class:`ChannelHandler`, kill it. Routing, queues, restarts and stats stay in
the coordinator and are the same for every backend.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Protocol

from .._wire import Frame
from ..processor import ProcessorSpec

__all__ = ("Backend", "ChannelHandler", "Frame", "WorkerChannel")


class ChannelHandler(Protocol):
    """Receives what a worker sends. Called on the coordinator's event loop."""

    def frames_received(self, frames: Sequence[Frame]) -> None:
        """Frames from the worker, in order."""

    def channel_lost(self, exitcode: int | None) -> None:
        """The worker is gone (exit code, negative for a signal; None if unknown).

        Called once, after every frame the worker sent has been delivered."""

    def channel_broken(self, reason: str) -> None:
        """The channel no longer carries frames that make sense (corrupt, or silent past
        its liveness deadline): the worker must be ended; ``reason`` says why. The
        channel's loss follows as usual."""


class WorkerChannel(Protocol):
    """The parent's end of one running worker."""

    @property
    def pid(self) -> int | None:
        """Process id of the worker."""

    @property
    def is_async(self) -> bool:
        """Whether the processor's ``do_work`` is a coroutine function (cancellable)."""

    def send(self, frames: Sequence[bytes | memoryview]) -> None:
        """Queue frames for the worker without blocking."""

    def kill(self) -> None:
        """End the worker now (SIGKILL or equivalent)."""

    def terminate_sync(self, grace_s: float) -> None:
        """Stop the worker from any thread, without the event loop: used at
        interpreter exit and when a coordinator is garbage-collected."""


class Backend(Protocol):
    """Starts workers."""

    name: str

    async def start(self, ident: Hashable, spec: ProcessorSpec, handler: ChannelHandler) -> WorkerChannel:
        """Start a worker and return once it is ready to take tasks.

        Raises:
            WorkerStartError: the processor could not be built or the worker died.
        """
        ...
