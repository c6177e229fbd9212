"""Big buffers between the coordinator and its local workers go through shared memory,
not the pipes; procoord frees that memory on every path (a result, a cancel, a worker
killed mid-task, close, the parent killed), and a buffer that does not fit takes the
pipe."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import pickle
import signal
import sys
import textwrap
from collections.abc import Hashable
from pathlib import Path

import psutil
import pytest

from procoord import Coordinator, TaskPrefs, WorkerLostError
from procoord.backends.inline import InlineBackend

from . import _big
from .conftest import DEADLOCK_TIMEOUT, BeaconFactory

MIB = 1 << 20


def _io(pid: int) -> tuple[int, int]:
    """(bytes read, bytes written) by process ``pid`` so far, through any file or pipe."""
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["rchar"]), int(fields["wchar"])


def _memfds() -> list[str]:
    """procoord's shared memory this process holds open."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if "memfd:procoord" in target:
            found.append(target)
    return found


def _new_in_dev_shm(before: set[str]) -> set[str]:
    """Files in /dev/shm that were not there before, but for the semaphores other pools
    on the machine make (multiprocessing's ``sem.*``): procoord makes none at all."""
    return {name for name in set(os.listdir("/dev/shm")) - before if not name.startswith("sem.")}


def _shm_mapped(pid: int) -> list[str]:
    """What of /dev/shm process ``pid`` maps."""
    return [line for line in Path(f"/proc/{pid}/maps").read_text().splitlines() if "/dev/shm/" in line]


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _pid(coord: Coordinator, ident: Hashable) -> int:
    pid = (await coord.stats())[ident].pid
    assert pid is not None
    return pid


async def _pipe_bytes(coord: Coordinator, ident: Hashable, task: object) -> int:
    """Run ``task`` on worker ``ident`` and return how many bytes it moved through its
    pipes (what it read and wrote)."""
    pid = await _pid(coord, ident)
    read0, written0 = _io(pid)
    await coord.call(task, TaskPrefs.Required(ident))
    read1, written1 = _io(pid)
    return (read1 - read0) + (written1 - written0)


@pytest.fixture
async def baseline() -> tuple[int, set[str]]:
    """The parent's fd count and /dev/shm's files before a test (after a worker has run
    a big task, so what lives as long as the process, the launcher seed, is up)."""
    async with Coordinator() as coord:
        await coord.add_worker("w", _big.echo)
        await coord.call(os.urandom(MIB))
    gc.collect()
    return _fd_count(), set(os.listdir("/dev/shm"))


async def test_big_buffers_cross_both_ways_exactly() -> None:
    """Test that bytes, bytearray and PickleBuffer tasks and results of several sizes
    (below, at and above the shared-memory threshold, and above the huge-copy one)
    come back equal and of their type, and arrive intact in the worker."""
    async with Coordinator() as coord:
        await coord.add_worker("w", _big.echo)
        await coord.add_worker("r", _big.reverse)
        await coord.add_worker("d", _big.describe)
        for size in (100_000, 256 * 1024, MIB + 3, 5 * MIB + 1):
            data = os.urandom(size)
            for value in (data, bytearray(data), (data, "tag"), {"k": [bytearray(data)]}):
                back, _ = await coord.call(value, TaskPrefs.Required("w"))
                assert back == value and type(back) is type(value)
            assert (await coord.call(data, TaskPrefs.Required("r")))[0] == data[::-1]
            digest = hashlib.sha256(data).hexdigest()
            described, _ = await coord.call(pickle.PickleBuffer(bytearray(data)), TaskPrefs.Required("d"))
            assert described[1] == digest
            assert (await coord.call(data, TaskPrefs.Required("d")))[0] == ("bytes", digest)


async def test_numpy_arrays_cross_both_ways_exactly() -> None:
    """Test that numpy arrays (large and small, several dtypes and shapes) come back
    equal, writable, with their dtype and shape."""
    numpy = pytest.importorskip("numpy")
    async with Coordinator() as coord:
        await coord.add_worker("w", _big.echo)
        rng = numpy.random.default_rng(7)
        for array in (
            rng.integers(0, 255, 64 * MIB, dtype=numpy.uint8),
            rng.standard_normal((512, 1024)),
            numpy.arange(10, dtype=numpy.int32),
            rng.standard_normal(300_000).astype(numpy.float32)[::2],  # not contiguous
        ):
            back, _ = await coord.call(array)
            assert back.dtype == array.dtype and back.shape == array.shape
            assert numpy.array_equal(back, array)
            assert back.flags.writeable
            back[...] = 0  # the copy is the caller's own


