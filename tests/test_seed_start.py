"""The launcher seed started ahead of need: looking up a coordinator class starts it,
the first coordinator's workers come from it, and it ends with the process however the
process ends, used or not."""

from __future__ import annotations

import asyncio
import os
import sys

import psutil
import pytest

from .conftest import DEADLOCK_TIMEOUT

# Prints the pid of every seed of this process, right after the lookup.
_LOOKUP = """
import sys, psutil, procoord
assert "procoord.coordinator" not in sys.modules
from procoord import {name}
seeds = [p.pid for p in psutil.Process().children() if "--seed" in p.cmdline()]
print(*seeds, flush=True)
"""

_USE = """
import asyncio, os, signal
async def main():
    async with procoord.Coordinator() as coord:
        await coord.add_worker("w", abs)
        assert await coord.call(-3) == (3, "w")
        worker = psutil.Process((await coord.stats())["w"].pid)
        print(worker.parent().ppid(), flush=True)
        if {kill}:
            os.kill(os.getpid(), signal.SIGKILL)
asyncio.run(main())
"""


async def _run(code: str) -> tuple[int, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        stdout=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
    )
    out, _ = await asyncio.wait_for(proc.communicate(), DEADLOCK_TIMEOUT)
    return proc.returncode or 0, out.decode().splitlines()


def _wait_gone(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return True
    _, alive = psutil.wait_procs([proc], timeout=DEADLOCK_TIMEOUT)
    return not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("name", ["Coordinator", "BlockingCoordinator", "Executor"])
async def test_lookup_starts_one_seed_that_ends_at_exit_unused(name: str) -> None:
    """Test that looking up a coordinator class starts the seed at once (one, and no
    other process), and that a seed nobody used ends when the program exits."""
    code, lines = await _run(_LOOKUP.format(name=name))
    assert code == 0
    seeds = [int(pid) for pid in lines[0].split()]
    assert len(seeds) == 1
    assert await asyncio.to_thread(_wait_gone, seeds[0])


@pytest.mark.parametrize("kill", [False, True])
async def test_first_workers_come_from_the_early_seed(kill: bool) -> None:
    """Test that the first coordinator's launcher is forked by the seed started at the
    lookup (no second seed), and that the seed ends with the program, whether it exits
    or is killed with SIGKILL."""
    code, lines = await _run(_LOOKUP.format(name="Coordinator") + _USE.format(kill=kill))
    assert code == (-9 if kill else 0)
    [seed] = [int(pid) for pid in lines[0].split()]
    assert int(lines[1]) == seed
    assert await asyncio.to_thread(_wait_gone, seed)
