"""Routing arithmetic: scores, EWMA, and which worker takes the next task.

Pure functions over plain numbers (no I/O, no clock), so every rule is unit-tested alone.
Times are float seconds: integer milliseconds collapse to 0 for sub-millisecond tasks,
after which every ``Any`` task would go to the same worker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = (
    "ALPHA",
    "DEFAULT_STANDIN_S",
    "Candidate",
    "decay_max",
    "pick_best",
    "pick_for_pull",
    "preferred_fits",
    "routing_times",
    "run_length",
    "update_ewma",
    "window_depth",
)

# Weight of the newest run time in the EWMA, as in the original design: reacts within a
# few tasks to a worker slowing down, at the cost of some noise.
ALPHA = 0.5

# Tasks this many round trips long or longer are written one at a time (window of 1).
LATE_BINDING_FACTOR = 50.0

# Per task, the remembered longest run time shrinks by this factor: a long task keeps a
# worker's window shallow for a few dozen short tasks after it.
RECENT_MAX_DECAY = 0.9

# The stand-in task time when no worker has measured one yet.
DEFAULT_STANDIN_S = 0.001


@dataclass(slots=True)
class Candidate:
    """What the balancer knows of one worker."""

    queue_len: int
    """Tasks bound to the worker and not finished, the running one included."""
    has_room: bool = True
    """Whether the worker can take another task into its in-flight window now."""
    last_given: int = 0
    """Sequence number of the last time it was given a task (lower = longer ago)."""


def update_ewma(previous: float | None, sample_s: float, alpha: float = ALPHA) -> float:
    """Fold one measured run time into an EWMA; the first sample seeds it."""
    if previous is None:
        return sample_s
    return alpha * sample_s + (1.0 - alpha) * previous


def routing_times(ewmas: Sequence[float | None], floor_s: float) -> list[float]:
    """Per-worker task times used for routing.

    A worker without a measurement counts as the mean of those that have one
    (``DEFAULT_STANDIN_S`` when none has); every time is raised to ``floor_s``.
    """
    # Written as loops (this runs at every pump that routes a shared task).
    total = 0.0
    count = 0
    for e in ewmas:
        if e is not None:
            total += e
            count += 1
    standin = total / count if count else DEFAULT_STANDIN_S
    times = []
    for e in ewmas:
        t = standin if e is None else e
        times.append(t if t > floor_s else floor_s)
    return times


def _score(c: Candidate, t: float) -> float:
    return (c.queue_len + 1) * t


def pick_best(cands: Sequence[Candidate], times: Sequence[float], only_with_room: bool = False) -> int | None:
    """Index of the lowest score ``(queue_len + 1) * time``; ties go to the worker given
    a task least recently. None when there is no eligible worker."""
    best: int | None = None
    best_score = math.inf
    best_given = 0
    for i, c in enumerate(cands):
        if only_with_room and not c.has_room:
            continue
        score = (c.queue_len + 1) * times[i]
        if best is None or score < best_score or (score == best_score and c.last_given < best_given):
            best, best_score, best_given = i, score, c.last_given
    return best


def run_length(cands: Sequence[Candidate], times: Sequence[float], chosen: int, limit: int) -> int:
    """How many tasks in a row (at most ``limit``) go to ``chosen``, just picked for
    one, before :func:`pick_best` would pick another worker: after its first task it
    keeps winning while its score stays strictly below every other worker's (a tie goes
    to the other, given a task less recently). Lets a pump write a run of tasks to one
    worker with one decision instead of one per task."""
    if limit <= 1:
        return 1
    others = math.inf
    for i, c in enumerate(cands):
        if i != chosen:
            score = (c.queue_len + 1) * times[i]
            if score < others:
                others = score
    queue_len, t = cands[chosen].queue_len + 1, times[chosen]
    if others == math.inf or t <= 0.0:
        return limit if t * (queue_len + 1) < others else 1
    # The run grows while (queue_len + 1 + extra) * t < others, extra = 0, 1, ...: the
    # last such extra, estimated by a division, then settled with that very test (so
    # floats round as they would one task at a time).
    last = min(max(int(others / t) - queue_len - 1, -1), limit - 2)
    while last >= 0 and not (queue_len + 1 + last) * t < others:
        last -= 1
    while last < limit - 2 and (queue_len + 2 + last) * t < others:
        last += 1
    return last + 2


def pick_for_pull(cands: Sequence[Candidate], times: Sequence[float], pending: int) -> int | None:
    """Which worker takes the oldest unbound ``Any`` task now, or None to hold it.

    Tasks bind late, when a worker has room in its window. The best-scoring worker takes
    the task when it has room. Otherwise the best worker *with* room takes it only when
    it would finish it before the whole backlog is expected to drain on all workers
    (``(pending + sum(queue_len)) / sum(1 / time)``): during a long run every worker stays
    busy, while at the tail a slow worker does not grab the last tasks and stretch the
    makespan.
    """
    best = pick_best(cands, times)
    if best is None or cands[best].has_room:
        return best
    taker = pick_best(cands, times, only_with_room=True)
    if taker is None:
        return None
    total_rate = sum(1.0 / t for t in times)
    drain_s = (pending + sum(c.queue_len for c in cands)) / total_rate
    if _score(cands[taker], times[taker]) <= drain_s:
        return taker
    return None


def preferred_fits(queue_len: int, queue_threshold: int) -> bool:
    """Whether ``Preferred(ident)`` may use that worker rather than fall back to Any."""
    return queue_len < queue_threshold


def window_depth(ewma_s: float | None, round_trip_s: float, max_depth: int, recent_max_s: float = 0.0) -> int:
    """How many tasks to keep written to one worker's pipe.

    Enough to cover one round trip of the channel (``1 + round_trip / ewma``) so tiny
    tasks stream; 2 for middling tasks, so the next one is ready in the worker; 1 when
    the worker's tasks are long, or recently included a long one (``recent_max_s``):
    then the idle round trip between two tasks costs little, while a task bound behind
    a long one could wait for it even though another worker is free.
    """
    # Comparisons rather than max() and min(): this runs after every batch of results.
    if ewma_s is None:
        return 2
    longest = ewma_s if ewma_s > recent_max_s else recent_max_s
    if longest >= LATE_BINDING_FACTOR * round_trip_s:
        return 1
    depth = 1 + math.ceil(round_trip_s / (ewma_s if ewma_s > 1e-7 else 1e-7))
    if depth > max_depth:
        depth = max_depth
    return depth if depth > 2 else 2


def decay_max(previous: float, sample_s: float, decay: float = RECENT_MAX_DECAY) -> float:
    """A slowly forgetting maximum of run times (see ``window_depth``)."""
    return max(sample_s, previous * decay)


# Upper bound of the in-flight window: past ~64 no-op tasks per round trip the pipe is
# already saturated, and every task written is one that can no longer be re-routed.
MAX_WINDOW = 64

# First guess of the channel's round trip (write to result, minus the run time), until
# measured: about two cross-CPU wake-ups on a typical Linux box.
INITIAL_ROUND_TRIP_S = 100e-6


class Window:
    """What one worker's in-flight window is sized from: its task times (an EWMA and a
    decaying maximum) and its channel's round trip, both measured; and the depth that
    gives (how many tasks may be written to the worker ahead of their turn), brought up
    to date by :meth:`settle` after the measurements of one batch of results."""

    __slots__ = ("depth", "ewma_s", "recent_max_s", "round_trip_s")

    def __init__(self) -> None:
        self.ewma_s: float | None = None
        self.recent_max_s = 0.0
        self.round_trip_s = INITIAL_ROUND_TRIP_S
        self.depth = window_depth(None, INITIAL_ROUND_TRIP_S, MAX_WINDOW)

    def measured(self, run_s: float, trip_s: float | None) -> None:
        """A task ran ``run_s`` seconds; ``trip_s`` is the channel's share of its round
        trip when it was written to an idle worker (else None)."""
        # update_ewma and decay_max, written out: this runs once per task.
        ewma = self.ewma_s
        self.ewma_s = run_s if ewma is None else ALPHA * run_s + (1.0 - ALPHA) * ewma
        recent = self.recent_max_s * RECENT_MAX_DECAY
        if run_s > recent:
            recent = run_s
        self.recent_max_s = recent
        if trip_s is not None and trip_s > 0:
            self.round_trip_s = ALPHA * trip_s + (1.0 - ALPHA) * self.round_trip_s

    def settle(self) -> None:
        """Size the window from the measurements so far (once per batch of results:
        nothing writes to the worker in between)."""
        self.depth = window_depth(self.ewma_s, self.round_trip_s, MAX_WINDOW, self.recent_max_s)
