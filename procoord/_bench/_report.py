"""The report: a scenario's rows (procoord's figure next to its comparisons), the
aligned table printed at the end of a run, and the shape of a scenario."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._config import BenchConfig
from ._harness import Profiler

__all__ = ("COLUMNS", "Row", "Scenario", "format_table", "spread")


@dataclass
class Row:
    """One line of the report: a procoord figure and the same figure of each
    comparison measured in the same run (None where a comparison has no such figure).
    ``other`` is a comparison outside the three pools, named (a raw echo, the cores)."""

    figure: str
    measure: str
    procoord: float | None
    spread: str = ""
    minimal: float | None = None
    ppe: float | None = None
    pool: float | None = None
    other: tuple[str, float | None] | None = None

    def ratios(self) -> dict[str, float | None]:
        """procoord / comparison, for each comparison the row has."""
        values = {"minimal": self.minimal, "ppe": self.ppe, "pool": self.pool}
        if self.other is not None:
            values["other"] = self.other[1]
        return {key: ratio(self.procoord, value) for key, value in values.items() if value is not None}

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-ready data, with its ratios."""
        return {
            "figure": self.figure,
            "measure": self.measure,
            "procoord": self.procoord,
            "spread": self.spread,
            "minimal": self.minimal,
            "ppe": self.ppe,
            "pool": self.pool,
            "other": None if self.other is None else {"name": self.other[0], "value": self.other[1]},
            "ratios": self.ratios(),
        }


@dataclass(frozen=True)
class Scenario:
    """A theme of the benchmark: ``measure`` runs it (procoord and its comparisons,
    repetition by repetition) and returns JSON-ready figures; ``rows`` turns those
    figures into report rows. ``figure`` is its letter for ``--only``; a scenario
    that is not ``default`` runs only when ``--only`` names it."""

    figure: str
    name: str
    title: str
    measure: Callable[[BenchConfig, Profiler], dict[str, Any]]
    rows: Callable[[dict[str, Any], BenchConfig], list[Row]]
    default: bool = True


COLUMNS = (
    ("minimal", "minimal pool"),
    ("ppe", "PPE forkserver"),
    ("pool", "mp.Pool fork"),
    ("other", "other"),
)
"""The comparison columns: attribute of :class:`Row` and header."""


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, None when either is missing or b is 0."""
    if a is None or b is None or b == 0 or a != a or b != b:
        return None
    return a / b


def spread(node: dict[str, Any] | None) -> str:
    """Half the range of a summary's repetitions, relative to its median."""
    if not node or node.get("median") in (None, 0) or len(node.get("samples", [])) < 2:
        return ""
    half = (node["max"] - node["min"]) / 2 / abs(node["median"])
    return f"±{half * 100:.0f}%"


def fmt(value: float | None) -> str:
    """A figure with three significant digits or so."""
    if value is None or value != value:
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _cell(row: Row, key: str) -> str:
    if key == "other":
        if row.other is None:
            return ""
        name, value = row.other
    else:
        name, value = "", getattr(row, key)
    if value is None:
        return ""
    r = ratio(row.procoord, value)
    text = f"{name} {fmt(value)}".strip()
    return text if r is None else f"{text} ({r:.2f}x)"


def format_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned, markdown-compatible table; a comparison's cell reads
    ``value (procoord / value)``. Columns no row uses are left out."""
    used = [(key, title) for key, title in COLUMNS if any(_cell(row, key) for row in rows)]
    headers = ["", "measure", "procoord", "spread", *(title for _, title in used)]
    cells = [[r.figure, r.measure, fmt(r.procoord), r.spread, *(_cell(r, key) for key, _ in used)] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = (v.rjust(w) if i == 2 else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True)))
        return "| " + " | ".join(parts) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(c) for c in cells)
    return "\n".join(out)
