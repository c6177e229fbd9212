"""Running a Python program in a subprocess against this checkout's procoord."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from .conftest import DEADLOCK_TIMEOUT, BeaconFactory

ROOT = Path(__file__).resolve().parent.parent


def checkout_environment() -> dict[str, str]:
    """This process's environment with this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def run_python(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    python: str = sys.executable,
) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` with this checkout first on the path; output as text."""
    full_env = checkout_environment()
    full_env.pop("COLUMNS", None)
    full_env.update(env or {})
    return subprocess.run(
        [python, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=DEADLOCK_TIMEOUT,
        cwd=cwd or ROOT,
        env=full_env,
        check=False,
    )


def start_held_script(script: str, beacons: BeaconFactory, *, stdin: bool = False) -> tuple[subprocess.Popen[str], int]:
    """Start ``python -c script STARTED RELEASE`` (two beacons' paths): a script that
    prints its worker's pid, then runs a task that signals STARTED. Returns the process
    and the worker's pid once the task runs."""
    started, release = beacons(), beacons()
    proc = subprocess.Popen(
        [sys.executable, "-c", script, started.path, release.path],
        cwd=ROOT,
        env=checkout_environment(),
        stdin=subprocess.PIPE if stdin else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        asyncio.run(started.wait())
    except BaseException:
        end_script(proc)
        raise
    return proc, pid


def end_script(proc: subprocess.Popen[str]) -> None:
    """Kill a script that a failed check left running (its workers go with it)."""
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
