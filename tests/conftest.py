"""Shared fixtures: a coordinator per test, beacons to wait on worker events, and a
check that no test leaves a worker process behind."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest

from procoord import Coordinator

# Only to detect hangs, never to time behaviour.
DEADLOCK_TIMEOUT = 60.0


def _worker_processes() -> list[psutil.Process]:
    """Our worker processes: children of the forkserver, or spawned children."""
    me = psutil.Process()
    found = []
    for proc in me.children(recursive=True):
        try:
            if proc.ppid() != me.pid or "--multiprocessing-fork" in proc.cmdline():
                found.append(proc)
        except psutil.Error:
            pass
    return found


@pytest.fixture(autouse=True)
def no_leaked_workers() -> Iterator[None]:
    """Fail a test that leaves a worker process alive."""
    yield
    _, alive = psutil.wait_procs(_worker_processes(), timeout=10)
    for proc in alive:
        proc.kill()
    assert not alive, f"worker processes left alive: {[p.pid for p in alive]}"


@pytest.fixture
async def coord() -> AsyncIterator[Coordinator]:
    async with Coordinator() as c:
        yield c


class Beacon:
    """A named FIFO: a worker writes a byte to it, the test awaits that byte."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        os.mkfifo(self.path)

    async def wait(self, timeout: float = DEADLOCK_TIMEOUT) -> None:
        """Wait until a worker signals (``_funcs.signal_beacon``)."""
        fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def on_readable() -> None:
            try:
                if os.read(fd, 1) and not ready.done():
                    ready.set_result(None)
            except BlockingIOError:
                pass

        loop.add_reader(fd, on_readable)
        try:
            await asyncio.wait_for(ready, timeout)
        finally:
            loop.remove_reader(fd)
            os.close(fd)

    def open_reader(self) -> int:
        """Open the read end now, so a writer never blocks (call before the worker signals)."""
        return os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)

    async def signal(self) -> None:
        """Release a worker blocked in ``_funcs.wait_beacon``."""
        await asyncio.to_thread(_write_fifo, self.path)


def _write_fifo(path: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, b"x")
    finally:
        os.close(fd)


@pytest.fixture
def beacons(tmp_path: Path) -> Iterator[BeaconFactory]:
    yield BeaconFactory(tmp_path)


class BeaconFactory:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def __call__(self) -> Beacon:
        self.count += 1
        return Beacon(self.root / f"beacon-{self.count}")
