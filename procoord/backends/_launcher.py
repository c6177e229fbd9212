"""The parent's end of a worker launcher (``python -m procoord._worker.launcher``).

One :class:`Launcher` is one launcher process, driven from one event loop: it sends
SPAWN requests (with the worker's pipe ends) and hands the replies to whoever asked
(SPAWNED, SPAWN_FAILED) or to the worker's channel (EXITED, once the launcher has
reaped the worker). The launcher's end of file, or its exit, means it is gone: pending
requests fail, running workers go on (their own pipes tell when they end).
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import os
import select
import signal
import socket
import subprocess
import time
import weakref
from typing import Protocol

from .._worker import protocol
from .._worker.protocol import Exited, Spawned, SpawnFailed
from ..errors import describe_exit
from ._seed import SpawnError, fork_launcher, start_launcher

__all__ = ("ExitWatcher", "Launcher", "SpawnError", "open_launcher", "pidfd_open")


class ExitWatcher(Protocol):
    """Told how a worker of this launcher ended."""

    def exit_status(self, status: int) -> None:
        """The worker was reaped with this wait status."""

    def launcher_gone(self) -> None:
        """The launcher is gone: no exit status will come."""


# Launchers let go of but maybe not yet exited: reaped at the next chance (a launcher
# ends soon after its socket closes).
_unreaped: set[subprocess.Popen[bytes]] = set()


def _wait_unreaped(timeout_s: float = 2.0) -> None:
    """At exit: give launchers let go of a moment to end their workers and exit."""
    for proc in list(_unreaped):
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            pass
        _unreaped.discard(proc)


atexit.register(_wait_unreaped)


def _reap_exited() -> None:
    for proc in list(_unreaped):
        if proc.poll() is not None:
            _unreaped.discard(proc)


def _release(sock: socket.socket, proc: subprocess.Popen[bytes] | None) -> None:
    sock.close()
    if proc is not None and proc.poll() is None:
        _unreaped.add(proc)
    _reap_exited()


async def open_launcher(loop: asyncio.AbstractEventLoop, timeout_s: float) -> Launcher:
    """A new launcher for one backend on ``loop``: forked from the seed, or a fresh
    interpreter if the seed does not answer."""
    forking = loop.run_in_executor(None, fork_launcher, timeout_s)
    try:
        forked = await asyncio.shield(forking)
    except asyncio.CancelledError:
        forking.add_done_callback(_let_go_unclaimed)  # its end of file then ends it
        raise
    if forked is None:
        proc, sock = start_launcher()
        return Launcher(loop, sock, proc.pid, proc)
    sock, pid = forked
    return Launcher(loop, sock, pid, None)


def _let_go_unclaimed(forking: asyncio.Future[tuple[socket.socket, int] | None]) -> None:
    """A launcher forked for a start that was cancelled meanwhile: close our end."""
    if not forking.cancelled() and forking.exception() is None:
        forked = forking.result()
        if forked is not None:
            forked[0].close()


# Every launcher of this process not yet let go of.
_live: weakref.WeakSet[Launcher] = weakref.WeakSet()
_exit_hook_registered = False


def _close_all_at_exit(limit_s: float = 3.0) -> None:
    """At exit, before any coordinator's finalizer: let every launcher go at once, so
    all end their workers together (SIGTERM, a grace, SIGKILL), and wait for them."""
    launchers = [la for la in _live if la.alive and la.owner == os.getpid()]  # not a fork's inheritance
    pidfds = [fd for fd in (pidfd_open(la.pid) for la in launchers) if fd is not None]
    for launcher in launchers:
        launcher.release()
    watcher = select.poll()
    for fd in pidfds:
        watcher.register(fd, select.POLLIN)
    deadline = time.monotonic() + limit_s
    waiting = len(pidfds)
    while waiting and (left := deadline - time.monotonic()) > 0:
        for fd, _ in watcher.poll(max(1, int(left * 1000))):
            watcher.unregister(fd)
            waiting -= 1
    for fd in pidfds:
        os.close(fd)


def pidfd_open(pid: int) -> int | None:
    """A file descriptor that becomes readable when ``pid`` exits (None where there is none)."""
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None


class Launcher:
    """A launcher process and the parent's end of its socket."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, pid: int, proc: subprocess.Popen[bytes] | None
    ) -> None:
        ours = sock
        ours.setblocking(False)
        self._proc = proc  # None: forked by the seed, which reaps it
        self.loop = loop
        self.pid = pid
        self.owner = os.getpid()
        self.alive = True
        self.answered = False  # it has sent a record: it is up and serving
        self._sock = ours
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._watchers: dict[int, ExitWatcher] = {}
        loop.add_reader(ours.fileno(), self._on_readable)
        self._pidfd = pidfd_open(self.pid)
        if self._pidfd is not None:
            loop.add_reader(self._pidfd, self._on_exit)
        # Dropped without close(): the socket's end of file stops the launcher.
        self._finalizer = weakref.finalize(self, _release, ours, self._proc)
        _reap_exited()
        global _exit_hook_registered
        _live.add(self)
        if not _exit_hook_registered:
            # Registered now, after the coordinators' finalizers: so it runs before them.
            atexit.register(_close_all_at_exit)
            _exit_hook_registered = True

    def spawn(self, rfd: int, wfd: int, name: str, title: str) -> asyncio.Future[int]:
        """Ask for a worker on these pipe ends (the caller still closes its copies);
        the future gives its pid, or raises SpawnError."""
        if not self.alive:
            raise SpawnError(f"the worker launcher (pid {self.pid}) is gone")
        request = next(self._ids)
        try:
            socket.send_fds(self._sock, [protocol.encode_spawn(request, name, title)], [rfd, wfd])
        except BlockingIOError:  # it has not read its requests for long: stopped or stuck
            self.kill()
            raise SpawnError(
                f"the worker launcher (pid {self.pid}) takes no more requests (is it stopped?); it was "
                "replaced, so the next add_worker starts a fresh one"
            ) from None
        except OSError as exc:
            self._gone()
            raise SpawnError(f"the worker launcher (pid {self.pid}) is gone: {exc.strerror}") from None
        future: asyncio.Future[int] = self.loop.create_future()
        self._pending[request] = future
        return future

    def watch(self, pid: int, watcher: ExitWatcher) -> None:
        """Tell ``watcher`` how worker ``pid`` ends."""
        if self.alive:
            self._watchers[pid] = watcher
        else:
            watcher.launcher_gone()

    def unwatch(self, pid: int) -> None:
        self._watchers.pop(pid, None)

    def stopped(self) -> bool:
        """Whether the launcher is stopped (SIGSTOP, or held by a tracer)."""
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state in (b"T", b"t")

    def kill(self) -> None:
        """End the launcher now (it does not answer); its workers keep running."""
        try:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            elif self._proc is not None:
                self._proc.kill()
        except OSError:
            pass
        self._gone()

    def close(self) -> None:
        """Let the launcher go: it ends the workers it still has, and exits."""
        self._gone()

    def release(self) -> None:
        """Close our end from any thread (at exit): the launcher ends its workers and exits."""
        _live.discard(self)
        self._finalizer()

    # -- events ---------------------------------------------------------------------

    def _on_readable(self) -> None:
        while True:
            try:
                data = self._sock.recv(protocol.MAX_RECORD)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._gone()
                return
            record = protocol.decode(data)
            self.answered = True
            if isinstance(record, Spawned):
                future = self._pending.pop(record.request, None)
                if future is not None and not future.done():
                    future.set_result(record.pid)
            elif isinstance(record, SpawnFailed):
                future = self._pending.pop(record.request, None)
                if future is not None and not future.done():
                    future.set_exception(SpawnError(record.reason))
            elif isinstance(record, Exited):
                watcher = self._watchers.pop(record.pid, None)
                if watcher is not None:
                    watcher.exit_status(record.status)

    def _on_exit(self) -> None:
        if self._pidfd is not None:
            self.loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        self._gone()
        _reap_exited()

    def _gone(self) -> None:
        if not self.alive:
            return
        self.alive = False
        _live.discard(self)
        # At exit, release() may have closed the socket already (fileno -1).
        if not self.loop.is_closed() and self._sock.fileno() >= 0:
            self.loop.remove_reader(self._sock.fileno())
        self._finalizer()
        code = self._proc.poll() if self._proc is not None else None
        ended = "ended" if code is None else f"ended {describe_exit(code)}"
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(SpawnError(f"the worker launcher (pid {self.pid}) {ended} before it answered"))
        watchers, self._watchers = self._watchers, {}
        for watcher in watchers.values():
            watcher.launcher_gone()

    def __repr__(self) -> str:
        return f"<Launcher pid={self.pid} {'alive' if self.alive else 'gone'}>"
