"""Sizes and repetitions of one benchmark run."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ("BenchConfig",)


@dataclass
class BenchConfig:
    """Sizes and repetitions of one benchmark run; ``quick_config`` is the smoke run."""

    quick: bool = False
    only: tuple[str, ...] = ()
    json_path: str | None = None
    loop: str = "asyncio"
    profile: str | None = None
    reps: int = 5
    workers: int = 2
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    # latency
    latency_calls: int = 2000
    raw_calls: int = 5000
    # throughput
    burst_tasks: int = 20_000
    # cpu
    cpu_tasks: int = 200
    cpu_task_s: float = 0.010
    # payload
    echo_calls: int = 50
    big_echo_calls: int = 3
    # startup
    program_runs: int = 7
    import_runs: int = 10
    add_worker_runs: int = 20
    restart_runs: int = 10
    # ray
    # recycle
    recycle_tasks: int = 10_000
    ray_calls: int = 500
    ray_burst: int = 2000
    # balance
    slow_tasks: int = 1000
    mix_long: int = 16
    mix_short: int = 400
    join_tasks: int = 1500
    join_after_s: float = 0.3

    @classmethod
    def quick_config(cls) -> BenchConfig:
        """Small sizes for a smoke run (well under a minute for every scenario)."""
        return cls(
            quick=True,
            reps=1,
            latency_calls=200,
            raw_calls=500,
            burst_tasks=2000,
            cpu_tasks=20,
            cpu_task_s=0.005,
            echo_calls=5,
            big_echo_calls=1,
            program_runs=1,
            import_runs=2,
            add_worker_runs=3,
            restart_runs=2,
            slow_tasks=100,
            mix_long=4,
            mix_short=40,
            join_tasks=300,
            join_after_s=0.1,
            recycle_tasks=2000,
            ray_calls=50,
            ray_burst=200,
        )

    def reps_up_to(self, most: int) -> int:
        """Repetitions of a scenario whose full run does at most ``most``."""
        return 1 if self.quick else min(self.reps, most)
