"""The command line of ``python -m procoord bench``: options, the run, the printed
report, and the JSON results when ``--json PATH`` asks for them."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from ._config import BenchConfig
from ._harness import Profiler, machine
from ._report import Row, format_table
from .scenarios import SCENARIOS

__all__ = ("main", "run_bench")


def run_bench(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure the selected scenarios; the whole report as JSON-ready data."""
    prof = Profiler(cfg.profile)
    load_before = _load()
    figures: dict[str, Any] = {}
    rows: list[Row] = []
    started = time.perf_counter()
    for scenario in SCENARIOS:
        if scenario.figure not in cfg.only:
            continue
        log(f"measuring ({scenario.figure}) {scenario.name}: {scenario.title} ...")
        t0 = time.perf_counter()
        figures[scenario.name] = fig = scenario.measure(cfg, prof)
        rows.extend(scenario.rows(fig, cfg))
        log(f"  ({scenario.figure}) took {time.perf_counter() - t0:.1f} s")
    prof.save()
    return {
        "meta": {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017 - py3.11 both work
            "machine": machine(),
            "parent_loop": cfg.loop,
            "quick": cfg.quick,
            "reps": cfg.reps_up_to(cfg.reps),
            "workers": cfg.workers,
            "seconds": round(time.perf_counter() - started, 1),
            "load_average": {"before": load_before, "after": _load()},
        },
        "figures": figures,
        "table": [row.as_dict() for row in rows],
    }


def _load() -> float | None:
    """The 1-minute load average: how busy the machine was around the figures."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _parse(argv: Sequence[str] | None) -> BenchConfig:
    letters = [s.figure for s in SCENARIOS]
    names = {s.name: s.figure for s in SCENARIOS}
    parser = argparse.ArgumentParser(
        prog="python -m procoord bench",
        description=(
            "Benchmark procoord against a minimal featureless pool, concurrent.futures.ProcessPoolExecutor "
            "and multiprocessing.Pool, in the same run. Scenarios: "
            + "; ".join(f"{s.figure} = {s.name} ({s.title})" for s in SCENARIOS)
        ),
    )
    parser.add_argument("--quick", action="store_true", help="one repetition and small sizes: a smoke run")
    default = ",".join(s.figure for s in SCENARIOS if s.default)
    parser.add_argument(
        "--only", default=default, help=f"scenarios by letter or name, e.g. a,b or latency (default: {default})"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the full results as JSON to PATH")
    parser.add_argument("--reps", type=int, default=None, help="most repetitions per scenario (default 5)")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="the parent's event loop")
    parser.add_argument("--profile", metavar="PATH", help="cProfile the parent during procoord's runs, to PATH")
    args = parser.parse_args(argv)
    only = tuple(names.get(x, x) for x in (x.strip().lower() for x in args.only.split(",")) if x)
    unknown = [x for x in only if x not in letters]
    if unknown or not only:
        parser.error(f"--only takes scenarios among {','.join(letters)} (or {','.join(names)}), not {args.only!r}")
    cfg = BenchConfig.quick_config() if args.quick else BenchConfig()
    cfg.only = only
    cfg.json_path = args.json
    cfg.loop = args.loop
    cfg.profile = args.profile
    if args.reps is not None:
        if args.reps < 1:
            parser.error("--reps must be >= 1")
        cfg.reps = args.reps
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark from the command line; returns the exit status."""
    cfg = _parse(list(argv) if argv is not None else None)
    report = run_bench(cfg, log=lambda text: print(text, file=sys.stderr, flush=True))
    meta, m = report["meta"], report["meta"]["machine"]
    print(
        f"procoord bench {meta['date']}: {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        f"parent loop {meta['parent_loop']}, {'quick' if cfg.quick else 'full'} run, {meta['seconds']} s, "
        f"load average {meta['load_average']['before']} before, {meta['load_average']['after']} after"
    )
    print(
        "medians over repetitions; spread = half the range of procoord's repetitions; "
        "each comparison reads: its value (procoord / it)"
    )
    print(format_table([_row(r) for r in report["table"]]))
    if cfg.json_path:
        with open(cfg.json_path, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
            fh.write("\n")
        print(f"results written to {cfg.json_path}")
    return 0


def _row(data: dict[str, Any]) -> Row:
    other = data["other"]
    fields = {k: v for k, v in data.items() if k not in ("ratios", "other")}
    return Row(**fields, other=None if other is None else (other["name"], other["value"]))
