"""Per-worker load figures and their rendering as a table."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

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
    """How many times the worker process was restarted after a crash or timeout
    (recycles are counted apart)."""
    factory: str | None
    """The registered factory name the worker was built from, or None."""
    backend: str = "local"
    """Where the worker runs: "local" or the name of another backend."""
    parts_streamed: int = 0
    """Parts of streaming tasks (``Coordinator.stream``) received from the worker."""
    recycles: int = 0
    """How many times the worker process was replaced on purpose: after ``max_tasks``
    tasks, or when its memory passed ``max_rss``."""
    retries: int = 0
    """How many times a task lost with this worker (it died, or the task timed out)
    was queued to run again, as its ``retries`` allowed."""

    def as_dict(self) -> dict[str, Any]:
        """The fields as a dict that ``json.dumps`` accepts: an ident that is not a str,
        int, float or bool becomes its ``str()``; everything else is a number, a string
        or None already."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if not isinstance(self.ident, str | int | float | bool):
            out["ident"] = str(self.ident)
        return out


# Columns of the table, and the order in which they are left out when it must be narrower.
_HEADERS = ("worker", "state", "pid", "queue", "done", "failed", "ewma ms", "cpu %", "rss MiB", "restarts")
_DROP_ORDER = ("restarts", "pid", "failed", "rss MiB", "cpu %", "state")
_LEFT = {"worker", "state"}


def format_stats(stats: Mapping[Hashable, WorkerStats], *, waiting: int | None = None, width: int | None = None) -> str:
    """Render stats as an aligned text table, one worker per line, with a totals line.

    ``waiting``: tasks waiting in the coordinator, not yet bound to any worker (for
    example ``coord.pending - sum(s.queue_len for s in stats.values())``); when given, a
    last line shows it. ``width``: the widest a line may be (a terminal's width): columns
    are left out, least useful first, until the table fits, and lines are cut if it
    still does not.
    """
    rows: list[dict[str, str]] = []
    for s in stats.values():
        rows.append(
            {
                "worker": str(s.ident),
                "state": s.state,
                "pid": "-" if s.pid is None else str(s.pid),
                "queue": str(s.queue_len),
                "done": str(s.completed),
                "failed": str(s.failed),
                "ewma ms": "-" if s.ewma_ms is None else f"{s.ewma_ms:.3f}",
                "cpu %": f"{s.cpu_percent:.0f}",
                "rss MiB": f"{s.rss_bytes / 2**20:.1f}",
                "restarts": str(s.restarts),
            }
        )
    values = list(stats.values())
    total = {
        "worker": "total",
        "state": f"{len(values)} workers",
        "pid": "",
        "queue": str(sum(s.queue_len for s in values)),
        "done": str(sum(s.completed for s in values)),
        "failed": str(sum(s.failed for s in values)),
        "ewma ms": "",
        "cpu %": f"{sum(s.cpu_percent for s in values):.0f}",
        "rss MiB": f"{sum(s.rss_bytes for s in values) / 2**20:.1f}",
        "restarts": str(sum(s.restarts for s in values)),
    }
    footer = [total]
    if waiting is not None:
        footer.append({h: "" for h in _HEADERS} | {"worker": "waiting", "queue": str(waiting)})
    columns = list(_HEADERS)
    if width is not None:
        for name in _DROP_ORDER:
            if _table_width(columns, rows + footer) <= width:
                break
            columns.remove(name)
    widths = {c: max(len(c), *(len(r[c]) for r in rows + footer)) for c in columns}

    def line(cells: Mapping[str, str]) -> str:
        padded = (cells[c].ljust(widths[c]) if c in _LEFT else cells[c].rjust(widths[c]) for c in columns)
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * widths[c] for c in columns)
    out = [line({c: c for c in columns}), rule]
    out.extend(line(r) for r in rows)
    out.append(rule)
    out.extend(line(r) for r in footer)
    if width is not None:
        out = [text[:width] for text in out]
    return "\n".join(out)


def _table_width(columns: list[str], rows: list[dict[str, str]]) -> int:
    return sum(max(len(c), *(len(r[c]) for r in rows)) for c in columns) + 2 * (len(columns) - 1)
