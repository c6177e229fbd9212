"""The restart policy of one worker: how long to wait before restarting it after a
crash, and when to give up on it. Pure: it takes the clock's readings, reads none."""

from __future__ import annotations

from collections import deque

__all__ = ("RestartPolicy",)

# Restart back-off: the first restart is immediate, then 0.1 s, 0.2 s, ... up to 5 s,
# so a crash loop does not burn a core while a transient failure recovers fast.
BACKOFF_BASE_S = 0.1
BACKOFF_MAX_S = 5.0


class RestartPolicy:
    """More than ``limit`` crashes within ``window_s`` seconds (or ``enabled`` False)
    means the worker is given up instead of restarted."""

    __slots__ = ("_crashes", "enabled", "limit", "window_s")

    def __init__(self, enabled: bool, limit: int, window_s: float) -> None:
        self.enabled = enabled
        self.limit = limit
        self.window_s = window_s
        self._crashes: deque[float] = deque()

    def crashed(self, now: float) -> None:
        """Count a crash (or a failed restart) at monotonic time ``now``."""
        self._crashes.append(now)

    def next_delay(self, now: float) -> float | None:
        """Seconds to wait before restarting, or None when the worker is given up."""
        crashes = self._crashes
        while crashes and now - crashes[0] > self.window_s:
            crashes.popleft()
        if not self.enabled or len(crashes) > self.limit:
            return None
        return 0.0 if len(crashes) <= 1 else min(BACKOFF_BASE_S * 2 ** (len(crashes) - 2), BACKOFF_MAX_S)

    def why_given_up(self) -> str:
        """Why ``next_delay`` gave up, in words."""
        if not self.enabled:
            return "restart=False"
        return f"{len(self._crashes)} crashes within {self.window_s:g} s"
