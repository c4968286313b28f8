"""The imported model's input dimensions: the ones the shape pass left free get names (`B`,
`T`, `H`, `W`), so the spec takes any size there; the ones a layer pinned (3 colour channels,
an embedding width) stay numbers."""

from __future__ import annotations

from typing import Any

import torch

# Names by (rank, position) for the usual layouts; anything else is N1, N2, ...
_USUAL = {(2, 1): "T", (3, 1): "T", (4, 1): "C", (4, 2): "H", (4, 3): "W", (5, 1): "C",
          (5, 2): "D", (5, 3): "H", (5, 4): "W", (3, 2): "C"}


def dimension_names(trace: Any, values: list[Any]) -> list[list[int | str]]:
    """Each input's shape: a name for a free dimension (one name per symbol, across inputs),
    the number for a pinned one. Specialised (no symbolic pass): numbers only."""
    names: dict[Any, str] = {}
    taken: set[str] = set()
    out: list[list[int | str]] = []
    for value in values:
        shape: list[int | str] = []
        for j, d in enumerate(value.shape):
            if not isinstance(d, torch.SymInt):
                shape.append(int(d))
                continue
            expr = trace.env.simplify(d.node.expr)
            if expr.is_number or not expr.is_Symbol:  # pinned, or tied to another size
                shape.append(int(expr) if expr.is_number else int(d.node.hint))
                continue
            if expr not in names:
                names[expr] = _fresh("B" if j == 0 else _USUAL.get((value.dim(), j), f"N{j}"),
                                     taken)
            shape.append(names[expr])
        out.append(shape)
    return out


def _fresh(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}{n}", n + 1
    taken.add(candidate)
    return candidate
