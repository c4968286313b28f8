"""What a failing module expected, said in shapes (torch's own messages on `meta` say little).

One rule per module family: (class, rule). A rule looks at the module and the shapes that reached
it and returns (what was expected, a hint), or None when it has nothing to add.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd

from lazyspec import builtin_ops

Explanation = tuple[str, str | None]
Rule = Callable[[Any, Sequence[Any]], Explanation | None]


def _shape(x: Any) -> list[int] | None:
    return list(x.shape) if isinstance(x, torch.Tensor) else None


def _is_lazy(m: nn.Module) -> bool:
    from torch.nn.modules.lazy import LazyModuleMixin

    return isinstance(m, LazyModuleMixin) and m.has_uninitialized_params()


def _linear(m: nn.Linear, xs: Sequence[Any]) -> Explanation | None:
    s = _shape(xs[0]) if xs else None
    if _is_lazy(m) or not s or s[-1] == m.in_features:
        return None
    return (f"Linear(in_features={m.in_features}, out_features={m.out_features}) expects the last "
            f"input dimension to be {m.in_features}, but the input {s} has {s[-1]}",
            f"set in_features to {s[-1]}, or use LazyLinear({m.out_features}) to infer it")


def _conv(m: _ConvNd, xs: Sequence[Any]) -> Explanation | None:
    s = _shape(xs[0]) if xs else None
    if _is_lazy(m) or not s:
        return None
    n = len(m.kernel_size)
    if len(s) not in (n + 1, n + 2):
        return (f"{type(m).__name__} expects a {n + 2}-d input (N, C, {'...' if n > 1 else 'L'}) "
                f"or an unbatched {n + 1}-d one, got {len(s)}-d {s}",
                "add Flatten/Unflatten or fix the input shape")
    c = s[1] if len(s) == n + 2 else s[0]
    if c == m.in_channels:
        return None
    return (f"{type(m).__name__} expects {m.in_channels} input channels (in_channels="
            f"{m.in_channels}), but the input {s} has {c}",
            f"set in_channels to {c}, or use the Lazy form of {type(m).__name__} to infer it")


def _batchnorm(m: _BatchNorm, xs: Sequence[Any]) -> Explanation | None:
    s = _shape(xs[0]) if xs else None
    if _is_lazy(m) or not s or len(s) < 2 or s[1] == m.num_features:
        return None
    return (f"{type(m).__name__}({m.num_features}) expects {m.num_features} channels in "
            f"dimension 1, but the input {s} has {s[1]}",
            f"set num_features to {s[1]}, or use the Lazy form to infer it")


def _layernorm(m: nn.LayerNorm, xs: Sequence[Any]) -> Explanation | None:
    s = _shape(xs[0]) if xs else None
    want = list(m.normalized_shape)
    if not s or s[-len(want):] == want:
        return None
    return (f"LayerNorm({want}) expects the input to end in {want}, but it is {s}",
            f"set normalized_shape to {s[-len(want):]}")


def _groupnorm(m: nn.GroupNorm, xs: Sequence[Any]) -> Explanation | None:
    s = _shape(xs[0]) if xs else None
    if not s or len(s) < 2 or s[1] == m.num_channels:
        return None
    return (f"GroupNorm expects {m.num_channels} channels in dimension 1, but the input {s} "
            f"has {s[1]}", f"set num_channels to {s[1]}")


def _embedding(m: nn.Embedding, xs: Sequence[Any]) -> Explanation | None:
    x = xs[0] if xs else None
    if isinstance(x, torch.Tensor) and (x.dtype.is_floating_point or x.dtype.is_complex):
        return (f"Embedding expects integer indices, but the input is {x.dtype}",
                "give the input an integer dtype: --input NAME=2,64:int64")
    return None


def _mha(m: nn.MultiheadAttention, xs: Sequence[Any]) -> Explanation | None:
    s = _shape(xs[0]) if xs else None
    if not s or s[-1] == m.embed_dim:
        return None
    return (f"MultiheadAttention(embed_dim={m.embed_dim}) expects the last dimension to be "
            f"{m.embed_dim}, but the query is {s}", None)


def _broadcast(m: nn.Module, xs: Sequence[Any]) -> Explanation | None:
    shapes = [_shape(x) for x in xs]
    if any(s is None for s in shapes):
        return None
    try:
        sizes = [tuple(s) for s in shapes if s is not None]
        torch.broadcast_shapes(*sizes)  # type: ignore[no-untyped-call]
    except RuntimeError:
        listed = ", ".join(str(s) for s in shapes)
        return (f"{type(m).__name__} needs shapes that broadcast, got {listed}",
                "a residual sum needs a projection when the stride or the width changes")
    return None


def _concat(m: builtin_ops.Concat, xs: Sequence[Any]) -> Explanation | None:
    shapes = [_shape(x) for x in xs]
    if any(s is None for s in shapes) or not shapes:
        return None
    ranks = {len(s) for s in shapes if s is not None}
    listed = ", ".join(str(s) for s in shapes)
    if len(ranks) > 1:
        return (f"Concat needs inputs of the same rank, got {listed}", None)
    return (f"Concat(dim={m.dim}) needs inputs that agree in every dimension but {m.dim}, "
            f"got {listed}", "check the sizes of the skip connection")


def _matmul(m: builtin_ops.MatMul, xs: Sequence[Any]) -> Explanation | None:
    shapes = [_shape(x) for x in xs]
    if len(shapes) != 2 or any(s is None for s in shapes):
        return (f"MatMul takes two tensors, got {len(xs)} input(s)", "give it `in: [a, b]`")
    return (f"MatMul needs a [..., n, k] @ [..., k, m] pair, got {shapes[0]} @ {shapes[1]}", None)


RULES: list[tuple[type[nn.Module], Rule]] = [
    (nn.Linear, _linear),
    (_ConvNd, _conv),
    (_BatchNorm, _batchnorm),
    (nn.LayerNorm, _layernorm),
    (nn.GroupNorm, _groupnorm),
    (nn.Embedding, _embedding),
    (nn.MultiheadAttention, _mha),
    (builtin_ops.Add, _broadcast),
    (builtin_ops.Mul, _broadcast),
    (builtin_ops.Concat, _concat),
    (builtin_ops.MatMul, _matmul),
]


def explain(module: nn.Module | None, inputs: Sequence[Any]) -> Explanation | None:
    if module is None:
        return None
    for cls, rule in RULES:
        if isinstance(module, cls):
            try:
                return rule(module, inputs)
            except Exception:  # an explanation must never hide the real error
                return None
    return None
