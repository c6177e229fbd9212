"""Per-worker load figures and their rendering as a table."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = ("WorkerState", "WorkerStats", "format_stats")

WorkerState = Literal["starting", "idle", "busy", "restarting", "stopped", "failed"]


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """A snapshot of one worker's load, as returned by ``Coordinator.stats()``.

    Task times, CPU and memory are measured inside the worker process and travel to the
    parent over the same channel as the results.
    """

    ident: Hashable
    """The worker's ident."""
    pid: int | None
    """Process id of the worker process (None before it started)."""
    state: WorkerState
    """One of "starting", "idle", "busy", "restarting", "stopped", "failed"."""
    queue_len: int
    """Tasks bound to this worker and not finished, the running one included."""
    in_flight: int
    """Tasks already written to the worker process and not finished."""
    completed: int
    """Tasks that returned a result."""
    failed: int
    """Tasks that ended in an error."""
    ewma_ms: float | None
    """Exponentially weighted mean task run time, in ms (None before the first task)."""
    cpu_percent: float
    """CPU use of the worker process over the last sampling interval (100 = one core)."""
    rss_bytes: int
    """Resident set size of the worker process."""
    uptime_s: float
    """Seconds since the current worker process became ready."""
    restarts: int
    """How many times the worker process was restarted after a crash or timeout."""
    factory: str | None
    """The registered factory name the worker was built from, or None."""
    backend: str = "local"
    """Where the worker runs: "local" or the name of another backend."""


def format_stats(stats: Mapping[Hashable, WorkerStats]) -> str:
    """Render stats as an aligned text table, one worker per line, with a totals line."""
    headers = ("worker", "state", "pid", "queue", "done", "failed", "ewma ms", "cpu %", "rss MiB", "restarts")
    rows: list[tuple[str, ...]] = []
    for s in stats.values():
        rows.append(
            (
                str(s.ident),
                s.state,
                "-" if s.pid is None else str(s.pid),
                str(s.queue_len),
                str(s.completed),
                str(s.failed),
                "-" if s.ewma_ms is None else f"{s.ewma_ms:.3f}",
                f"{s.cpu_percent:.0f}",
                f"{s.rss_bytes / 2**20:.1f}",
                str(s.restarts),
            )
        )
    values = list(stats.values())
    rows.append(
        (
            "total",
            f"{len(values)} workers",
            "",
            str(sum(s.queue_len for s in values)),
            str(sum(s.completed for s in values)),
            str(sum(s.failed for s in values)),
            "",
            f"{sum(s.cpu_percent for s in values):.0f}",
            f"{sum(s.rss_bytes for s in values) / 2**20:.1f}",
            str(sum(s.restarts for s in values)),
        )
    )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    left = {0, 1}

    def line(cells: tuple[str, ...]) -> str:
        padded = (c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded)

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in rows[:-1])
    out.append("  ".join("-" * w for w in widths))
    out.append(line(rows[-1]))
    return "\n".join(out)
