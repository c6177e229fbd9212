"""Shared fixtures: a coordinator per test, beacons to wait on worker events, and a
check that no test leaves a worker process behind."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest

from procoord import Coordinator

# Only to detect hangs, never to time behaviour.
DEADLOCK_TIMEOUT = 60.0

# How a procoord worker's actor process shows in ps while it runs.
RAY_WORKER_TITLE = "ray::ProcoordWorker"

# How a local worker's command line starts in ps, and the module a launcher runs.
WORKER_TITLE = "procoord worker"
LAUNCHER_MODULE = "procoord._worker.launcher"


def _worker_processes() -> list[psutil.Process]:
    """Our worker processes and what they started: descendants of a launcher (not the
    launchers themselves, which live as long as their backend), workers of ours whose
    launcher is gone (found by their title), or Ray actor processes of ours (not the
    rest of Ray's processes, which live for the session)."""
    me = psutil.Process()
    ray_pids = _ray_pids(me)
    found = {}
    for proc in me.children(recursive=True):
        try:
            cmdline = proc.cmdline()
            if proc.pid in ray_pids:
                if cmdline and cmdline[0].startswith(RAY_WORKER_TITLE):
                    found[proc.pid] = proc
            elif proc.ppid() != me.pid and LAUNCHER_MODULE not in cmdline:
                found[proc.pid] = proc
        except psutil.Error:
            pass
    for proc in orphaned_workers(me.pid):
        found[proc.pid] = proc
    return list(found.values())


def orphaned_workers(coordinator_pid: int) -> list[psutil.Process]:
    """Workers of a coordinator in process ``coordinator_pid`` that are no longer its
    descendants (their launcher is gone), and what they started."""
    mark = f"{WORKER_TITLE} "
    tail = f"(coordinator pid {coordinator_pid})"
    found = []
    for proc in psutil.process_iter():
        try:
            title = " ".join(proc.cmdline())
            if title.startswith(mark) and title.endswith(tail):
                found.append(proc)
                found.extend(proc.children(recursive=True))
        except psutil.Error:
            pass
    return found


def _ray_pids(me: psutil.Process) -> set[int]:
    """The processes a local Ray instance started (its daemons and their children)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.__file__:
        return set()
    ray_dir = os.path.dirname(ray.__file__) + os.sep
    pids: set[int] = set()
    for child in me.children():
        try:
            if any(part.startswith(ray_dir) for part in child.cmdline()):
                pids.add(child.pid)
                pids.update(p.pid for p in child.children(recursive=True))
        except psutil.Error:
            pass
    return pids


def _status(proc: psutil.Process) -> str:
    try:
        return str(proc.status())
    except psutil.Error:
        return psutil.STATUS_DEAD


@pytest.fixture(autouse=True)
def no_leaked_workers() -> Iterator[None]:
    """Fail a test that leaves a worker process alive."""
    yield
    _, alive = psutil.wait_procs(_worker_processes(), timeout=10)
    alive = [p for p in alive if _status(p) != psutil.STATUS_ZOMBIE]
    for proc in alive:
        proc.kill()
    assert not alive, f"worker processes left alive: {[(p.pid, p.ppid()) for p in alive]}"


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A local Ray instance, started once per test session by the first test that needs it."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


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
