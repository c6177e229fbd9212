"""The yardstick: a worker pool with no features, to show what the channel costs.

One process per worker, a socketpair each, uvloop in the worker, length-prefixed pickles
both ways, the least busy worker takes the next task. No routing, stats, timeouts,
cancellation, crash handling, restarts or out-of-band buffers: what is left is what any
pool pays for a task, so ``procoord / minimal`` is what procoord's features cost.
"""

from __future__ import annotations

import asyncio
import importlib
import pickle
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import Any, cast

from ._harness import child_environment

__all__ = ("MinimalPool", "serve")

_HEAD = struct.Struct("!I")
START_TIMEOUT_S = 60.0


def _frame(obj: Any) -> list[bytes]:
    body = pickle.dumps(obj, protocol=5)
    return [_HEAD.pack(len(body)), body]


class _Framed(asyncio.Protocol):
    """A socket end that gathers complete frames and hands their bodies on."""

    def __init__(self, on_body: Callable[[_Framed, bytes], None], on_lost: Callable[[], None]) -> None:
        self.on_body, self.on_lost = on_body, on_lost
        self.buf = bytearray()
        self.out: list[bytes] = []
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.WriteTransport, transport)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        while len(buf) - pos >= 4:
            (size,) = _HEAD.unpack_from(buf, pos)
            if len(buf) - pos - 4 < size:
                break
            self.on_body(self, bytes(buf[pos + 4 : pos + 4 + size]))
            pos += 4 + size
        del buf[:pos]
        self.flush()

    def send(self, obj: Any) -> None:
        """Queue a frame; ``flush`` writes what is queued in one call."""
        self.out += _frame(obj)

    def flush(self) -> None:
        """Write the queued frames."""
        if self.out and self.transport is not None:
            self.transport.writelines(self.out)
            self.out = []

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_lost()


def serve() -> None:
    """The worker: ``python -c '...serve()' FD MODULE:FUNCTION`` answers each task
    ``(id, arg)`` with ``(id, FUNCTION(arg))`` until the socket closes."""
    import uvloop

    module, _, name = sys.argv[2].partition(":")
    fn = getattr(importlib.import_module(module), name)

    def on_body(end: _Framed, body: bytes) -> None:
        task_id, arg = pickle.loads(body)
        end.send((task_id, fn(arg)))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        sock = socket.socket(fileno=int(sys.argv[1]))
        _, end = await loop.create_connection(lambda: _Framed(on_body, lambda: done.set_result(None)), sock=sock)
        end.send((0, "ready"))
        end.flush()
        await done

    uvloop.run(main())


class MinimalPool:
    """The parent side: ``await MinimalPool.start(fn, n)``, ``await pool.submit(arg)``."""

    def __init__(self) -> None:
        self.ends: list[_Framed] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self.pending: dict[_Framed, int] = {}
        self.ready: dict[_Framed, asyncio.Future[None]] = {}
        self.next_id = 1
        self.flush_scheduled = False

    @classmethod
    async def start(cls, fn: Callable[[Any], Any], workers: int) -> MinimalPool:
        """Start ``workers`` processes running ``fn`` (a module-level function)."""
        pool = cls()
        loop = asyncio.get_running_loop()
        starting: list[asyncio.Future[Any]] = []

        def new_end() -> _Framed:
            end = _Framed(pool._on_body, pool._on_lost)
            pool.ends.append(end)
            pool.pending[end] = 0
            pool.ready[end] = loop.create_future()
            starting.append(pool.ready[end])
            return end

        code = "from procoord._bench._minimal import serve; serve()"
        target = f"{fn.__module__}:{fn.__qualname__}"
        for _ in range(workers):
            mine, theirs = socket.socketpair()
            argv = [sys.executable, "-c", code, str(theirs.fileno()), target]
            pool.procs.append(subprocess.Popen(argv, pass_fds=[theirs.fileno()], env=child_environment()))
            theirs.close()
            await loop.create_connection(new_end, sock=mine)
        await asyncio.wait_for(asyncio.gather(*starting), START_TIMEOUT_S)
        return pool

    def submit(self, arg: Any) -> asyncio.Future[Any]:
        """Send ``arg`` to the least busy worker; a future of its result."""
        end = min(self.ends, key=self.pending.__getitem__)
        task_id = self.next_id
        self.next_id += 1
        future = asyncio.get_running_loop().create_future()
        self.waiting[task_id] = future
        self.pending[end] += 1
        end.send((task_id, arg))
        if not self.flush_scheduled:
            self.flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self.flush_scheduled = False
        for end in self.ends:
            end.flush()

    def _on_body(self, end: _Framed, body: bytes) -> None:
        task_id, result = pickle.loads(body)
        if task_id == 0:  # the worker's "ready"
            self.ready[end].set_result(None)
            return
        self.pending[end] -= 1
        self.waiting.pop(task_id).set_result(result)

    def _on_lost(self) -> None:
        for future in [*self.waiting.values(), *self.ready.values()]:
            if not future.done():
                future.set_exception(ConnectionError("a minimal-pool worker went away"))
        self.waiting.clear()

    async def close(self) -> None:
        """Close the sockets and wait for the workers to exit."""
        for end in self.ends:
            if end.transport is not None:
                end.transport.close()
        for proc in self.procs:
            await asyncio.to_thread(proc.wait, 10)
