"""Starting launcher processes: a fresh interpreter, or a fork of this process's seed.

The seed is one launcher per process, started as a fresh interpreter ahead of need
(when a coordinator class is first looked up, or a LocalBackend is made) or else the
first time a launcher is needed, that runs no workers: it forks a launcher for each backend on
request, in milliseconds, where a fresh interpreter takes a hundred or more. Every
launcher it forks leads a session of its own, so a seed or launcher that dies or stops
affects no other. If the seed does not answer, a fresh interpreter is started instead
and the seed is replaced next time.
"""

from __future__ import annotations

import atexit
import itertools
import os
import signal
import socket
import subprocess
import threading

from .._launch import LAUNCHER_MODULE, start_launcher, start_seed_early, take_early_seed
from .._worker import protocol
from .._worker.protocol import Spawned, SpawnFailed

__all__ = ("LAUNCHER_MODULE", "SpawnError", "fork_launcher", "start_launcher", "start_seed")


class SpawnError(Exception):
    """A launcher did not start the worker (or the launcher); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Seed:
    """The parent's end of the seed: blocking calls, one at a time, from any thread."""

    def __init__(self) -> None:
        self.proc, self.sock = take_early_seed() or start_launcher(seed=True)
        self.owner = os.getpid()
        self.ids = itertools.count(1)

    def fork(self, timeout_s: float) -> tuple[socket.socket, int]:
        """A new launcher: our end of its socket and its pid. Raises OSError (out of
        descriptors here), SpawnError (the seed could not fork) or TimeoutError /
        ConnectionError (the seed does not answer)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            request = next(self.ids)
            self.sock.settimeout(timeout_s)
            socket.send_fds(self.sock, [protocol.encode_fork_launcher(request)], [theirs.fileno()])
            while True:
                data = self.sock.recv(protocol.MAX_RECORD)
                if not data:
                    raise ConnectionError("the launcher seed is gone")
                record = protocol.decode(data)
                if isinstance(record, Spawned) and record.request == request:
                    return ours, record.pid
                if isinstance(record, SpawnFailed) and record.request == request:
                    raise SpawnError(record.reason)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()

    def close(self) -> None:
        self.sock.close()
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGKILL)
            except OSError:
                pass
        self.proc.wait()


_seed: _Seed | None = None
_seed_lock = threading.Lock()


def start_seed() -> None:
    """Have the seed start now, in the background, if this process has none yet: its
    interpreter then starts while the caller goes on to its first worker."""
    with _seed_lock:
        if _seed is None or _seed.owner != os.getpid():
            start_seed_early()


def fork_launcher(timeout_s: float) -> tuple[socket.socket, int] | None:
    """A launcher forked from the seed (started now if there is none): our end of its
    socket and its pid; None if the seed does not answer within ``timeout_s`` (it is
    then replaced next time). Raises OSError when out of descriptors, SpawnError when
    the seed cannot fork."""
    global _seed
    with _seed_lock:
        if _seed is not None and _seed.owner != os.getpid():
            _seed = None  # inherited through a fork of this process: not ours
        if _seed is None:
            _seed = _Seed()
        try:
            return _seed.fork(timeout_s)
        except (TimeoutError, ConnectionError, ValueError):
            _seed.close()
            _seed = None
            return None


@atexit.register
def _close_seed() -> None:
    """At exit: the seed ends on its socket's end of file (it has no workers)."""
    global _seed
    with _seed_lock:
        if _seed is not None and _seed.owner == os.getpid():
            _seed.sock.close()
            try:
                _seed.proc.wait(2.0)
            except subprocess.TimeoutExpired:
                _seed.proc.kill()
        _seed = None
