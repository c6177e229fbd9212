"""Smoke test of the benchmark: it runs in real processes and reports every figure.
It asserts on no timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def _bench(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    return subprocess.run(
        [sys.executable, "-m", "procoord", "bench", "--quick", *args],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
        cwd=cwd,
        env=env,
    )


def _row(report: dict[str, Any], measure: str) -> dict[str, Any]:
    rows = [r for r in report["table"] if r["measure"] == measure]
    assert rows, f"no row {measure!r} in {[r['measure'] for r in report['table']]}"
    return rows[0]


def test_quick_bench_reports_procoord_next_to_its_comparisons(tmp_path: Path) -> None:
    """Test that a quick run of the latency, throughput and start-up scenarios writes
    the JSON asked for, with procoord's figures next to the minimal pool's and the
    stdlib's, and the start-up rows measured through the public API."""
    proc = _bench(tmp_path, "--only", "a,b,startup", "--json", "out.json")
    assert proc.returncode == 0, proc.stderr
    assert "no-op round trip p50 (us)" in proc.stdout
    assert "target" not in proc.stdout.lower()
    assert sorted(os.listdir(tmp_path)) == ["out.json"]
    report = json.loads((tmp_path / "out.json").read_text())
    assert set(report) == {"meta", "figures", "table"}
    assert report["meta"]["quick"] is True
    assert set(report["figures"]) == {"latency", "throughput", "startup"}
    p50 = _row(report, "no-op round trip p50 (us)")
    assert all(p50[side] > 0 for side in ("procoord", "minimal", "ppe", "pool"))
    assert set(p50["ratios"]) == {"minimal", "ppe", "pool", "other"}
    burst = _row(report, "no-op burst, run_nowait (tasks/s)")
    assert all(burst[side] > 0 for side in ("procoord", "minimal", "ppe", "pool"))
    for measure in (
        "no-op burst, gather(call) (tasks/s)",
        "no-op map (tasks/s)",
        "fresh program, 2 workers, to exit (ms)",
        "fresh program, 2 workers, to results (ms)",
        "python -c 'import procoord' (ms)",
        "add_worker on a running coordinator, p50 (ms)",
        "restart after SIGKILL, to next result, p50 (ms)",
        "USS per idle worker (MiB)",
    ):
        assert _row(report, measure)["procoord"] > 0, measure
    program = _row(report, "fresh program, 2 workers, to exit (ms)")
    assert program["ppe"] > 0 and program["pool"] > 0 and program["other"]["value"] > 0


def test_bench_ray_scenario_runs_only_when_asked(tmp_path: Path) -> None:
    """Test that the Ray scenario (a worker on the Ray backend next to a plain Ray
    actor, called with ray.get and awaited) reports them all, and that it is not part of
    the default run."""
    pytest.importorskip("ray")
    proc = _bench(tmp_path, "--only", "ray", "--json", "out.json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    row = _row(report, "Ray worker, no-op call p50 (us)")
    assert row["procoord"] > 0 and row["other"]["name"] == "Ray actor" and row["other"]["value"] > 0
    awaited = _row(report, "Ray worker, call p50, vs an awaited actor (us)")
    assert awaited["other"]["name"] == "awaited actor" and awaited["other"]["value"] > 0
    assert _row(report, "Ray worker, burst of 200 no-ops (tasks/s)")["procoord"] > 0
    assert "(default: a,b,c,d,e,g,h,s)" in _bench(tmp_path, "--help").stdout


def test_bench_writes_no_file_unless_asked(tmp_path: Path) -> None:
    """Test that without --json the report goes to stdout only."""
    proc = _bench(tmp_path, "--only", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "speedup over serial" in proc.stdout
    assert os.listdir(tmp_path) == []


def test_bench_rejects_unknown_scenario(tmp_path: Path) -> None:
    """Test that --only names the scenarios it takes."""
    proc = _bench(tmp_path, "--only", "z")
    assert proc.returncode == 2
    assert "--only" in proc.stderr and "latency" in proc.stderr


def test_bench_recycle_scenario(tmp_path: Path) -> None:
    """Test that the recycling scenario reports the recycled rate next to the plain
    one and to Pool(maxtasksperchild)."""
    proc = _bench(tmp_path, "--only", "recycle", "--json", "out.json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    row = _row(report, "2000 no-op calls, recycled every 100 (tasks/s)")
    assert row["procoord"] > 0 and row["pool"] > 0
    assert row["other"]["name"] == "no recycling" and row["other"]["value"] > 0
    assert _row(report, "recycles during those calls (max_tasks=100)")["procoord"] >= 0


def test_bench_stream_scenario(tmp_path: Path) -> None:
    """Test that the streaming scenario reports parts/s of a stream next to the same
    parts returned as one list, for small and 1 KiB parts."""
    proc = _bench(tmp_path, "--only", "stream", "--json", "out.json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "out.json").read_text())
    rows = [r for r in report["table"] if r["measure"].startswith("stream of ")]
    assert len(rows) == 2, rows
    for row in rows:
        assert row["measure"].endswith("(parts/s)")
        assert row["procoord"] > 0
        assert row["other"]["name"] == "as one list" and row["other"]["value"] > 0
