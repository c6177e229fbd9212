"""(r) A worker on the Ray backend against a plain Ray actor: a sequential no-op call
and a burst of no-ops, one worker each. Runs only when asked (``--only ray``): it
starts a local Ray instance (``RAY_ADDRESS`` joins a running cluster instead)."""

from __future__ import annotations

import os
import time
from typing import Any

from procoord import Coordinator
from procoord.backends import RayBackend

from .._config import BenchConfig
from .._harness import Profiler, child_environment, latency_summary, median_of, run_async, summary
from .._report import Row, Scenario, spread
from .._tasks import RawActor, noop

__all__ = ("SCENARIO",)

WARM_CALLS = 50


async def _procoord(cfg: BenchConfig) -> tuple[list[float], float]:
    async with Coordinator(backend=RayBackend()) as coord:
        await coord.add_worker("w", noop)
        for i in range(WARM_CALLS):
            await coord.call(i)
        out: list[float] = []
        for i in range(cfg.ray_calls):
            t0 = time.perf_counter_ns()
            await coord.call(i)
            out.append((time.perf_counter_ns() - t0) / 1000)
        t0 = time.perf_counter_ns()
        for h in [coord.run_nowait(i) for i in range(cfg.ray_burst)]:
            await h
        return out, cfg.ray_burst / ((time.perf_counter_ns() - t0) / 1e9)


def _raw(cfg: BenchConfig, ray: Any) -> tuple[list[float], float]:
    actor = ray.remote(RawActor).remote()
    try:
        for i in range(WARM_CALLS):
            ray.get(actor.do.remote(i))
        out: list[float] = []
        for i in range(cfg.ray_calls):
            t0 = time.perf_counter_ns()
            ray.get(actor.do.remote(i))
            out.append((time.perf_counter_ns() - t0) / 1000)
        t0 = time.perf_counter_ns()
        ray.get([actor.do.remote(i) for i in range(cfg.ray_burst)])
        return out, cfg.ray_burst / ((time.perf_counter_ns() - t0) / 1e9)
    finally:
        ray.kill(actor)


async def _awaited(cfg: BenchConfig, ray: Any) -> list[float]:
    """A plain actor's sequential calls awaited from asyncio (``await actor.do.remote(i)``),
    as a coordinator's caller waits: the bridge from Ray's threads to the event loop that
    every asyncio caller of Ray pays."""
    actor = ray.remote(RawActor).remote()
    try:
        for i in range(WARM_CALLS):
            await actor.do.remote(i)
        out: list[float] = []
        for i in range(cfg.ray_calls):
            t0 = time.perf_counter_ns()
            await actor.do.remote(i)
            out.append((time.perf_counter_ns() - t0) / 1000)
        return out
    finally:
        ray.kill(actor)


def measure(cfg: BenchConfig, prof: Profiler) -> dict[str, Any]:
    """Each repetition: procoord's Ray worker, then a plain actor (blocking ray.get, then awaited)."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        # Ray's workers import the task functions of the procoord being measured.
        os.environ["PYTHONPATH"] = child_environment()["PYTHONPATH"]
        if os.environ.get("RAY_ADDRESS"):
            ray.init()
        else:
            ray.init(num_cpus=cfg.cores, include_dashboard=False, log_to_driver=False)
    try:
        pc: list[tuple[list[float], float]] = []
        raw: list[tuple[list[float], float]] = []
        awaited: list[list[float]] = []
        for _ in range(cfg.reps_up_to(3)):
            pc.append(prof.run(cfg, _procoord(cfg)))
            raw.append(_raw(cfg, ray))
            awaited.append(run_async(cfg, _awaited(cfg, ray)))
    finally:
        if started_here:
            ray.shutdown()
    return {
        "calls": cfg.ray_calls,
        "burst": cfg.ray_burst,
        "how": "one worker; sequential await coord.call(i) against ray.get(actor.do.remote(i)) and against "
        "await actor.do.remote(i) on an event loop; a burst of run_nowait against ray.get of a list of remote calls",
        "procoord": latency_summary([s for s, _ in pc]) | {"burst_per_s": summary(r for _, r in pc)},
        "raw_actor": latency_summary([s for s, _ in raw]) | {"burst_per_s": summary(r for _, r in raw)},
        "awaited_actor": latency_summary(awaited),
    }


def rows(fig: dict[str, Any], cfg: BenchConfig) -> list[Row]:
    """Round trip p50 / p99 and the burst rate, against the plain actor."""
    pc, raw = fig["procoord"], fig["raw_actor"]
    out = []
    for q in ("p50_us", "p99_us"):
        label = f"Ray worker, no-op call {q[:3]} (us)"
        out.append(Row("r", label, median_of(pc[q]), spread(pc[q]), other=("Ray actor", median_of(raw[q]))))
    if "awaited_actor" in fig:
        label = "Ray worker, call p50, vs an awaited actor (us)"
        out.append(
            Row("r", label, median_of(pc["p50_us"]), other=("awaited actor", median_of(fig["awaited_actor"]["p50_us"])))
        )
    burst = pc["burst_per_s"]
    label = f"Ray worker, burst of {fig['burst']} no-ops (tasks/s)"
    out.append(Row("r", label, median_of(burst), spread(burst), other=("Ray actor", median_of(raw["burst_per_s"]))))
    return out


SCENARIO = Scenario("r", "ray", "a worker on the Ray backend against a plain Ray actor", measure, rows, default=False)
