"""The command line as a user meets it: help, version, the demo."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

import procoord

from ._run import ROOT, run_python
from .conftest import DEADLOCK_TIMEOUT


def test_help_is_plain_text_with_the_commands() -> None:
    """Test that --help shows readable text (no reST markup) naming both commands."""
    proc = run_python(["-m", "procoord", "--help"])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "``" not in out and ":class:" not in out
    assert "demo" in out and "bench" in out
    assert "COMMAND --help" in out


def test_version() -> None:
    """Test that --version prints the package version."""
    proc = run_python(["-m", "procoord", "--version"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"procoord {procoord.__version__}"


def test_unknown_demo_option_is_refused() -> None:
    """Test that the demo refuses an option it does not know, saying which."""
    proc = run_python(["-m", "procoord", "demo", "--nope"])
    assert proc.returncode == 2
    assert "--nope" in proc.stderr


def test_demo_fits_a_narrow_terminal_and_shows_the_backlog() -> None:
    """Test the demo on a 44-column terminal: no drawn line is wider, and the table has
    the coordinator's "waiting" line."""
    master, slave = pty.openpty()
    env = dict(os.environ, COLUMNS="44", LINES="20", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "procoord", "demo", "--tasks", "12", "--bound", "30000"],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the demo exited and closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    _, err = proc.communicate(timeout=DEADLOCK_TIMEOUT)
    assert proc.returncode == 0, err.decode()
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "\n", b"".join(chunks).decode())
    lines = [line for line in re.split(r"[\r\n]+", text) if line]
    assert max(len(line) for line in lines) <= 44, lines
    assert any(line.startswith("waiting") for line in lines)
    assert "12 tasks on" in text
