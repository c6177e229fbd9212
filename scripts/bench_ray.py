"""A worker on the Ray backend against a plain Ray actor: ``python scripts/bench_ray.py [--quick]``.

The same as ``python -m procoord bench --only ray``: starts a local Ray instance
(``RAY_ADDRESS`` joins an existing cluster instead); ``--help`` lists every option.
"""

from __future__ import annotations

import sys

from procoord._bench import main

if __name__ == "__main__":
    sys.exit(main(["--only", "ray", *sys.argv[1:]]))
