"""A progress bar on stderr for bulk work: tqdm when it is installed, a plain one otherwise.

tqdm is an optional extra (``pip install 'procoord[progress]'``), used through
``tqdm.auto`` (a widget in a notebook, text in a terminal); without it a small bar with
the count, the rate and (when the total is known) the percentage and ETA is drawn instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, Protocol, TextIO

__all__ = ("ProgressBar", "PlainBar", "open_bar")

# Redraw at most this often on a terminal: fast enough to look live, rare enough that the
# bar costs nothing next to the tasks it counts.
TTY_REDRAW_S = 0.1

# Redraw at most this often when stderr is a file or a pipe, where each redraw is a new
# line: often enough to show a job is alive in a log, rare enough not to flood it.
LOG_REDRAW_S = 10.0


class ProgressBar(Protocol):
    """What bulk work needs from a progress bar."""

    def update(self, n: int = 1) -> Any:
        """Count ``n`` more finished items."""
        ...

    def close(self) -> Any:
        """Draw the final state and release the line."""
        ...


def open_bar(
    total: int | None, *, desc: str = "procoord", file: TextIO | None = None, options: Mapping[str, Any] | None = None
) -> ProgressBar:
    """A progress bar over ``total`` items (None: unknown) on ``file`` (stderr by default):
    ``tqdm.auto.tqdm`` when it can be imported, :class:`PlainBar` otherwise.

    ``options`` are keyword arguments for tqdm (``desc``, ``unit``, ``leave``, ``ncols``,
    ``position``, ...), over procoord's defaults; the plain bar honours ``desc``,
    ``total``, ``file`` and ``disable`` among them."""
    settings: dict[str, Any] = {"total": total, "desc": desc, "unit": "task", "file": file or sys.stderr}
    settings.update(options or {})
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if settings.get("disable"):
            return _NoBar()
        return PlainBar(settings["total"], desc=str(settings["desc"]), file=settings["file"])
    settings.setdefault("dynamic_ncols", True)
    bar: ProgressBar = tqdm(**settings)
    return bar


class _NoBar:
    """What ``disable=True`` gives without tqdm: counts nothing, draws nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class PlainBar:
    """A dependency-free progress bar: ``desc: 120/1000 12% [35.2 task/s, ETA 0:25]``.

    On a terminal it redraws one line in place; elsewhere (a file, a pipe, a captured
    stream) it writes a line now and then and a last one when closed.
    """

    def __init__(self, total: int | None, *, desc: str = "procoord", file: TextIO | None = None) -> None:
        self.total = total
        self.desc = desc
        self.file = file if file is not None else sys.stderr
        self.n = 0
        self._tty = _isatty(self.file)
        self._every_s = TTY_REDRAW_S if self._tty else LOG_REDRAW_S
        self._start = time.monotonic()
        self._drawn_at = self._start
        self._closed = False
        self._drawn_len = 0  # of the line on the terminal, to blank what a shorter one leaves
        if self._tty:
            self._draw(self._start)

    def update(self, n: int = 1) -> None:
        """Count ``n`` more finished items, redrawing when it is time to."""
        self.n += n
        now = time.monotonic()
        if now - self._drawn_at >= self._every_s:
            self._draw(now)

    def close(self) -> None:
        """Draw the final line. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._draw(time.monotonic(), final=True)

    def render(self, now: float) -> str:
        """The bar's text at monotonic time ``now``."""
        elapsed = max(now - self._start, 1e-9)
        rate = self.n / elapsed
        parts = [f"{self.desc}: {self.n}"]
        tail = [f"{rate:.1f} task/s", f"elapsed {_clock(elapsed)}"]
        if self.total is not None:
            parts[0] += f"/{self.total}"
            if self.total > 0:
                parts.append(f"{min(self.n / self.total, 1.0):4.0%}")
            if rate > 0 and self.n < self.total:
                tail.append(f"ETA {_clock((self.total - self.n) / rate)}")
        return " ".join(parts) + " [" + ", ".join(tail) + "]"

    def _draw(self, now: float, *, final: bool = False) -> None:
        self._drawn_at = now
        text = self.render(now)
        try:
            if self._tty:
                tail = " " * max(self._drawn_len - len(text), 0)
                self._drawn_len = len(text)
                self.file.write("\r" + text + tail + ("\n" if final else ""))
            else:
                self.file.write(text + "\n")
            self.file.flush()
        except (OSError, ValueError):  # stderr closed or gone: the work matters more
            pass

    def __repr__(self) -> str:
        return f"<PlainBar {self.n}/{self.total if self.total is not None else '?'}>"


def _isatty(file: TextIO) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _clock(seconds: float) -> str:
    """``M:SS`` or ``H:MM:SS``."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
