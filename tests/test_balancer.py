"""Table-driven tests of the pure routing arithmetic (no loop, no processes)."""

from __future__ import annotations

import random

import pytest

from procoord.balancer import (
    DEFAULT_STANDIN_S,
    INITIAL_ROUND_TRIP_S,
    MAX_WINDOW,
    Candidate,
    Window,
    decay_max,
    pick_best,
    pick_for_pull,
    preferred_fits,
    routing_times,
    run_length,
    update_ewma,
    window_depth,
)

MS = 0.001


@pytest.mark.parametrize(
    ("previous", "sample", "expected"),
    [
        (None, 0.004, 0.004),  # the first measurement seeds the EWMA
        (0.004, 0.002, 0.003),  # alpha = 0.5
        (0.002, 0.002, 0.002),
        (1e-6, 3e-6, 2e-6),  # float seconds: sub-millisecond times do not collapse to 0
    ],
)
def test_update_ewma(previous: float | None, sample: float, expected: float) -> None:
    """Test that the EWMA is seeded by the first sample and then uses alpha = 0.5."""
    assert update_ewma(previous, sample) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("ewmas", "floor", "expected"),
    [
        ([None, None], 0.0, [DEFAULT_STANDIN_S, DEFAULT_STANDIN_S]),  # nobody measured: 1 ms
        ([0.010, None], 0.0, [0.010, 0.010]),  # a new worker counts as the mean
        ([0.010, 0.030, None], 0.0, [0.010, 0.030, 0.020]),
        ([0.0001, 0.0002], 0.001, [0.001, 0.001]),  # the floor applies
        ([0.0001, None], 0.0005, [0.0005, 0.0005]),
        ([0.002, None], 0.001, [0.002, 0.002]),
    ],
)
def test_routing_times(ewmas: list[float | None], floor: float, expected: list[float]) -> None:
    """Test the stand-in for unmeasured workers and the routing floor."""
    assert routing_times(ewmas, floor) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("cands", "times", "expected"),
    [
        # lowest (queue_len + 1) * time wins
        ([Candidate(0), Candidate(0)], [MS, 2 * MS], 0),
        ([Candidate(3), Candidate(0)], [MS, 2 * MS], 1),  # 4 ms vs 2 ms
        ([Candidate(1, last_given=4), Candidate(0, last_given=2)], [MS, 2 * MS], 1),  # a tie at 2 ms:
        # ties go to the worker given a task least recently
        ([Candidate(0, last_given=5), Candidate(0, last_given=3)], [MS, MS], 1),
        ([Candidate(0, last_given=2), Candidate(0, last_given=3)], [MS, MS], 0),
        ([Candidate(2, last_given=1), Candidate(5, last_given=9)], [3 * MS, MS], 1),  # 9 ms vs 6 ms
    ],
)
def test_pick_best(cands: list[Candidate], times: list[float], expected: int) -> None:
    """Test the Any score and its round-robin tie break."""
    assert pick_best(cands, times) == expected


def test_pick_best_empty() -> None:
    """Test that there is no choice without candidates."""
    assert pick_best([], []) is None
    assert pick_best([Candidate(0, has_room=False)], [MS], only_with_room=True) is None


@pytest.mark.parametrize(
    ("cands", "times", "chosen", "limit", "expected"),
    [
        ([Candidate(0), Candidate(0)], [MS, MS], 0, 64, 1),  # a tie goes to the other at once
        ([Candidate(0), Candidate(10)], [MS, MS], 0, 64, 10),  # up to one below the other's queue
        ([Candidate(0), Candidate(10)], [MS, MS], 0, 4, 4),  # no more than the limit
        ([Candidate(0)], [MS], 0, 7, 7),  # alone: the limit
        ([Candidate(0), Candidate(3)], [MS, 4 * MS], 0, 64, 15),  # (q + 1) * t < 16 ms
        ([Candidate(5, has_room=False), Candidate(0)], [MS, MS], 1, 64, 5),
    ],
)
def test_run_length(cands: list[Candidate], times: list[float], chosen: int, limit: int, expected: int) -> None:
    assert run_length(cands, times, chosen, limit) == expected


