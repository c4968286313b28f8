"""Shapes as text: the one place that writes and reads them, for every report, the lock file and
the graph. Torch-free.

A shape tree is a tuple of dimensions for a tensor, a list of trees for a value holding several
tensors, or a type name for anything else; dimensions are ints, or text for symbolic ones.
"""

from __future__ import annotations

import json
from typing import Any

ShapeTree = Any  # tuple[int | str, ...] | list[ShapeTree] | str | None


def format_shape(shape: ShapeTree, missing: str = "-") -> str:
    """(1, 16, 64, 64) -> `[1, 16, 64, 64]`; several tensors -> `([2, 4], [2, 4])`; None (not
    known) -> `missing`."""
    if shape is None:
        return missing
    if isinstance(shape, tuple):
        return "[" + ", ".join(str(d) for d in shape) + "]"
    if isinstance(shape, list):
        return "(" + ", ".join(format_shape(s, missing) for s in shape) + ")"
    return str(shape)


def format_dims(shape: tuple[int | None, ...]) -> str:
    """A shape with unknown dimensions (None) shown as `?`: `[256, ?]`."""
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def as_lists(shape: ShapeTree) -> Any:
    """A shape tree with lists for tuples: the form JSON and the lock file write."""
    return [as_lists(v) for v in shape] if isinstance(shape, (list, tuple)) else shape


def json_shape(shape: ShapeTree) -> str:
    """A shape as the lock file and its diffs write it: JSON lists, `[[2, 10], [2, 10]]`."""
    return json.dumps(as_lists(shape)).replace(",", ", ").replace(",  ", ", ")


def read_shape(text: str) -> ShapeTree:
    """A shape as `format_shape` writes it, back to a tree: `[B, 16, (H//2)]` ->
    ("B", "16", "(H//2)"), `([B, T, 64], [B, T, 64])` -> a list of two; anything else stays
    text."""
    text = text.strip()
    if len(text) >= 2 and (text[0], text[-1]) in (("[", "]"), ("(", ")")):
        parts = _split_top(text[1:-1])
        if text[0] == "[":
            return tuple(parts)
        return [read_shape(p) for p in parts]
    return text


def _split_top(text: str) -> list[str]:
    """Split at the commas outside any brackets."""
    parts, level, start = [], 0, 0
    for i, c in enumerate(text):
        if c in "([":
            level += 1
        elif c in ")]":
            level -= 1
        elif c == "," and level == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    last = text[start:].strip()
    return [*parts, last] if parts or last else []
