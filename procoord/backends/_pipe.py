"""The parent's writing end of a worker's pipe, driven by the event loop."""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Sequence

__all__ = ("PipeWriter",)

# At most this many buffers per writev call (Linux's IOV_MAX is 1024).
MAX_IOV = 512


class PipeWriter:
    """Writes frames to a non-blocking pipe: at once with ``os.writev`` (no joining
    copy), and the rest when the pipe has room again. It owns the file descriptor."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        self._loop = loop
        self._fd: int | None = fd
        self._pending: deque[memoryview] = deque()
        os.set_blocking(fd, False)

    def write(self, parts: Sequence[bytes | memoryview]) -> None:
        fd = self._fd
        if fd is None:
            return
        if self._pending:
            self._pending.extend(memoryview(p) for p in parts)
            return
        if len(parts) <= MAX_IOV:  # the common case: the pipe takes it all at once
            try:
                written = os.writev(fd, parts)
            except (BlockingIOError, InterruptedError):
                written = 0
            except OSError:  # the worker is gone; its loss is seen on the read side
                return
            if written == _nbytes(parts):  # the common case: no part to keep
                return
            for part in parts:
                size = len(part) if isinstance(part, bytes) else part.nbytes
                if written >= size:
                    written -= size
                    continue
                self._pending.append(memoryview(part)[written:])
                written = 0
            if not self._pending:
                return
        else:
            self._pending.extend(memoryview(p) for p in parts)
        if self._flush():
            self._loop.add_writer(fd, self._on_writable)

    def _flush(self) -> bool:
        """Write what the pipe takes; True when something is left."""
        pending = self._pending
        fd = self._fd
        while pending and fd is not None:
            batch = [pending[i] for i in range(min(len(pending), MAX_IOV))]
            try:
                written = os.writev(fd, batch)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:  # the worker is gone; its loss is seen on the read side
                pending.clear()
                return False
            while written:
                head = pending[0]
                if written >= head.nbytes:
                    written -= head.nbytes
                    pending.popleft()
                else:
                    pending[0] = head[written:]
                    written = 0
        return False

    def _on_writable(self) -> None:
        if self._flush():
            return
        if self._fd is not None:
            self._loop.remove_writer(self._fd)

    def abort(self) -> None:
        """Close now, dropping what is not written."""
        fd, self._fd = self._fd, None
        self._pending.clear()
        if fd is None:
            return
        if not self._loop.is_closed():
            self._loop.remove_writer(fd)
        os.close(fd)


def _nbytes(parts: Sequence[bytes | memoryview]) -> int:
    if memoryview in map(type, parts):
        return sum(p.nbytes if isinstance(p, memoryview) else len(p) for p in parts)
    return sum(map(len, parts))
