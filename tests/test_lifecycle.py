"""Worker processes never outlive their coordinator: close, garbage collection,
interpreter exit, and a parent killed with SIGKILL."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import textwrap
from pathlib import Path

import psutil

from procoord import Coordinator

from . import _funcs
from .conftest import DEADLOCK_TIMEOUT

SCRIPT_HEAD = """
import asyncio, os, sys, time
import procoord

def spin_forever(_):
    while True:
        pass
"""


async def _run_script(tmp_path: Path, body: str) -> tuple[asyncio.subprocess.Process, list[int]]:
    """Start a script that prints its worker pids on one line; return it and the pids."""
    path = tmp_path / "script.py"
    path.write_text(SCRIPT_HEAD + textwrap.dedent(body))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = await asyncio.create_subprocess_exec(sys.executable, str(path), stdout=asyncio.subprocess.PIPE, env=env)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), DEADLOCK_TIMEOUT)
    pids = [int(p) for p in line.split()]
    assert pids, "the script printed no worker pids"
    return proc, pids


def _all_gone(pids: list[int]) -> bool:
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=10)
    return not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


async def test_workers_die_with_sigkilled_parent(tmp_path: Path) -> None:
    """Test that workers exit when their parent is killed with SIGKILL, even mid-task."""
    proc, pids = await _run_script(
        tmp_path,
        """
        async def main():
            coord = procoord.Coordinator()
            await coord.add_worker("busy", spin_forever)
            await coord.add_worker("idle", lambda x: x)
            h = await coord.run(0, procoord.TaskPrefs.Required("busy"))
            stats = await coord.stats()
            print(*(s.pid for s in stats.values()), flush=True)
            await h

        if __name__ == "__main__":
            asyncio.run(main())
        """,
    )
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert _all_gone(pids)


async def test_open_coordinator_at_interpreter_exit(tmp_path: Path) -> None:
    """Test that a coordinator never closed stops its workers at exit, without a hang."""
    proc, pids = await _run_script(
        tmp_path,
        """
        async def main():
            coord = procoord.Coordinator()
            await coord.add_worker("a", lambda x: x)
            await coord.add_worker("b", spin_forever)
            await coord.run(0, procoord.TaskPrefs.Required("b"))
            print(*(s.pid for s in (await coord.stats()).values()), flush=True)
            globals()["kept"] = coord

        if __name__ == "__main__":
            asyncio.run(main())
        """,
    )
    assert await asyncio.wait_for(proc.wait(), DEADLOCK_TIMEOUT) == 0
    assert _all_gone(pids)


async def test_garbage_collected_coordinator_stops_workers() -> None:
    """Test that dropping an open coordinator stops its worker processes."""
    coord = Coordinator()
    await coord.add_worker("a", _funcs.double)
    await coord.add_worker("b", _funcs.double)
    pids = [s.pid for s in (await coord.stats()).values() if s.pid]
    del coord
    gc.collect()
    assert _all_gone(pids)
