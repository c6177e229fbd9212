"""Memory for big received buffers, reused: fresh memory costs a page fault per page on
first touch (and more where the host backs a VM's memory lazily), warm memory only the
copy.

Each process has one :class:`ReceivePool`: a private anonymous mapping (huge pages
where the kernel gives them) that buffers copied out of shared memory are placed in.
A buffer handed out is a ctypes array over its chunk; the chunk goes back to the pool
when the last thing using it (a numpy array, a memoryview) goes, and its pages are
marked free for the kernel to take back under memory pressure (``MADV_FREE``) but are
reused, warm, when it does not.
"""

from __future__ import annotations

import mmap
import os
import threading
import weakref
from collections import deque
from typing import Any

__all__ = ("FirstFit", "ReceivePool", "receive_pool")

# Chunks are whole huge pages: a huge page is never shared by two buffers.
CHUNK_ALIGN = 2 << 20

# The pool's address space (memory is used only as buffers fill it).
POOL_BYTES = 4 << 30


class FirstFit:
    """First-fit allocation of ``size`` bytes, lowest offsets first (so the memory in
    use stays compact). Not thread-safe: its owner locks."""

    __slots__ = ("_free", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._free: list[tuple[int, int]] = [(0, size)]  # (offset, size), in offset order

    @property
    def free_bytes(self) -> int:
        return sum(size for _, size in self._free)

    def alloc(self, size: int) -> int | None:
        """The offset of ``size`` free bytes, now taken; None when none are free."""
        free = self._free
        for i, (offset, room) in enumerate(free):
            if room >= size:
                if room == size:
                    del free[i]
                else:
                    free[i] = (offset + size, room - size)
                return offset
        return None

    def free(self, offset: int, size: int) -> None:
        """Give back what :meth:`alloc` took."""
        free = self._free
        lo, hi = 0, len(free)
        while lo < hi:
            mid = (lo + hi) // 2
            if free[mid][0] < offset:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(free) and offset + size == free[lo][0]:
            size += free[lo][1]
            del free[lo]
        if lo > 0 and free[lo - 1][0] + free[lo - 1][1] == offset:
            offset = free[lo - 1][0]
            size += free[lo - 1][1]
            del free[lo - 1]
            lo -= 1
        free.insert(lo, (offset, size))


class ReceivePool:
    """The process's memory for big received buffers (see the module)."""

    def __init__(self, size: int = POOL_BYTES) -> None:
        flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0)
        self._map = mmap.mmap(-1, size, flags=flags)
        _advise(self._map, "MADV_HUGEPAGE", 0, size)
        self._fit = FirstFit(size)
        self._lock = threading.Lock()
        self._freed: deque[tuple[int, int]] = deque()  # given back by finalizers, any thread

    def copy(self, data: memoryview) -> memoryview | None:
        """A writable copy of ``data`` in the pool, None when the pool is full."""
        import ctypes  # only here: most processes never receive a big buffer

        length = data.nbytes
        size = -(-length // CHUNK_ALIGN) * CHUNK_ALIGN
        with self._lock:
            while self._freed:
                self._fit.free(*self._freed.popleft())
            offset = self._fit.alloc(size)
        if offset is None:
            return None
        chunk: Any = (ctypes.c_char * length).from_buffer(self._map, offset)
        weakref.finalize(chunk, self._give_back, offset, size)
        view = memoryview(chunk).cast("B")
        view[:] = data
        return view

    def _give_back(self, offset: int, size: int) -> None:
        _advise(self._map, "MADV_FREE", offset, size)
        self._freed.append((offset, size))


def _advise(target: mmap.mmap, name: str, offset: int, size: int) -> None:
    advice = getattr(mmap, name, None)
    if advice is not None:
        try:
            target.madvise(advice, offset, size)
        except (OSError, ValueError):
            pass


_pool: ReceivePool | None = None
_pool_owner = 0
_pool_lock = threading.Lock()


def receive_pool() -> ReceivePool | None:
    """This process's pool (made on first use); None where it cannot be had."""
    global _pool, _pool_owner
    with _pool_lock:
        if _pool is None or _pool_owner != os.getpid():
            try:
                _pool = ReceivePool()
            except (OSError, ValueError):
                return None
            _pool_owner = os.getpid()
        return _pool
