"""Workers as Ray actors, on this machine or anywhere in a Ray cluster.

A Ray actor is exactly a procoord worker: one process, one object, one call at a
time. Each worker is a :class:`~procoord._worker.ray_actor.ProcoordWorker` actor
running the same worker core as a local process; the parent's end speaks the same
frames as a pipe would, so routing, stats, restarts, timeouts and errors are those of
the coordinator, unchanged. Frames go to the actor with ``push`` calls; frames come
back through one long ``poll`` call kept pending at a time, awaited as an asyncio
future. ``ray`` itself is imported only when a :class:`RayBackend` is created.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from .. import _remote, _wire
from .._wire import Kind
from .._worker.protocol import DEFAULT_SAMPLE_INTERVAL_S
from .._worker.ray_actor import ProcoordWorker
from ..errors import WorkerStartError
from ..processor import ProcessorSpec
from ._base import ChannelHandler, Frame

__all__ = ("RayBackend", "RayChannel")

logger = logging.getLogger("procoord")

# How long an actor may take from creation to READY: being scheduled (a cluster may
# have to add a node for the resources it asks for), starting its process, importing
# the user's modules and building the processor.
DEFAULT_READY_TIMEOUT_S = 120.0


INSTALL_HINT = "python -m pip install 'procoord[ray]'"


def import_ray() -> Any:
    """Import ray, or say what to install."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            f"procoord's RayBackend requires `ray` to be installed (or it failed to import: {exc}):\n"
            f"    $ {INSTALL_HINT}"
        ) from exc
    return ray


class RayBackend:
    """Run each worker as a Ray actor.

    Args:
        address: the Ray cluster to connect to when Ray is not initialized yet, as for
            ``ray.init(address=...)``; None uses ``RAY_ADDRESS`` if set, else starts a
            local Ray instance. When Ray is already initialized it is used as it is.
        ready_timeout: seconds an actor may take to be scheduled and build its processor.
        sample_interval: seconds between CPU/memory samples sent by each worker.
        **actor_options: Ray actor options (``num_cpus``, ``resources``,
            ``runtime_env``, ...), passed through to ``.options()``. With none given an
            actor reserves no CPU while it runs, as is Ray's default.

    Raises:
        ImportError: ray is not installed (``pip install 'procoord[ray]'``).
        ValueError: an actor option procoord cannot honour (Ray restarting the actor
            itself, or a concurrency below 2).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        ready_timeout: float = DEFAULT_READY_TIMEOUT_S,
        sample_interval: float = DEFAULT_SAMPLE_INTERVAL_S,
        **actor_options: Any,
    ) -> None:
        self._ray = import_ray()
        if ready_timeout <= 0 or sample_interval <= 0:
            raise ValueError("ready_timeout and sample_interval must be positive")
        if actor_options.get("max_restarts", 0) != 0:
            raise ValueError(
                "max_restarts must be 0: procoord restarts a lost worker itself (see the restart "
                "arguments of Coordinator and add_worker)"
            )
        if actor_options.get("max_concurrency", 2) < 2:
            raise ValueError(
                "max_concurrency must be at least 2: the actor takes CANCEL and STOP while a task "
                "runs (tasks still run one at a time)"
            )
        self.address = address
        self.ready_timeout = ready_timeout
        self.sample_interval = sample_interval
        self.actor_options: Mapping[str, Any] = dict(actor_options)
        self._actor_class: Any = None

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self.actor_options.items())
        return f"RayBackend(address={self.address!r}{options})"

    def _connect(self) -> Any:
        ray = self._ray
        if not ray.is_initialized():
            # Blocks the loop once, for the seconds a connection (or a local start)
            # takes; call ray.init yourself beforehand to choose when.
            ray.init(address=self.address)
        if self._actor_class is None:
            self._actor_class = ray.remote(ProcoordWorker)
        return self._actor_class.options(**self.actor_options) if self.actor_options else self._actor_class

    async def start(self, ident: Hashable, spec: ProcessorSpec, handler: ChannelHandler) -> RayChannel:
        """Create the actor and return once its processor is built."""
        ray = self._ray
        actor = self._connect().remote(spec, self.sample_interval)
        try:
            frames: list[Frame] = await asyncio.wait_for(_wait(actor.start.remote()), self.ready_timeout)
        except TimeoutError:
            _kill(ray, actor)
            raise WorkerStartError(
                ident,
                f"the Ray actor was not ready within {self.ready_timeout:g} s; does the cluster have "
                f"the resources it asks for ({dict(self.actor_options) or 'none given'})?",
            ) from None
        except ray.exceptions.RayError as exc:
            _kill(ray, actor)
            raise WorkerStartError(ident, f"the Ray actor died during start-up: {_first_line(exc)}") from None
        except BaseException:
            _kill(ray, actor)
            raise
        pid: int | None = None
        is_async = False
        for received in frames:
            if received[0] == Kind.START_FAILED:
                _kill(ray, actor)
                raise _remote.start_error(ident, received[3])
            if received[0] == Kind.READY:
                pid, is_async = _wire.read_ready(received)
        if pid is None:
            _kill(ray, actor)
            raise WorkerStartError(ident, "the Ray actor ended without reporting ready")
        channel = RayChannel(ray, actor, pid, is_async, handler)
        loads = [received for received in frames if received[0] == Kind.LOAD]
        if loads:  # the first sample, sent with READY
            handler.frames_received(loads)
        return channel


class RayChannel:
    """The parent's end of one worker actor."""

    def __init__(self, ray: Any, actor: Any, pid: int, is_async: bool, handler: ChannelHandler) -> None:
        self._ray = ray
        self._actor = actor
        self._push = actor.push.options(num_returns=0)
        self._pid = pid
        self._is_async = is_async
        self._handler = handler
        self._seq = 0
        self._lost = False
        self._poller = asyncio.get_running_loop().create_task(self._poll_forever())

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def is_async(self) -> bool:
        return self._is_async

    async def _poll_forever(self) -> None:
        ray = self._ray
        exitcode: int | None = None
        try:
            while True:
                frames, ended = await _wait(self._actor.poll.remote())
                if frames:
                    self._handler.frames_received(frames)
                if ended is not None:  # 0 after a STOP; sys.exit's code from do_work
                    exitcode = ended
                    break
        except ray.exceptions.RayActorError:
            pass
        except asyncio.CancelledError:  # the loop is going away: no one to tell
            self._lost = True
            _kill(ray, self._actor)
            raise
        except Exception:
            logger.exception("lost the channel to Ray actor (pid %s)", self._pid)
        self._lost = True
        _kill(ray, self._actor)
        self._handler.channel_lost(exitcode)

    def send(self, frames: Sequence[bytes | memoryview]) -> None:
        if self._lost:
            return
        self._seq += 1
        self._push.remote(self._seq, b"".join(frames))

    def kill(self) -> None:
        _kill(self._ray, self._actor)

    def terminate_sync(self, grace_s: float) -> None:
        _kill(self._ray, self._actor)

    def __repr__(self) -> str:
        return f"<RayChannel pid={self._pid} lost={self._lost}>"


async def _wait(ref: Any) -> Any:
    return await ref


def _kill(ray: Any, actor: Any) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # already gone, or Ray itself is shut down
        pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
