"""The benchmark's scenarios, one module each, in the order a run measures them.

A new scenario is a module with a ``SCENARIO`` (see :class:`procoord._bench._report.Scenario`:
a letter for ``--only``, a ``measure`` function and a ``rows`` function) added below.
"""

from __future__ import annotations

from .._report import Scenario
from . import balance, cpu, latency, payload, ray_backend, recycle, startup, stream, throughput

__all__ = ("SCENARIOS",)

SCENARIOS: tuple[Scenario, ...] = tuple(
    module.SCENARIO for module in (latency, throughput, cpu, payload, startup, balance, recycle, stream, ray_backend)
)
