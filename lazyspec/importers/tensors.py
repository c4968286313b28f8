"""A module's free tensors (`nn.Parameter` attributes and buffers) as `Parameter(...)` and
`Buffer(...)` nodes.

A spec holds no values, only how a fresh build fills a tensor: a parameter's `init=` is read from
the user's values where they are real (all ones: `ones`, all zeros: the default, one value:
`constant:V`, else `normal:0.02`); a buffer must be one that a `Buffer` scheme computes (an
`arange`, a causal mask, zeros, ones, Swin's relative position index), checked value for value,
else the module cannot be written as a spec.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from lazyspec.export.literals import spec_literal
from lazyspec.tensors import BUFFER_SCHEMES

if TYPE_CHECKING:
    from lazyspec.importers.bodies import Builder


def parameter_text(tensor: nn.Parameter, original: torch.Tensor | None) -> str:
    """`Parameter(1, 1, 768, init='normal:0.02')`."""
    parts = [str(int(d)) for d in tensor.shape]
    init = _init(original)
    if init != "zeros":
        parts.append(f"init={spec_literal(init)}")
    if not tensor.requires_grad:
        parts.append("trainable=false")
    return f"Parameter({', '.join(parts)})"


def _init(original: torch.Tensor | None) -> str:
    if original is None or original.device.type == "meta" or original.numel() == 0:
        return "zeros"
    with torch.no_grad():
        first = original.flatten()[0]
        if bool((original == first).all()) and original.dtype.is_floating_point:
            value = float(first)
            if value in (0.0, 1.0):
                return "zeros" if value == 0.0 else "ones"
            if math.isfinite(value):
                return f"constant:{value!r}"
    return "normal:0.02"


def buffer_text(builder: Builder, name: str, original: torch.Tensor | None) -> str:
    """The `Buffer(...)` whose scheme computes exactly the module's buffer."""
    from lazyspec.importers.bodies import Unexpressible

    if original is None or original.device.type == "meta":
        raise Unexpressible(f"reads the buffer '{name}', whose values are not known (the "
                            "module is on meta): a spec computes its buffers, so lazyspec must "
                            "see the values", )
    persistent = name not in builder.module._non_persistent_buffers_set
    for scheme, args in _candidates(original):
        value = BUFFER_SCHEMES[scheme](*args)
        if value.shape == original.shape and _same_values(value, original):
            parts = [spec_literal(scheme), *(spec_literal(a) for a in args)]
            if not persistent:
                parts.append("persistent=false")
            return f"Buffer({', '.join(parts)})"
    raise Unexpressible(f"reads the buffer '{name}' {list(original.shape)}, whose values no "
                        f"Buffer scheme computes ({', '.join(BUFFER_SCHEMES)})")


def _same_values(value: torch.Tensor, original: torch.Tensor) -> bool:
    if value.dtype.is_floating_point != original.dtype.is_floating_point or \
            (value.dtype == torch.bool) != (original.dtype == torch.bool):
        return False
    return bool(torch.equal(value.to(original.dtype), original.cpu()))


def _candidates(t: torch.Tensor) -> list[tuple[str, tuple[object, ...]]]:
    shape = [int(d) for d in t.shape]
    out: list[tuple[str, tuple[object, ...]]] = [("zeros", (shape,)), ("ones", (shape,))]
    if t.dim() == 1:
        out.append(("arange", (shape[0],)))
        side = math.isqrt(shape[0])
        if side * side == shape[0] and side:  # (h * w) ** 2 entries
            out += [("relative_position_index", ([h, side // h],))
                    for h in range(1, side + 1) if side % h == 0]
    if t.dim() == 2 and shape[0] == shape[1]:
        out.append(("causal_mask", (shape[0],)))
    return out
