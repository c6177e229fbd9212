"""The package as a user receives it: sdist and wheel, metadata, a fresh install, logging."""

from __future__ import annotations

import importlib.util
import logging
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import procoord

from ._run import ROOT, run_python

pytestmark = pytest.mark.slow

# What the test suite of an unpacked sdist needs besides the package itself.
SDIST_NEEDS = (
    "LICENSE",
    "README.md",
    "pyproject.toml",
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/_funcs.py",
    "tests/_run.py",
    "tests/typing/interface_ok.py",
    "examples/simple.py",
)

# Copied into a scratch tree to build from, so the build leaves nothing in the checkout.
SOURCE_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "bench-results.json"
)

# The runtime dependencies the fresh environment borrows from this one (installing them
# would need the network).
RUNTIME_DEPS = ("uvloop", "cloudpickle", "psutil")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist, then the wheel built from that sdist, as ``make dist`` builds them."""
    pytest.importorskip("build")
    root = tmp_path_factory.mktemp("pkg")
    src = root / "src"
    shutil.copytree(ROOT, src, ignore=SOURCE_IGNORE)
    out = root / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (sdist,) = out.glob("procoord-*.tar.gz")
    (wheel,) = out.glob("procoord-*.whl")
    return {"sdist": sdist, "wheel": wheel, "root": root}


def test_wheel_metadata(built: dict[str, Path]) -> None:
    """Test the wheel's metadata: SPDX license and its file, classifiers, URLs, extras, version."""
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = wheel.namelist()
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(wheel.read(meta_name).decode())
        assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
        assert "procoord/py.typed" in names
        assert not any(n.startswith("tests/") for n in names)
    assert meta["License-Expression"] == "MIT"
    assert meta["Version"] == procoord.__version__
    classifiers = meta.get_all("Classifier") or []
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert any(c.startswith("Development Status ::") for c in classifiers)
    assert "Typing :: Typed" in classifiers
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Source", "Issues"} <= set(urls)
    assert {"ray", "progress", "metrics", "test"} <= set(meta.get_all("Provides-Extra") or [])
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_sdist_carries_what_its_tests_need(built: dict[str, Path]) -> None:
    """Test that the sdist holds the tests with their helpers, the examples and the license,
    and that pytest runs from the unpacked sdist (one quick test file of it)."""
    unpacked = built["root"] / "unpacked"
    with tarfile.open(built["sdist"]) as sdist:
        sdist.extractall(unpacked, filter="data")
    (top,) = unpacked.iterdir()
    for name in SDIST_NEEDS:
        assert (top / name).is_file(), name
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_errors.py"],
        cwd=top,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout


def test_wheel_installs_into_a_fresh_venv_and_runs_an_example(built: dict[str, Path]) -> None:
    """Test that the wheel installs into a new environment and runs examples/simple.py
    from there, importing procoord from the installed wheel."""
    env_dir = built["root"] / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    deps = built["root"] / "deps"
    deps.mkdir()
    for name in RUNTIME_DEPS:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.submodule_search_locations, name
        (deps / name).symlink_to(next(iter(spec.submodule_search_locations)))
    (site / "procoord-test-deps.pth").write_text(str(deps) + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    install = subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", str(built["wheel"])],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    example = built["root"] / "simple.py"
    shutil.copy(ROOT / "examples" / "simple.py", example)
    proc = subprocess.run(
        [str(python), "-c", "import procoord; print(procoord.__file__)"],
        capture_output=True,
        text=True,
        cwd=built["root"],
        check=False,
    )
    assert proc.stdout.startswith(str(site)), proc.stdout + proc.stderr
    proc = subprocess.run(
        [str(python), str(example)], capture_output=True, text=True, cwd=built["root"], timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 * 2 = 4" in proc.stdout


UNCONFIGURED_LOGGING = """
import asyncio, os
from procoord import Coordinator, WorkerLostError

def die(task):
    os._exit(3)

async def main():
    async with Coordinator() as coord:
        await coord.add_worker("w", die)
        try:
            await coord.call(1)
        except WorkerLostError:
            print("lost")

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_library_prints_nothing_when_logging_is_unconfigured(tmp_path: Path) -> None:
    """Test the NullHandler: a worker crash logs a warning, which reaches no output unless
    the application configures logging."""
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("procoord").handlers)
    script = tmp_path / "crash.py"
    script.write_text(UNCONFIGURED_LOGGING)
    proc = run_python([str(script)])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "lost\n"
    assert proc.stderr == ""
    configured = tmp_path / "configured.py"
    configured.write_text("import logging\nlogging.basicConfig()\n" + UNCONFIGURED_LOGGING)
    proc = run_python([str(configured)])
    assert "WARNING:procoord" in proc.stderr
