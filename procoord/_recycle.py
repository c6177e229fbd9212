"""When a worker is recycled, and the counters a worker keeps across its processes.

A worker that has run ``max_tasks`` tasks, or whose memory grew past ``max_rss``, is
replaced by a fresh process with the same ident and processor spec (the replacement
itself is run by procoord._recycler).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ("Counts", "RecyclePolicy", "check_limits")


@dataclass(slots=True)
class Counts:
    """A worker's counters, kept across the processes that serve its ident (restarts
    and recycles), so that its stats do not start again from zero."""

    completed: int = 0
    failed: int = 0
    restarts: int = 0
    parts_streamed: int = 0
    recycles: int = 0
    retries: int = 0


@dataclass(frozen=True, slots=True)
class RecyclePolicy:
    """When one worker process is to be replaced."""

    max_tasks: int | None = None
    max_rss: int | None = None

    def reason(self, tasks_run: int, rss_bytes: int) -> str | None:
        """Why a process that has run ``tasks_run`` tasks and was last sampled at
        ``rss_bytes`` is due for recycling, or None when it is not."""
        if self.max_tasks is not None and tasks_run >= self.max_tasks:
            return f"it ran {tasks_run} tasks (max_tasks={self.max_tasks})"
        if self.max_rss is not None and tasks_run and rss_bytes > self.max_rss:
            return f"its RSS is {rss_bytes} bytes (max_rss={self.max_rss})"
        return None


def check_limits(max_tasks: int | None, max_rss: int | None) -> None:
    """Raise ValueError for a limit that is not a positive int (or None)."""
    for name, value in (("max_tasks", max_tasks), ("max_rss", max_rss)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name} must be an int >= 1 (or None for no limit), not {value!r}")
