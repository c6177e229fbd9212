"""Command line: ``python -m procoord demo`` or ``python -m procoord bench``."""

from __future__ import annotations

import argparse
import sys

import uvloop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m procoord", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="CPU-heavy processors on every core, with a live stats table")
    demo.add_argument("--tasks", type=int, default=48)
    sub.add_parser("bench", help="benchmark against the stdlib's ProcessPoolExecutor", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        from ._demo import demo as run_demo

        uvloop.run(run_demo(tasks=args.tasks))
        return 0
    if args.command == "bench":
        from ._bench import main as bench_main  # type: ignore[import-not-found, unused-ignore]

        return int(bench_main(rest))
    return 2


if __name__ == "__main__":
    sys.exit(main())