async def test_big_arrays_held_stay_intact_on_both_sides() -> None:
    """Test that big arrays a worker keeps and results the caller keeps never change as
    more big tasks and results come and go (their memory is not reused while held)."""
    numpy = pytest.importorskip("numpy")
    async with Coordinator() as coord:
        await coord.add_worker("keeper", _big.Keeper())
        await coord.add_worker("echo", _big.echo)
        arrays = [numpy.full(5 * MIB, i, dtype=numpy.uint8) for i in range(6)]
        digests = [hashlib.sha256(a).hexdigest() for a in arrays]
        held = []
        for i, array in enumerate(arrays):
            kept, _ = await coord.call(array, TaskPrefs.Required("keeper"))
            assert kept == digests[: i + 1]
            held.append((await coord.call(array, TaskPrefs.Required("echo")))[0])
        assert [hashlib.sha256(a).hexdigest() for a in held] == digests


async def test_a_batch_of_big_tasks_comes_back_exact() -> None:
    """Test that run_batch carries big tasks and results (a list of them) exactly."""
    async with Coordinator() as coord:
        await coord.add_worker("w", _big.reverse)
        items = [os.urandom(MIB) for _ in range(4)]
        outcomes, _ = await (await coord.run_batch(items))
        assert outcomes == [(True, item[::-1]) for item in items]


async def test_big_buffers_skip_the_pipe() -> None:
    """Test that a 16 MiB task and its result move next to nothing through the worker's
    pipes, both ways."""
    async with Coordinator() as coord:
        await coord.add_worker("w", _big.reverse)
        data = os.urandom(16 * MIB)
        await coord.call(data)
        assert await _pipe_bytes(coord, "w", data) < MIB


async def test_with_shared_memory_off_big_buffers_take_the_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test that PROCOORD_SHM_BYTES=0 turns shared memory off: the same task then moves
    its bytes through the pipes (and still comes back exact)."""
    monkeypatch.setenv("PROCOORD_SHM_BYTES", "0")
    async with Coordinator() as coord:
        await coord.add_worker("w", _big.reverse)
        data = os.urandom(16 * MIB)
        assert await _pipe_bytes(coord, "w", data) >= 2 * 16 * MIB
        assert (await coord.call(data))[0] == data[::-1]
        assert not _memfds()


async def test_a_buffer_larger_than_the_arena_takes_the_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test that with arenas of 4 MiB a 6 MiB buffer goes through the pipe, exact, while
    a 1 MiB one still goes through shared memory."""
    monkeypatch.setenv("PROCOORD_SHM_BYTES", str(4 * MIB))
    async with Coordinator() as coord:
        await coord.add_worker("w", _big.reverse)
        big, small = os.urandom(6 * MIB), os.urandom(MIB)
        assert await _pipe_bytes(coord, "w", big) >= 2 * 6 * MIB
        assert (await coord.call(big))[0] == big[::-1]
        assert await _pipe_bytes(coord, "w", small) < MIB // 2


async def test_many_concurrent_big_tasks(baseline: tuple[int, set[str]]) -> None:
    """Test that many big tasks at once, over several workers, each get their own
    result back exact; once closed, the parent holds no more fds or shared memory."""
    fds, shm_files = baseline
    async with Coordinator() as coord:
        await asyncio.gather(*(coord.add_worker(f"w{i}", _big.reverse) for i in range(3)))
        payloads = [os.urandom(MIB + i * 4099) for i in range(48)]
        results = await asyncio.gather(*(coord.call(p) for p in payloads))
        assert [r for r, _ in results] == [p[::-1] for p in payloads]
    gc.collect()
    assert not _memfds()
    assert _fd_count() <= fds
    assert not _new_in_dev_shm(shm_files)


async def test_a_cancelled_queued_big_task_frees_its_buffer(
    monkeypatch: pytest.MonkeyPatch, beacons: BeaconFactory
) -> None:
    """Test that cancelling a big task that waits behind a running one gives its shared
    memory back: with arenas of 24 MiB, another 16 MiB task then still goes through
    shared memory (it would not fit beside the cancelled one's)."""
    monkeypatch.setenv("PROCOORD_SHM_BYTES", str(24 * MIB))
    started, release = beacons(), beacons()
    async with Coordinator() as coord:
        await coord.add_worker("w", _big.hold_then_size)
        only_w = TaskPrefs.Required("w")
        running = await coord.run((started.path, release.path, b"x"), only_w)
        await started.wait()
        queued = await coord.run((started.path, release.path, os.urandom(16 * MIB)), only_w)
        assert queued.cancel()
        await release.signal()
        assert (await running)[0] == 1
        # Frames reach the worker in order: once this one is back, the worker has
        # answered the cancel too (if the task had reached it).
        assert (await coord.call(("", "", b""), only_w))[0] == 0
        assert await _pipe_bytes(coord, "w", ("", "", os.urandom(16 * MIB))) < MIB


