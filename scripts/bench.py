"""Benchmark procoord against other pools: ``python scripts/bench.py [--quick] [--only a,b] [--json PATH]``.

A thin wrapper of ``python -m procoord bench``; ``--help`` lists every option.
"""

from __future__ import annotations

import sys

from procoord._bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
