"""Smoke test of the benchmark: it runs and writes its JSON. It asserts on no timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_quick_bench_writes_expected_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "procoord", "bench", "--quick", "--only", "a,f", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "round trip p50" in proc.stdout
    report = json.loads(out.read_text())
    assert set(report) == {"meta", "figures", "table"}
    assert report["meta"]["quick"] is True
    figures = report["figures"]
    assert set(figures) == {"a", "f"}
    for side in ("procoord", "ppe", "raw_echo", "raw_echo_cross_cpu"):
        assert {"p50_us", "p99_us"} <= set(figures["a"][side])
        assert figures["a"][side]["p50_us"]["median"] > 0
    for side in ("procoord_run", "ppe_submit", "procoord_map", "ppe_map"):
        assert figures["f"][side]["median"] > 0
    measures = {row["measure"] for row in report["table"]}
    assert "round trip p50 (us)" in measures
    assert all({"ratio", "target", "met"} <= set(row) for row in report["table"])


def test_bench_rejects_unknown_figure() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "procoord", "bench", "--only", "z"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "--only" in proc.stderr
