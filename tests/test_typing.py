"""Static typing as a user meets it: mypy --strict (and pyright, when it runs here) accept
the typed spellings in tests/typing/*_ok.py and every complete program of the README as
written, and report exactly the lines marked `# E` in tests/typing/*_bad.py."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ._run import ROOT
from .test_readme import PROGRAMS

pytestmark = pytest.mark.slow

TYPING = ROOT / "tests" / "typing"
OK_FILES = sorted(TYPING.glob("*_ok.py"))
BAD_FILES = sorted(TYPING.glob("*_bad.py"))


def expected_errors(paths: list[Path]) -> set[tuple[str, int]]:
    return {
        (path.name, n)
        for path in paths
        for n, text in enumerate(path.read_text().splitlines(), start=1)
        if text.rstrip().endswith("# E")
    }


def readme_programs(folder: Path) -> list[Path]:
    paths = []
    for block in PROGRAMS:
        path = folder / f"readme_line{block.line}.py"
        path.write_text(block.code)
        paths.append(path)
    return paths


def test_mypy_strict(tmp_path: Path) -> None:
    """Test mypy --strict on the typing files and the README's programs."""
    api = pytest.importorskip("mypy.api")
    readme = readme_programs(tmp_path)
    args = ["--strict", "--no-error-summary", "--config-file", str(ROOT / "pyproject.toml")]
    args += ["--cache-dir", str(tmp_path / "cache")]
    stdout, stderr, _ = api.run([*args, *map(str, OK_FILES + BAD_FILES + readme)])
    assert not stderr
    reported = {_where(line) for line in stdout.splitlines() if ": error:" in line}
    assert reported == expected_errors(BAD_FILES), stdout


def test_pyright(tmp_path: Path) -> None:
    """Test pyright on the same files: it reports exactly the marked lines."""
    pyright = shutil.which("pyright") or str(Path(sys.executable).with_name("pyright"))
    if not Path(pyright).exists():
        pytest.skip("pyright is not installed")
    readme = readme_programs(tmp_path)
    proc = subprocess.run(
        [pyright, "--pythonpath", sys.executable, *map(str, OK_FILES + BAD_FILES + readme)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    if proc.returncode not in (0, 1):  # it could not run (no node, no network for its first start)
        pytest.skip(f"pyright did not run: {proc.stderr or proc.stdout}")
    reported = {
        (Path(m.group(1)).name, int(m.group(2)))
        for m in re.finditer(r"^\s*(\S+\.py):(\d+):\d+ - error", proc.stdout, flags=re.MULTILINE)
    }
    assert reported == expected_errors(BAD_FILES), proc.stdout


def _where(line: str) -> tuple[str, int]:
    path, number, *_ = line.split(":")
    return (Path(path).name, int(number))
