"""Workers as Ray actors, on this machine or anywhere in a Ray cluster.

A Ray actor is exactly a procoord worker: one process, one object, one call at a
time. Each worker is a :class:`~procoord._worker.ray_actor.ProcoordWorker` actor
running the same worker core as a local process; the parent's end speaks the same
frames as a pipe would, so routing, stats, restarts, timeouts and errors are those of
the coordinator, unchanged. Tasks go to the actor by a ``call`` whose reply brings
the next result back (one actor call per task's round trip); other frames go by
``push``, and what no call waits for (load samples, stream parts, logs) comes back by
a long ``poll`` (see :class:`RayChannel`). ``ray`` itself is imported only when a
:class:`RayBackend` is created.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from .. import _remote, _wire
from .._wire import Kind
from .._worker.protocol import DEFAULT_SAMPLE_INTERVAL_S
from .._worker.ray_actor import REPLY, SEQ, ProcoordWorker
from ..errors import WorkerStartError
from ..processor import ProcessorSpec
from ._base import ChannelHandler

__all__ = ("RayBackend", "RayChannel")

logger = logging.getLogger("procoord")

# How long an actor may take from creation to READY: being scheduled (a cluster may
# have to add a node for the resources it asks for), starting its process, importing
# the user's modules and building the processor.
DEFAULT_READY_TIMEOUT_S = 120.0


# The actor's concurrency groups (thread pools): pushes and calls (one call at most
# waits for a result at a time; pushes return at once), and the long poll.
PUSH_GROUP = "procoord_push"
POLL_GROUP = "procoord_poll"
CONCURRENCY_GROUPS = {PUSH_GROUP: 4, POLL_GROUP: 1}

# Where the kind of the first frame sent is (after the SEQ number and the header's
# payload length), and the kinds a call may wait on.
_KIND_AT = SEQ.size + 4
_TASK_KINDS = frozenset({Kind.TASK, Kind.STREAM})

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
            itself).
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
            self._actor_class = ray.remote(concurrency_groups=CONCURRENCY_GROUPS)(ProcoordWorker)
        if not self.actor_options:
            return self._actor_class
        options = dict(self.actor_options)
        if "concurrency_groups" in options:  # the user's groups, and procoord's own
            options["concurrency_groups"] = {**options["concurrency_groups"], **CONCURRENCY_GROUPS}
        return self._actor_class.options(**options)

    async def start(self, ident: Hashable, spec: ProcessorSpec, handler: ChannelHandler) -> RayChannel:
        """Create the actor and return once its processor is built."""
        ray = self._ray
        actor = self._connect().remote(spec, self.sample_interval)
        try:
            reply: bytes = await asyncio.wait_for(_wait(actor.start.remote()), self.ready_timeout)
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
        first, _ended, _exitcode = REPLY.unpack_from(reply)
        frames = _wire.FrameReader().feed(reply[REPLY.size :])
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
        channel = RayChannel(ray, actor, pid, is_async, handler, first)
        rest = [received for received in frames if received[0] != Kind.READY]
        if rest:  # the first load sample, sent with READY (and logs from the build)
            handler.frames_received(rest)
        return channel


class RayChannel:
    """The parent's end of one worker actor.

    Frames carrying tasks, while no call waits for a result, go by ``call``: it returns
    at the worker's next result, bringing it (and every frame before it) back in its
    reply, one actor call for a task's round trip. Other frames go by ``push``, which
    returns nothing. Frames no call waits for (load samples, stream parts, logs) come
    back through one long ``poll`` kept pending. Every reply carrying frames is
    numbered by the actor; they are handed on in that order.
    """

    def __init__(self, ray: Any, actor: Any, pid: int, is_async: bool, handler: ChannelHandler, after: int) -> None:
        self._ray = ray
        self._actor = actor
        self._push = actor.push.options(num_returns=0, concurrency_group=PUSH_GROUP)
        self._call = actor.call.options(concurrency_group=PUSH_GROUP)
        self._poll = actor.poll.options(concurrency_group=POLL_GROUP)
        self._pid = pid
        self._is_async = is_async
        self._handler = handler
        self._seq = 0
        self._lost = False
        self._calling = False  # a call waiting for a result is under way
        self._reader = _wire.FrameReader()
        self._next_batch = after + 1
        self._early: dict[int, bytes] = {}
        self._loop = asyncio.get_running_loop()
        self._poller = self._loop.create_task(self._poll_forever())

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def is_async(self) -> bool:
        return self._is_async

    async def _poll_forever(self) -> None:
        try:
            while not self._lost:
                reply: bytes = await _wait(self._poll.remote())
                if not self._batch(reply):  # nothing: the worker's end was told in a call's reply
                    return
        except asyncio.CancelledError:  # the loop is going away, or the channel is lost
            if not self._lost:
                self._lost = True
                _kill(self._ray, self._actor)
            raise
        except Exception as exc:
            self._fail(exc)

    def _called(self, future: concurrent.futures.Future[bytes]) -> None:
        """A call's reply (on Ray's thread): hand it to the loop."""
        try:
            self._loop.call_soon_threadsafe(self._answered, future)
        except RuntimeError:  # the loop is closed
            pass

    def _answered(self, future: concurrent.futures.Future[bytes]) -> None:
        self._calling = False
        try:
            reply = future.result()
        except Exception as exc:
            self._fail(exc)
            return
        self._batch(reply)

    def _batch(self, reply: bytes) -> int:
        """One reply: hand its frames on in the order of the replies' numbers. Returns
        its number (0: it carried nothing)."""
        number: int
        number, ended, exitcode = REPLY.unpack_from(reply)
        if not number or self._lost:
            return number
        if number != self._next_batch:
            self._early[number] = reply
            return number
        while True:
            self._next_batch += 1
            frames = self._reader.feed(reply[REPLY.size :])
            if frames:
                self._handler.frames_received(frames)
            if ended:  # 0 after a STOP; sys.exit's code from do_work
                self._end(exitcode)
                return number
            following = self._early.pop(self._next_batch, None)
            if following is None:
                return number
            reply = following
            _, ended, exitcode = REPLY.unpack_from(reply)

    def _fail(self, exc: Exception) -> None:
        if self._lost:
            return
        if not isinstance(exc, self._ray.exceptions.RayActorError):
            logger.error("lost the channel to Ray actor (pid %s)", self._pid, exc_info=exc)
        self._end(None)

    def _end(self, exitcode: int | None) -> None:
        if self._lost:
            return
        self._lost = True
        _kill(self._ray, self._actor)
        if self._poller is not asyncio.current_task():
            self._poller.cancel()
        self._handler.channel_lost(exitcode)

    def send(self, frames: Sequence[bytes | memoryview]) -> None:
        if self._lost:
            return
        self._seq += 1
        data = b"".join([SEQ.pack(self._seq), *frames])
        if not self._calling and data[_KIND_AT] in _TASK_KINDS:
            self._calling = True
            self._call.remote(data).future().add_done_callback(self._called)
        else:
            self._push.remote(data)

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
