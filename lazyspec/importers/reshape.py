"""Sizes a module reads from its input, matched to the input's own dimensions.

`x.view(b, t, h, d // h)` with `b, t, d = x.shape` keeps x's first two dimensions and splits the
third: `Unflatten(2, [h, d // h])`, right for every batch and length, because the shape pass
knows `b` and `t` as x's symbolic dimensions, not as the numbers they had at the given input.
`torch.arange(x.shape[1])` and a causal mask of `x.shape[1]` rows are found the same way.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import sympy
import torch
import torch.fx as fx

from lazyspec.importers import optext
from lazyspec.importers.bodies import Builder, Unexpressible
from lazyspec.importers.specdoc import Ref

MINUS_ONE = "-1"  # a size written -1: inferred by torch


def size_expr(b: Builder, value: Any) -> Any:
    """A size as a SymPy expression of the input's symbols (a number where it is one)."""
    if isinstance(value, torch.SymInt):
        return b.ctx.trace.env.simplify(value.node.expr)
    if isinstance(value, int) and not isinstance(value, bool):
        return sympy.Integer(value)
    raise Unexpressible(f"takes {value!r} as a size")


def same(a: Any, b: Any) -> bool:
    return bool(sympy.expand(a - b) == 0)


def reshape(b: Builder, n: fx.Node, x: Any, sizes: list[Any]) -> Ref:
    """`view`/`reshape`: the input's leading dimensions kept, the rest flattened (`Flatten`)
    and/or split into sizes that do not depend on the input (`Unflatten`)."""
    ins = [size_expr(b, d) for d in b.value(x).shape]
    outs: list[Any] = []
    for s in sizes:
        value = b.value(s)
        outs.append(MINUS_ONE if isinstance(value, int) and value == -1 else size_expr(b, value))
    k = 0
    while k < min(len(ins), len(outs)) and outs[k] is not MINUS_ONE and same(outs[k], ins[k]):
        k += 1
    rest_in, rest_out = ins[k:], outs[k:]
    if not rest_in and not rest_out:
        return b.ref(x)  # the same shape
    if len(rest_out) == 1 and rest_in and (rest_out[0] is MINUS_ONE or
                                           same(rest_out[0], math.prod(rest_in))):
        if len(rest_in) == 1:
            return b.ref(x)
        return b.emit(optext.flatten_op(k), [b.ref(x)], n.name)
    fixed = [o for o in rest_out if o is not MINUS_ONE]
    if rest_in and all(o.is_number for o in fixed) and len(rest_out) - len(fixed) <= 1:
        return _unflatten(b, n, x, k, len(rest_in), [-1 if o is MINUS_ONE else int(o)
                                                     for o in rest_out])
    raise Unexpressible(f"to {_shown(outs)} from {_shown(ins)}: the sizes after the kept "
                        "dimensions depend on the input's shape in a way no spec op holds "
                        "(Flatten, Unflatten)")


def _unflatten(b: Builder, n: fx.Node, x: Any, k: int, rest: int, sizes: list[int]) -> Ref:
    source = b.ref(x)
    if rest > 1:
        source = b.emit(optext.flatten_op(k), [source], f"{n.name}_flat")
    return b.emit(optext.call("Unflatten", k, sizes), [source], n.name)


def _shown(sizes: list[Any]) -> str:
    return "[" + ", ".join(str(s) for s in sizes) + "]"


def dimension_of(b: Builder, size: Any) -> tuple[fx.Node, int]:
    """The tensor and dimension a size was read from (`x.shape[1]`, `x.size(1)`), or a tensor
    of this forward with a dimension of the same symbolic size."""
    found = _read_from(size)
    if found is not None:
        tensor, dim = found
        rank = b.value(tensor).dim()
        return tensor, dim % rank if rank else dim
    target = size_expr(b, b.value(size))
    for node in b.t.graph.nodes:
        value = b.t.values.get(node)
        if isinstance(value, torch.Tensor) and not isinstance(b.refs.get(node), Unexpressible):
            for dim, d in enumerate(value.shape):
                if node in b.refs and same(size_expr(b, d), target) and not target.is_number:
                    return node, dim
    raise Unexpressible("takes a size that is not a dimension of a tensor the spec holds")


