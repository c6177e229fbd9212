"""The records a launcher exchanges with the parent, and the setup record a new worker
reads first from its own pipe.

Parent and launcher talk over a connected ``AF_UNIX`` ``SOCK_SEQPACKET`` pair (nothing
listens): one record per message, so no framing is needed. A SPAWN request carries the
worker's two pipe ends as ``SCM_RIGHTS`` ancillary data; the replies are SPAWNED (the
pid), SPAWN_FAILED (an errno and why) and EXITED (a worker's wait status, once the
launcher has reaped it). A FORK_LAUNCHER request to the seed (the one launcher of a
process started as a fresh interpreter) carries one socket end: the seed forks a new
launcher serving it. The processor spec never goes through a launcher: the parent
writes it to the worker's pipe as the setup record, which the worker reads right after
the fork.
"""

from __future__ import annotations

import os
import pickle
import struct
from dataclasses import dataclass
from enum import IntEnum

from ..processor import ProcessorSpec
from .shm import SharedSetup

__all__ = (
    "DEFAULT_SAMPLE_INTERVAL_S",
    "Exited",
    "ForkLauncher",
    "Record",
    "RecordKind",
    "Spawn",
    "SpawnFailed",
    "Spawned",
    "WorkerSetup",
    "decode",
    "encode_exited",
    "encode_fork_launcher",
    "encode_setup",
    "encode_spawn",
    "encode_spawn_failed",
    "encode_spawned",
    "read_setup",
)

# How often a worker reports CPU and memory by default: fresher stats against wake-ups.
DEFAULT_SAMPLE_INTERVAL_S = 0.25

# The largest record a launcher message holds (a SPAWN's title, a SPAWN_FAILED's reason).
MAX_RECORD = 4096

_HEAD = struct.Struct("<BQq")  # kind, request id or pid, pid / errno / wait status
_SETUP_LENGTH = struct.Struct("<Q")


class RecordKind(IntEnum):
    SPAWN = 1
    SPAWNED = 2
    SPAWN_FAILED = 3
    EXITED = 4
    FORK_LAUNCHER = 5


@dataclass(frozen=True, slots=True)
class Spawn:
    """Parent to launcher: fork a worker on the two pipe ends that come with the request
    (read, write), named ``name`` (its ``comm``) and titled ``title`` (its command line)."""

    request: int
    name: str
    title: str


@dataclass(frozen=True, slots=True)
class Spawned:
    """Launcher to parent: the worker for ``request`` runs as ``pid``."""

    request: int
    pid: int


@dataclass(frozen=True, slots=True)
class SpawnFailed:
    """Launcher to parent: no worker for ``request``; ``errno`` and ``reason`` say why."""

    request: int
    errno: int
    reason: str


@dataclass(frozen=True, slots=True)
class Exited:
    """Launcher to parent: worker ``pid`` ended with this wait status (as ``os.waitpid``)."""

    pid: int
    status: int


@dataclass(frozen=True, slots=True)
class ForkLauncher:
    """Parent to the seed launcher: fork a new launcher serving the socket that comes
    with the request; the reply is SPAWNED (its pid) or SPAWN_FAILED."""

    request: int


Record = Spawn | Spawned | SpawnFailed | Exited | ForkLauncher


def encode_spawn(request: int, name: str, title: str) -> bytes:
    text = name.replace("\0", " ") + "\0" + title.replace("\0", " ")
    return _HEAD.pack(RecordKind.SPAWN, request, 0) + text.encode()[: MAX_RECORD - _HEAD.size]


def encode_spawned(request: int, pid: int) -> bytes:
    return _HEAD.pack(RecordKind.SPAWNED, request, pid)


def encode_spawn_failed(request: int, errno: int, reason: str) -> bytes:
    return _HEAD.pack(RecordKind.SPAWN_FAILED, request, errno) + reason.encode()[: MAX_RECORD - _HEAD.size]


def encode_exited(pid: int, status: int) -> bytes:
    return _HEAD.pack(RecordKind.EXITED, pid, status)


def encode_fork_launcher(request: int) -> bytes:
    return _HEAD.pack(RecordKind.FORK_LAUNCHER, request, 0)


def decode(data: bytes) -> Record:
    """One record from one message; raises ValueError for anything else."""
    if len(data) < _HEAD.size:
        raise ValueError(f"a launcher record is at least {_HEAD.size} bytes, got {len(data)}")
    kind, first, second = _HEAD.unpack_from(data)
    text = data[_HEAD.size :].decode(errors="replace")
    if kind == RecordKind.SPAWN:
        name, _, title = text.partition("\0")
        return Spawn(first, name, title)
    if kind == RecordKind.SPAWNED:
        return Spawned(first, second)
    if kind == RecordKind.SPAWN_FAILED:
        return SpawnFailed(first, second, text)
    if kind == RecordKind.EXITED:
        return Exited(first, second)
    if kind == RecordKind.FORK_LAUNCHER:
        return ForkLauncher(first)
    raise ValueError(f"unknown launcher record kind {kind}")


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """What a forked worker needs before it builds its processor.

    ``environ`` is the whole environment the worker runs with (the parent's
    ``os.environ`` when ``add_worker`` was called, with the worker's overrides);
    ``sys_path`` and ``cwd`` are the parent's, so the user's modules resolve the same.
    ``shared`` is the shared memory offered for big buffers (None: none).
    """

    spec: ProcessorSpec
    environ: dict[str, str]
    sys_path: list[str]
    cwd: str
    sample_interval_s: float
    shared: SharedSetup | None = None


def encode_setup(setup: WorkerSetup) -> bytes:
    data = pickle.dumps(setup, pickle.HIGHEST_PROTOCOL)
    return _SETUP_LENGTH.pack(len(data)) + data


def read_setup(fd: int) -> WorkerSetup:
    """Read the setup record from a blocking ``fd``; raises EOFError if the parent is gone."""
    (length,) = _SETUP_LENGTH.unpack(_read_exactly(fd, _SETUP_LENGTH.size))
    setup = pickle.loads(_read_exactly(fd, length))
    if not isinstance(setup, WorkerSetup):
        raise ValueError(f"expected a worker setup record, got {type(setup).__qualname__}")
    return setup


def _read_exactly(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError("the parent closed the worker's pipe before it was set up")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
