"""Running a Python program in a subprocess against this checkout's procoord."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .conftest import DEADLOCK_TIMEOUT

ROOT = Path(__file__).resolve().parent.parent


def run_python(
    args: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    python: str = sys.executable,
) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` with this checkout first on the path; output as text."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH", "")]))
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