def test_run_length_matches_one_pick_per_task() -> None:
    """A run is what picking one task at a time would give to the same worker."""
    rng = random.Random(7)
    for _ in range(2000):
        n = rng.randint(1, 4)
        cands = [Candidate(rng.randint(0, 20), last_given=rng.randint(0, 50)) for _ in range(n)]
        times = [rng.choice([MS, 2 * MS, 3 * MS, 0.5 * MS]) for _ in range(n)]
        chosen = pick_best(cands, times)
        assert chosen is not None
        limit = rng.randint(1, 40)
        expected = 0
        given = 100
        while expected < limit:
            expected += 1  # the chosen worker takes one more
            cands[chosen].queue_len += 1
            given += 1
            cands[chosen].last_given = given
            if pick_best(cands, times) != chosen:
                break
        for _ in range(expected):
            cands[chosen].queue_len -= 1
        assert run_length(cands, times, chosen, limit) == expected


@pytest.mark.parametrize(
    ("cands", "times", "pending", "expected"),
    [
        # the best worker has room: it takes the task
        ([Candidate(0), Candidate(0, last_given=1)], [MS, MS], 1, 0),
        # best is full, the other has room and there is plenty of work: the other takes it
        ([Candidate(2, has_room=False), Candidate(0)], [MS, 4 * MS], 100, 1),
        # at the tail: the slow worker would finish later than the fast one drains: hold
        ([Candidate(2, has_room=False), Candidate(0)], [MS, 4 * MS], 1, None),
        # nobody has room: hold
        ([Candidate(2, has_room=False), Candidate(2, has_room=False)], [MS, MS], 10, None),
        # equal speeds, best full: the other takes it (it would finish no later)
        ([Candidate(2, has_room=False), Candidate(1)], [MS, MS], 1, 1),
    ],
)
def test_pick_for_pull(cands: list[Candidate], times: list[float], pending: int, expected: int | None) -> None:
    """Test late binding: when a worker with room takes the oldest Any task."""
    assert pick_for_pull(cands, times, pending) == expected


@pytest.mark.parametrize(
    ("queue_len", "threshold", "fits"),
    [(0, 3, True), (2, 3, True), (3, 3, False), (10, 3, False), (0, 1, True), (1, 1, False)],
)
def test_preferred_fits(queue_len: int, threshold: int, fits: bool) -> None:
    """Test Preferred's threshold: the worker while queue_len < queue_threshold."""
    assert preferred_fits(queue_len, threshold) is fits


@pytest.mark.parametrize(
    ("ewma", "round_trip", "cap", "expected"),
    [
        (None, 1e-4, 64, 2),  # unknown: shallow
        (1.0, 1e-4, 64, 1),  # long tasks bind as late as possible
        (5e-3, 1e-4, 64, 1),  # 50 round trips: the idle gap costs 2%
        (1e-3, 1e-4, 64, 2),  # middling: the next one waits in the worker, the rest in the parent
        (1e-5, 1e-4, 64, 11),  # tiny tasks: enough to cover a round trip
        (1e-7, 1e-4, 64, 64),  # capped
    ],
)
def test_window_depth(ewma: float | None, round_trip: float, cap: int, expected: int) -> None:
    """Test that the in-flight window covers one round trip, within [2, cap]."""
    assert window_depth(ewma, round_trip, cap) == expected


def test_window_depth_after_a_long_task() -> None:
    """Test that a recent long task keeps the window at 1 until it is forgotten."""
    recent = 0.0
    recent = decay_max(recent, 0.1)  # one 100 ms task among 1 ms tasks
    assert window_depth(1e-3, 1e-4, 64, recent) == 1
    for _ in range(60):
        recent = decay_max(recent, 1e-3)
    assert recent < 5e-3
    assert window_depth(1e-3, 1e-4, 64, recent) == 2


def test_window_follows_the_pure_rules() -> None:
    """Test that a Window (which writes the EWMA and decaying maximum out, for speed)
    gives what update_ewma, decay_max and window_depth give, sample by sample, and that
    its depth changes only when it settles (once per batch of results)."""
    window = Window()
    ewma: float | None = None
    recent, trip = 0.0, INITIAL_ROUND_TRIP_S
    samples = [(20e-6, 80e-6), (5e-6, None), (0.2, None), (3e-6, 60e-6), (1e-6, -1.0), (4e-6, 90e-6)]
    for run_s, trip_s in samples * 20:
        window.measured(run_s, trip_s)
        window.settle()
        ewma = update_ewma(ewma, run_s)
        recent = decay_max(recent, run_s)
        if trip_s is not None and trip_s > 0:
            trip = update_ewma(trip, trip_s)
        assert (window.ewma_s, window.recent_max_s, window.round_trip_s) == pytest.approx((ewma, recent, trip))
        assert window.depth == window_depth(ewma, trip, MAX_WINDOW, recent)
    depth = window.depth
    window.measured(0.5, None)  # a long task: a window of 1 once settled
    assert window.depth == depth
    window.settle()
    assert window.depth == 1