def tensor_with(b: Builder, before: fx.Node, rank: int, sizes: dict[int, Any]) -> fx.Node:
    """A tensor computed before `before`, of this rank, with these sizes at these dimensions
    (symbolically, not numbers that happen to match)."""
    node: fx.Node
    for node in b.t.graph.nodes:
        if node is before:
            break
        value = b.t.values.get(node)
        if not isinstance(value, torch.Tensor) or value.dim() != rank or \
                isinstance(b.refs.get(node, Unexpressible()), Unexpressible):
            continue
        if all(not e.is_number and same(size_expr(b, value.shape[i]), e)
               for i, e in sizes.items()):
            return node
    raise Unexpressible("expands to sizes that no tensor of the same rank before it has: "
                        "ExpandAs takes them from such a tensor")


def _read_from(size: Any) -> tuple[fx.Node, int] | None:
    if not isinstance(size, fx.Node):
        return None
    if size.target is operator.getitem and isinstance(size.args[1], int):
        shape = size.args[0]
        if isinstance(shape, fx.Node) and shape.target is getattr and \
                shape.args[1] == "shape" and isinstance(shape.args[0], fx.Node):
            return shape.args[0], size.args[1]
        if isinstance(shape, fx.Node) and shape.op == "call_method" and shape.target == "size" \
                and len(shape.args) == 1 and isinstance(shape.args[0], fx.Node):
            return shape.args[0], size.args[1]
    if size.op == "call_method" and size.target == "size":
        dim = size.args[1] if len(size.args) > 1 else size.kwargs.get("dim")
        if isinstance(dim, int) and isinstance(size.args[0], fx.Node):
            return size.args[0], dim
    return None


# --- the causal mask written out ---------------------------------------------------------------


def causal_size(b: Builder, mask: Any) -> Any:
    """The size t of a mask that is True (to fill) strictly above the diagonal of a [t, t]
    matrix: `~ones(t, t).tril()`, `ones(t, t).tril() == 0`, `ones(t, t).triu(1)`."""
    not_lower = _call_of(mask, (operator.invert, torch.logical_not, torch.bitwise_not),
                         ("logical_not", "bitwise_not"))
    if not_lower is not None:
        return _ones_size(_lower(not_lower.args[0]), bool_only=True)
    equal = _call_of(mask, (operator.eq, torch.eq), ("eq",))
    if equal is not None and equal.args[1] == 0:
        return _ones_size(_lower(equal.args[0]), bool_only=False)
    upper = _call_of(mask, (torch.triu,), ("triu",))
    if upper is not None and _diagonal(upper) == 1:
        return _ones_size(upper.args[0], bool_only=True)
    raise Unexpressible("fills where a mask says, and the mask is not a causal triangle "
                        "(~torch.ones(t, t, dtype=torch.bool).tril()): no spec op does")


def _call_of(node: Any, functions: tuple[Any, ...], methods: tuple[str, ...]) -> fx.Node | None:
    if not isinstance(node, fx.Node):
        return None
    if node.op == "call_function" and node.target in functions:
        return node
    if node.op == "call_method" and node.target in methods:
        return node
    return None


def _diagonal(node: fx.Node) -> Any:
    return node.args[1] if len(node.args) > 1 else node.kwargs.get("diagonal", 0)


def _lower(node: Any) -> Any:
    lower = _call_of(node, (torch.tril,), ("tril",))
    if lower is None or _diagonal(lower) != 0:
        raise Unexpressible("fills where a mask says, and the mask is not a causal triangle")
    return lower.args[0]


def _ones_size(node: Any, bool_only: bool) -> Any:
    ones = _call_of(node, (torch.ones,), ())
    dtype = ones.kwargs.get("dtype") if ones is not None else None
    if ones is None or (bool_only and dtype is not torch.bool):
        raise Unexpressible("fills where a mask says, and the mask is not a causal triangle of "
                            "torch.ones")
    sizes = list(ones.args[0]) if len(ones.args) == 1 and isinstance(ones.args[0], (list, tuple)) \
        else list(ones.args)
    if len(sizes) != 2 or sizes[0] != sizes[1]:
        raise Unexpressible("fills where a mask says, and the mask is not square")
    return sizes[0]
