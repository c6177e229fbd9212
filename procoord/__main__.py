"""Command line: ``python -m procoord demo`` or ``python -m procoord bench``."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
procoord runs stateful processors in worker processes of their own and routes
tasks to them from asyncio (or blocking) code."""

EPILOG = "Run 'python -m procoord COMMAND --help' for the options of a command."


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m procoord``."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="python -m procoord",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"procoord {__version__}")
    sub = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="CPU-heavy processors on every core, with a live stats table",
        description="Counts primes on one worker process per core and redraws a table of every "
        "worker's state, queue, task time, CPU and memory while it runs.",
    )
    demo.add_argument("--tasks", type=int, default=48, metavar="N", help="how many tasks to run (default: 48)")
    demo.add_argument(
        "--bound",
        type=int,
        default=60_000,
        metavar="N",
        help="each task counts the primes below N + i (default: 60000)",
    )
    sub.add_parser("bench", help="procoord against the standard library's pools and a minimal pool", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        import uvloop

        from ._demo import demo as run_demo

        uvloop.run(run_demo(tasks=args.tasks, bound=args.bound))
        return 0
    if args.command == "bench":
        from ._bench import main as bench_main  # type: ignore[import-not-found, unused-ignore]

        return int(bench_main(rest))
    return 2


if __name__ == "__main__":
    sys.exit(main())
