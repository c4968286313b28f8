"""What the dry run checks that torch's `meta` kernels do not: that a layer can take its inputs'
dtypes (float indices into an Embedding, integer images into a conv), that indices with a known
range fit the table they index (GPT-2's positions past its context), and that a block gets the
shapes its `inputs:` declare. A failed check is a CheckFailed, which the dry run reports at the
node like any failure of an op; the same checks run on every device, so meta and cpu agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

# Layers that look rows up by index: integer inputs, float parameters.
INDEXING = (nn.Embedding, nn.EmbeddingBag)

Range = tuple[int, int]  # the values a tensor holds: lo <= v < hi


class CheckFailed(Exception):
    """A check failed at a node: `kind` names it in the report's title."""

    def __init__(self, kind: str, message: str, hint: str | None = None, code: str = "LS201"):
        super().__init__(message)
        self.kind, self.message, self.hint, self.code = kind, message, hint, code


def _floating_params(module: nn.Module) -> bool:
    return any(p.dtype.is_floating_point for p in module.parameters())


def _checked(module: nn.Module) -> bool:
    """torch.nn layers and lazyspec's own ops: their dtype needs are known (a class from an
    allowed package may take anything)."""
    name = type(module).__module__
    return name.startswith("torch.nn.") or name == "lazyspec.builtin_ops"


def check_dtypes(module: nn.Module | None, xs: Sequence[Any]) -> None:
    """An indexing layer takes integer indices; any other layer with float parameters takes
    floating inputs."""
    if module is None or not _checked(module) or not _floating_params(module):
        return
    tensors = [x for x in xs if isinstance(x, torch.Tensor)]
    if isinstance(module, INDEXING):
        bad = [x for x in tensors[:1] if x.dtype.is_floating_point or x.dtype.is_complex]
        if bad:
            raise CheckFailed("dtype mismatch", f"{type(module).__name__} looks rows up by "
                              f"integer index, but its input is {_dtype(bad[0])}",
                              "give the input an integer dtype: --input NAME=2,64:int64, or "
                              "`dtype: int64` under `inputs:`")
        return
    bad = [x for x in tensors if not (x.dtype.is_floating_point or x.dtype.is_complex)]
    if bad:
        raise CheckFailed("dtype mismatch", f"{type(module).__name__} has floating parameters "
                          f"and computes in floating point, but its input is {_dtype(bad[0])}",
                          "give the input a floating dtype (the default float32), or put an "
                          "Embedding first for token ids")


def check_index_range(module: nn.Module | None, xs: Sequence[Any],
                      ranges: dict[int, Range]) -> None:
    """An index whose values are known (a declared `range:`, `Positions`) must fit the table."""
    if not isinstance(module, INDEXING) or not xs or id(xs[0]) not in ranges:
        return
    lo, hi = ranges[id(xs[0])]
    rows = module.num_embeddings
    if hi > rows or lo < 0:
        raise CheckFailed("index out of range", f"{type(module).__name__} has {rows:,} rows "
                          f"(0..{rows - 1:,}), but its input holds indices from {lo:,} to "
                          f"{hi - 1:,}", f"give it at least {hi:,} rows, or a smaller input "
                          "(positions come from the input's length; token ids from the "
                          "input's declared `range:`)")


@dataclass(frozen=True)
class DeclaredInput:
    """A block's declared input: its name and shape (ints, or names that must agree)."""

    name: str
    shape: tuple[int | str, ...] | None


def check_block_inputs(block: str, declared: Sequence[DeclaredInput], xs: Sequence[Any]) -> None:
    """A block gets the shapes its `inputs:` declare: numbers equal, a name one size."""
    sizes: dict[str, tuple[int, str]] = {}
    for decl, x in zip(declared, xs, strict=False):
        if decl.shape is None or not isinstance(x, torch.Tensor):
            continue
        got = [int(d) for d in x.shape]
        shown = "[" + ", ".join(map(str, decl.shape)) + "]"
        if len(got) != len(decl.shape):
            raise _declared(block, f"input '{decl.name}' is declared {shown} "
                            f"({len(decl.shape)}-d) but got {got} ({len(got)}-d)")
        for want, size in zip(decl.shape, got, strict=True):
            if isinstance(want, int) and want != size:
                raise _declared(block, f"input '{decl.name}' is declared {shown} but got {got}")
            if isinstance(want, str):
                first = sizes.setdefault(want, (size, decl.name))
                if first[0] != size:
                    raise _declared(block, f"dimension '{want}' is {first[0]} in input "
                                    f"'{first[1]}' but {size} in input '{decl.name}'")


def _declared(block: str, message: str) -> CheckFailed:
    return CheckFailed("input does not match the block's declaration",
                       f"block '{block}': {message}",
                       "pass the shapes the block's `inputs:` declare, or change the "
                       "declaration", code="LS202")


def _dtype(x: torch.Tensor) -> str:
    return str(x.dtype).removeprefix("torch.")
