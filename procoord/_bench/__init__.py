"""Benchmark: procoord measured against other pools in the same run.

Run it as ``python -m procoord bench``, ``python scripts/bench.py`` or ``make bench``
(``--help`` lists the options). Every figure is measured next to its comparisons on the
same machine, repetition by repetition, each repetition in fresh pools: the stdlib's
``ProcessPoolExecutor`` (forkserver) and ``multiprocessing.Pool`` (fork), and a minimal
featureless pool (:mod:`procoord._bench._minimal`) as the yardstick of what the channel
itself costs. The report gives medians, their spread and the ratio procoord / comparison;
nothing here asserts on time.

Layout: ``_config`` (sizes), ``_harness`` (loops, profiling, statistics), ``_tasks`` (the
task functions every pool runs), ``_stdlib`` and ``_minimal`` (the comparison pools),
``scenarios`` (one module per theme, registered in ``scenarios/__init__.py``), ``_report``
(rows and the table) and ``_cli`` (the command line).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ("main",)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point of ``python -m procoord bench``; returns the exit status."""
    # Imported here: worker processes import the task functions of this package and
    # should not load the whole benchmark with them.
    from ._cli import main as cli_main

    return cli_main(argv)
