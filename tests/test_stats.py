"""stats(), factories by name, parallel start and logging."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import time
from collections.abc import Coroutine, Hashable
from pathlib import Path
from typing import Any

import pytest

import procoord
from procoord import Coordinator, TaskPrefs, WorkerStartError, WorkerStats, format_stats

from . import _funcs
from .conftest import DEADLOCK_TIMEOUT, BeaconFactory


async def test_stats_fields_and_exact_counts(coord: Coordinator) -> None:
    """Test every WorkerStats field and that counts are exact."""
    await coord.add_worker("w", _funcs.raiser)
    for _ in range(5):
        await coord.call("ok")
    for _ in range(2):
        with pytest.raises(procoord.TaskProcessError):
            await coord.call("value")
    s = (await coord.stats())["w"]
    assert isinstance(s, WorkerStats)
    assert (s.ident, s.state, s.queue_len, s.in_flight, s.completed, s.failed, s.restarts, s.factory) == (
        "w",
        "idle",
        0,
        0,
        5,
        2,
        0,
        None,
    )
    assert s.pid is not None and s.pid != os.getpid()
    assert s.ewma_ms is not None and s.ewma_ms >= 0
    assert s.uptime_s >= 0
    async with asyncio.timeout(DEADLOCK_TIMEOUT):  # the first load sample arrives within 0.25 s
        while (await coord.stats())["w"].rss_bytes == 0:
            await asyncio.sleep(0.01)
    assert (await coord.stats())["w"].rss_bytes > 5 * 2**20


def _answered_at_once(stats: Coroutine[Any, Any, dict[Hashable, WorkerStats]]) -> dict[Hashable, WorkerStats]:
    """The value of a ``stats()`` coroutine that must finish without ever waiting."""
    try:
        stats.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    stats.close()
    raise AssertionError("stats() waited for something")


async def test_stats_while_every_worker_burns_cpu(beacons: BeaconFactory, tmp_path: Path) -> None:
    """Test that stats() answers at once while all workers run CPU-bound tasks, showing them busy."""
    cores = os.cpu_count() or 1
    stop = tmp_path / "stop"
    async with Coordinator() as coord:
        for i in range(cores):
            await coord.add_worker(i, _funcs.spin_until)
        starts = [beacons() for _ in range(cores)]
        handles = [await coord.run((b.path, str(stop)), TaskPrefs.Required(i)) for i, b in enumerate(starts)]
        await asyncio.gather(*(b.wait() for b in starts))
        peak = dict.fromkeys(range(cores), 0.0)
        async with asyncio.timeout(DEADLOCK_TIMEOUT):
            while min(peak.values()) <= 50:
                stats = _answered_at_once(coord.stats())
                assert all(s.state == "busy" and s.in_flight == 1 and s.queue_len == 1 for s in stats.values())
                for i, s in stats.items():
                    peak[i] = max(peak[i], s.cpu_percent)  # type: ignore[index]
                await asyncio.sleep(0.05)  # wait-ok: the pace of sampling, not a wait for an event
        stop.touch()
        assert [(await h)[0] for h in handles] == ["spun"] * cores


async def test_stopped_and_restarting_workers_still_appear(coord: Coordinator) -> None:
    """Test that stats() shows a restarting worker, never raising."""
    await coord.add_worker("w", _funcs.double)
    pid = (await coord.stats())["w"].pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    seen: set[str] = set()
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        while True:
            s = (await coord.stats())["w"]
            seen.add(s.state)
            if s.restarts == 1 and s.state == "idle":
                break
            await asyncio.sleep(0.001)
    await coord.close()
    assert (await coord.stats())["w"].state == "stopped"


def test_format_stats_table() -> None:
    """Test the aligned text table: one line per worker plus totals."""
    rows = {
        "alpha": WorkerStats("alpha", 10, "busy", 3, 2, 100, 1, 1.5, 99.0, 50 * 2**20, 5.0, 0, "f"),
        7: WorkerStats(7, None, "restarting", 0, 0, 0, 0, None, 0.0, 0, 0.0, 2, None),
    }
    table = format_stats(rows)
    lines = table.splitlines()
    assert lines[0].split() == [
        "worker",
        "state",
        "pid",
        "queue",
        "done",
        "failed",
        "ewma",
        "ms",
        "cpu",
        "%",
        "rss",
        "MiB",
        "restarts",
    ]
    assert len({len(line) for line in lines}) == 1  # aligned
    assert "alpha" in lines[2] and "busy" in lines[2] and "1.500" in lines[2] and "50.0" in lines[2]
    assert lines[-1].split()[:2] == ["total", "2"]


async def test_add_workers_in_parallel(coord: Coordinator) -> None:
    """Test add_workers: several workers of one factory, started in parallel."""
    coord.register("locker", _funcs.LockHolder, "x")
    t0 = time.perf_counter()
    await coord.add_worker("locker-0", "locker")
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    idents = await coord.add_workers("locker", 4)
    four = time.perf_counter() - t0
    assert idents == ["locker-1", "locker-2", "locker-3", "locker-4"]
    stats = await coord.stats()
    assert len({s.pid for s in stats.values()}) == 5
    assert all(s.factory == "locker" for s in stats.values())
    print(f"start 1: {one * 1000:.0f} ms, start 4 in parallel: {four * 1000:.0f} ms")


async def test_add_workers_failure_leaves_nothing(coord: Coordinator) -> None:
    """Test that a failing factory in add_workers removes the ones that started."""
    coord.register("bad", _funcs.failing_factory)
    with pytest.raises(WorkerStartError, match="factory refuses"):
        await coord.add_workers("bad", 3)
    assert coord.workers() == []


async def test_logging(caplog: pytest.LogCaptureFixture, coord: Coordinator) -> None:
    """Test that start, crash and restart are logged on the "procoord" logger with ident and pid."""
    caplog.set_level(logging.INFO, logger="procoord")
    await coord.add_worker("logged", _funcs.raiser)
    pid = (await coord.stats())["logged"].pid
    with pytest.raises(procoord.WorkerLostError):
        await coord.call("_exit")
    async with asyncio.timeout(DEADLOCK_TIMEOUT):
        while (await coord.stats())["logged"].restarts < 1:
            await asyncio.sleep(0.01)
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "procoord"]
    assert ("INFO", f"worker 'logged' started (pid {pid})") in messages
    assert any(level == "WARNING" and f"(pid {pid}) died with exit code 42" in m for level, m in messages)
    assert any(level == "INFO" and "worker 'logged' restarted" in m for level, m in messages)


async def test_stats_as_dict_is_json(coord: Coordinator) -> None:
    """Test WorkerStats.as_dict(): every field, through json, from real workers; an ident
    that is not a JSON scalar becomes its str()."""
    await coord.add_worker("w", _funcs.double)
    await coord.add_worker(("pair", 1), _funcs.double)
    await coord.call(1, TaskPrefs.Required("w"))
    stats = await coord.stats()
    decoded = json.loads(json.dumps({str(k): s.as_dict() for k, s in stats.items()}))
    w = decoded["w"]
    assert set(w) == {f.name for f in dataclasses.fields(WorkerStats)}
    assert w["ident"] == "w" and w["completed"] == 1 and w["pid"] == stats["w"].pid
    assert decoded[str(("pair", 1))]["ident"] == "('pair', 1)"


def test_format_stats_waiting_and_width() -> None:
    """Test the "waiting" line and that a narrow width drops columns, then cuts lines."""
    rows = {"alpha": WorkerStats("alpha", 10, "busy", 3, 2, 100, 1, 1.5, 99.0, 50 * 2**20, 5.0, 0, "f")}
    table = format_stats(rows, waiting=42)
    assert table.splitlines()[-1].split() == ["waiting", "42"]
    narrow = format_stats(rows, waiting=42, width=40)
    lines = narrow.splitlines()
    assert max(map(len, lines)) <= 40
    assert lines[0].split()[:3] == ["worker", "state", "queue"] and "restarts" not in lines[0]
    assert max(map(len, format_stats(rows, width=12).splitlines())) <= 12
