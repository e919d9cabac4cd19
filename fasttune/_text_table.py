"""Plain-text tables in the boxed style of Ray Tune's console reports (no tabulate needed).

Example:
    >>> print(text_table(["name", "x"], [["a", "1"], ["bb", "22"]]))
    +------+----+
    | name |  x |
    |------+----|
    | a    |  1 |
    | bb   | 22 |
    +------+----+
"""
from __future__ import annotations

from typing import List, Sequence


def _numeric(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``rows`` of string cells under ``headers``; columns whose cells are all numbers
    are right-aligned, the others left-aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]
    right = [bool(rows) and all(_numeric(row[i]) or not row[i] for row in rows) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
        return "| " + " | ".join(parts) + " |"

    edge = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    lines: List[str] = [edge, line(headers), "|" + "+".join("-" * (w + 2) for w in widths) + "|"]
    lines.extend(line(row) for row in rows)
    lines.append(edge)
    return "\n".join(lines)
