"""Aligned plain columns that fit a width without breaking a cell: when a table is wider than
the terminal, whole columns go (the least useful first), never part of a name or a shape. What
still does not fit runs past the width on one line (a terminal wraps it; a pipe or a CI log
keeps it whole). No rich, no torch: the table report styles the lines it gets."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

GAP = "  "
RULE = "─"


@dataclass(frozen=True)
class Col:
    """A column: heading, right-aligned or not, and `drop`: 0 never goes; otherwise the lowest
    goes first when the table is too wide."""

    heading: str
    right: bool = False
    drop: int = 0


@dataclass
class Laid:
    """A laid-out table: heading line, rule, rows, and the headings of the columns left out."""

    heading: str
    rule: str
    rows: list[str]
    dropped: list[str]


def cells(text: str) -> int:
    """Terminal cells `text` takes: wide (CJK) characters take two."""
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int, right: bool) -> str:
    space = " " * (width - cells(text))
    return space + text if right else text + space


def _width(widths: Sequence[int]) -> int:
    return sum(widths) + len(GAP) * (len(widths) - 1)


def fit(cols: Sequence[Col], rows: Sequence[Sequence[str]], width: int | None) -> list[int]:
    """The indices of the columns kept at `width` (None: all): droppable columns go, lowest
    `drop` first, until the rest fits or none is left to drop; then those that fit in what is
    left come back, the most useful first."""
    natural = [max([cells(c.heading), *(cells(r[i]) for r in rows)])
               for i, c in enumerate(cols)]
    kept = list(range(len(cols)))
    if width is None:
        return kept
    droppable = sorted((c.drop, i) for i, c in enumerate(cols) if c.drop > 0)
    dropped = []
    while _width([natural[i] for i in kept]) > width and droppable:
        dropped.append(droppable.pop(0)[1])
        kept.remove(dropped[-1])
    for i in reversed(dropped[:-1]):  # the last one dropped made it fit: it stays out
        if _width([natural[j] for j in (*kept, i)]) <= width:
            kept = sorted((*kept, i))
    return kept


def lay_out(cols: Sequence[Col], rows: Sequence[Sequence[str]], width: int | None) -> Laid:
    """The table at `width` (None: every column), each cell whole on its line. When even the
    columns that never go (`drop` 0) are wider than `width`, each row takes two lines: the first
    cell (a name, a path) alone, then the others, indented (see `_stacked`)."""
    natural = [max([cells(c.heading), *(cells(r[i]) for r in rows)])
               for i, c in enumerate(cols)]
    essential = [natural[i] for i, c in enumerate(cols) if c.drop == 0]
    if width is not None and len(cols) > 1 and _width(essential) > width:
        return _stacked(cols, rows, width)
    return _flat(cols, rows, width)


INDENT = "    "


def _stacked(cols: Sequence[Col], rows: Sequence[Sequence[str]], width: int) -> Laid:
    """Two lines a row: the first cell, then the rest (fitted to what is left of the width)
    under it, indented; a narrow terminal keeps the counts that one line would drop."""
    rest = _flat(cols[1:], [r[1:] for r in rows], width - len(INDENT))
    rule = RULE * max(cells(cols[0].heading), *(cells(r[0]) for r in rows),
                      len(INDENT) + len(rest.rule))
    return Laid(f"{cols[0].heading}\n{INDENT}{rest.heading}", rule,
                [f"{r[0]}\n{INDENT}{line}".rstrip() for r, line in zip(rows, rest.rows,
                                                                          strict=True)],
                rest.dropped)


def _flat(cols: Sequence[Col], rows: Sequence[Sequence[str]], width: int | None) -> Laid:
    """One line a row, columns dropped to fit `width` (see `fit`)."""
    kept = fit(cols, rows, width)
    widths = {i: max([cells(cols[i].heading), *(cells(r[i]) for r in rows)]) for i in kept}

    def line(row: Sequence[str]) -> str:
        return GAP.join(_pad(row[i], widths[i], cols[i].right) for i in kept).rstrip()

    return Laid(line([c.heading for c in cols]), RULE * _width(list(widths.values())),
                [line(r) for r in rows],
                [cols[i].heading for i in range(len(cols)) if i not in kept])
