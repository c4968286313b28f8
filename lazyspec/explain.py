"""What a failing module expected, said in shapes (torch's own messages on `meta` say little).

One rule per module family: (class, rule). A rule looks at the module and the shapes that reached
it and returns (what was expected, a hint), or None when it has nothing to add. A built-in op is
first checked for its number of inputs; one that raised OpInputError said what it expected itself.
"""

from __future__ import annotations

import contextlib
import inspect
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
    if any(s is None for s in shapes):
        return None
    return (f"MatMul needs a [..., n, k] @ [..., k, m] pair, got {shapes[0]} @ {shapes[1]}", None)


def _arity(m: nn.Module, xs: Sequence[Any]) -> Explanation | None:
    """A built-in op given more or fewer inputs than its forward takes."""
    params = list(inspect.signature(type(m).forward).parameters.values())[1:]  # after self
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    names = [p.name for p in params]
    least = sum(p.default is p.empty for p in params)
    if least <= len(xs) <= len(names):
        return None
    count = str(least) if least == len(names) else f"{least} or {len(names)}"
    op = type(m).__name__
    return (f"{op} takes {count} input{'s' * (len(names) > 1)} ({', '.join(names)}), got "
            f"{len(xs)}", f"give it `in: [{', '.join(names[:max(least, 1)])}]`"
            if least > 1 else None)


def _broadcasts(*shapes: list[int]) -> list[int] | None:
    try:
        return list(torch.broadcast_shapes(*[tuple(s) for s in shapes]))  # type: ignore[no-untyped-call]
    except RuntimeError:
        return None


def _sdpa(m: builtin_ops.ScaledDotProductAttention, xs: Sequence[Any]) -> Explanation | None:
    shapes = [_shape(x) for x in xs]
    if any(s is None or len(s) < 2 for s in shapes):
        return None
    q, k, v = shapes[0], shapes[1], shapes[2]
    assert q is not None and k is not None and v is not None
    listed = f"q {q}, k {k}, v {v}"
    if q[-1] != k[-1] or k[-2] != v[-2]:
        return (f"ScaledDotProductAttention needs q [..., L, E], k [..., S, E] and v [..., S, Ev], "
                f"got {listed}", "split q, k and v into heads the same way")
    if len(shapes) == 4 and shapes[3] is not None:
        scores = [*(_broadcasts(q[:-2], k[:-2]) or q[:-2]), q[-2], k[-2]]
        if _broadcasts(shapes[3], scores) != scores:
            return (f"ScaledDotProductAttention's mask must broadcast to the scores {scores} "
                    f"([..., L, S] from {listed}), but it is {shapes[3]}", None)
    return None


def _layernorm2d(m: builtin_ops.LayerNorm2d, xs: Sequence[Any]) -> Explanation | None:
    s = _shape(xs[0]) if xs else None
    c = m.normalized_shape[0]
    if not s or (len(s) == 4 and s[1] == c):
        return None
    return (f"LayerNorm2d({c}) expects a 4-d input [B, {c}, H, W] (channels first), got {s}",
            f"for channels last [B, H, W, C] use LayerNorm({s[-1]})" if s[-1] == c
            else f"set num_channels to {s[1]}" if len(s) == 4 else None)


def _dim_rank(op: str, dim: int, what: str, s: list[int] | None) -> Explanation | None:
    if s is None or -len(s) <= dim < len(s):
        return None
    return (f"{op} {what} dimension {dim}, but the input {s} has {len(s)} dimension(s)",
            "set dim (the positions of a [T] input are Positions(0))" if op == "Positions"
            else None)


def _positions(m: builtin_ops.Positions, xs: Sequence[Any]) -> Explanation | None:
    return _dim_rank(f"Positions(dim={m.dim})", m.dim, "counts the positions along",
                     _shape(xs[0]) if xs else None)


def _t5_bias(m: builtin_ops.T5RelativeAttentionBias, xs: Sequence[Any]) -> Explanation | None:
    s = _shape(xs[0]) if xs else None
    if s is None or len(s) >= 2:
        return None
    return (f"T5RelativeAttentionBias expects an input [B, T, ...] (T in dimension 1), got {s}",
            "give it the hidden states [B, T, d] or the token ids [B, T]")


def _index(m: builtin_ops.Index, xs: Sequence[Any]) -> Explanation | None:
    table = _shape(xs[0]) if xs else None
    if table is None or not -len(table) <= m.dim < len(table):
        return None
    size = table[m.dim]
    return (f"Index(dim={m.dim}) gathers along dimension {m.dim} of the table {table}: every "
            f"index must lie in 0..{size - 1}", None)


def _expand_as(m: builtin_ops.ExpandAs, xs: Sequence[Any]) -> Explanation | None:
    a, b = (_shape(x) for x in xs[:2])
    if a is None or b is None:
        return None
    dims = m.dims or tuple(range(-len(a), 0))
    return (f"{m} expands {a} to the sizes of {b} along dimension(s) "
            f"{list(dims)}: there the first input must have size 1", None)


RULES: list[tuple[type[nn.Module], Rule]] = [
    (nn.Linear, _linear),
    (_ConvNd, _conv),
    (_BatchNorm, _batchnorm),
    (builtin_ops.LayerNorm2d, _layernorm2d),  # before nn.LayerNorm, its base class
    (nn.LayerNorm, _layernorm),
    (nn.GroupNorm, _groupnorm),
    (nn.Embedding, _embedding),
    (nn.MultiheadAttention, _mha),
    (builtin_ops.Add, _broadcast),
    (builtin_ops.Mul, _broadcast),
    (builtin_ops.Concat, _concat),
    (builtin_ops.MatMul, _matmul),
    (builtin_ops.ScaledDotProductAttention, _sdpa),
    (builtin_ops.Positions, _positions),
    (builtin_ops.T5RelativeAttentionBias, _t5_bias),
    (builtin_ops.Index, _index),
    (builtin_ops.ExpandAs, _expand_as),
]


def headline(module: nn.Module | None, inputs: Sequence[Any],
             cause: BaseException | None) -> str | None:
    """The kind of problem, where the op knows better than torch's exception type: "wrong
    number of inputs", or what a built-in op's OpInputError says."""
    if isinstance(cause, builtin_ops.OpInputError):
        return cause.what
    if module is not None and builtin_ops.BUILTIN_OPS.get(type(module).__name__) is type(module):
        with contextlib.suppress(TypeError, ValueError):
            if _arity(module, inputs):
                return "wrong number of inputs"
    return None


def explain(module: nn.Module | None, inputs: Sequence[Any],
            cause: BaseException | None = None) -> Explanation | None:
    if isinstance(cause, builtin_ops.OpInputError):  # the op said what it expected
        return str(cause), cause.hint
    if module is None:
        return None
    if builtin_ops.BUILTIN_OPS.get(type(module).__name__) is type(module):
        wrong = None
        with contextlib.suppress(TypeError, ValueError):  # no signature to read: say nothing
            wrong = _arity(module, inputs)
        if wrong:
            return wrong
    for cls, rule in RULES:
        if isinstance(module, cls):
            try:
                return rule(module, inputs)
            except Exception:  # an explanation must never hide the real error
                return None
    return None