async def test_a_worker_killed_mid_task_leaves_nothing(
    monkeypatch: pytest.MonkeyPatch, beacons: BeaconFactory, baseline: tuple[int, set[str]]
) -> None:
    """Test that a worker SIGKILLed while it holds a 16 MiB task fails it with
    WorkerLostError and frees its shared memory (another 16 MiB task still fits in
    arenas of 24 MiB); after close the parent holds no more fds or shared memory and
    /dev/shm has nothing new."""
    fds, shm_files = baseline
    monkeypatch.setenv("PROCOORD_SHM_BYTES", str(24 * MIB))
    started, release = beacons(), beacons()
    async with Coordinator() as coord:
        await coord.add_worker("victim", _big.hold_then_size)
        await coord.add_worker("next", _big.reverse)
        handle = await coord.run((started.path, release.path, os.urandom(16 * MIB)), TaskPrefs.Required("victim"))
        await started.wait()
        os.kill(await _pid(coord, "victim"), signal.SIGKILL)
        with pytest.raises(WorkerLostError):
            await asyncio.wait_for(handle.join(), DEADLOCK_TIMEOUT)
        assert await _pipe_bytes(coord, "next", os.urandom(16 * MIB)) < MIB
    gc.collect()
    assert not _memfds()
    assert _fd_count() <= fds
    assert not _new_in_dev_shm(shm_files)


async def test_streamed_big_parts_come_through_shared_memory() -> None:
    """Test that the big parts of a streaming task arrive exact and in order, through
    shared memory."""
    async with Coordinator() as coord:
        await coord.add_worker("w", _big.chunks)
        pid = await _pid(coord, "w")
        written = _io(pid)[1]
        parts = [part async for part in coord.stream((12, 2 * MIB))]
        assert parts == [bytes([i]) * (2 * MIB) for i in range(12)]
        assert _io(pid)[1] - written < MIB


async def test_in_process_workers_take_big_buffers_while_local_ones_share_memory() -> None:
    """Test that a worker of the in-process backend gets big tasks exact while a local
    worker of the same coordinator has shared memory (the task's copy is in shared
    memory; the in-process channel takes its bytes)."""
    async with Coordinator() as coord:
        await coord.add_worker("local", _big.reverse)
        await coord.add_worker("inline", _big.reverse, backend=InlineBackend())
        data = os.urandom(3 * MIB)
        for ident in ("local", "inline", "inline", "local"):
            assert (await coord.call(data, TaskPrefs.Required(ident)))[0] == data[::-1]


async def test_a_sigkilled_parent_leaves_no_shared_memory(tmp_path: Path) -> None:
    """Test that a coordinator's process killed with SIGKILL while big tasks are in
    flight leaves nothing in /dev/shm, and its workers end."""
    before = set(os.listdir("/dev/shm"))
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, os
            import procoord
            from tests import _big

            async def main():
                coord = procoord.Coordinator()
                await coord.add_worker("w", _big.reverse)
                await coord.call(os.urandom(8 << 20))
                print((await coord.stats())["w"].pid, flush=True)
                while True:
                    await coord.call(os.urandom(8 << 20))

            asyncio.run(main())
            """
        )
    )
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, *sys.path]))
    proc = await asyncio.create_subprocess_exec(sys.executable, str(script), stdout=asyncio.subprocess.PIPE, env=env)
    assert proc.stdout is not None
    worker = psutil.Process(int(await asyncio.wait_for(proc.stdout.readline(), DEADLOCK_TIMEOUT)))
    assert not _shm_mapped(proc.pid) and not _shm_mapped(worker.pid)
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    _, alive = psutil.wait_procs([worker], timeout=DEADLOCK_TIMEOUT)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not _new_in_dev_shm(before)


async def test_ray_workers_take_big_buffers_while_local_ones_share_memory(request: pytest.FixtureRequest) -> None:
    """Test that a worker on the Ray backend gets big bytes and arrays exact, both ways,
    next to a local worker of the same coordinator that has shared memory."""
    pytest.importorskip("ray")
    numpy = pytest.importorskip("numpy")
    request.getfixturevalue("ray_session")
    from procoord.backends import RayBackend

    async with Coordinator() as coord:
        await coord.add_worker("local", _big.echo)
        await coord.add_worker("ray", _big.echo, backend=RayBackend())
        data, array = os.urandom(3 * MIB), numpy.arange(MIB, dtype=numpy.float64)
        for ident in ("ray", "local", "ray"):
            assert (await coord.call(data, TaskPrefs.Required(ident)))[0] == data
            back, _ = await coord.call(array, TaskPrefs.Required(ident))
            assert numpy.array_equal(back, array)
