"""The torch.nn layers of an imported module, written as op calls with their constructor
arguments recovered from the instance (`Conv2d(3, 64, 7, stride=2, padding=3, bias=false)`).

Each argument is read from the attribute of the same name (`in_features`, `kernel_size`), from a
tensor's presence (`bias=false` where `module.bias is None`), or from a few layers' own
attributes where torch stores them elsewhere (MultiheadAttention, the transformer layers, the
RNNs). A recovered call is then VERIFIED: the class is built again from it on `meta`, and its
parameter and buffer names and shapes and its `extra_repr()` must equal the original's, else the
layer is an error at its module path (LS160), never a silently different layer.

A user module that is not a torch.nn class but computes exactly what `nn.RMSNorm` or
`nn.LayerNorm` computes, with the same parameter names (a hand-written LLaMA RMSNorm), becomes
that layer: checked on random data, with the module's own forward against the layer's.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lazyspec import ops
from lazyspec.compile import PLACEMENT_ARGS
from lazyspec.export.literals import Unwritable, spec_literal
from lazyspec.importers import cannot

# Arguments torch keeps somewhere else than an attribute of the same name.
Getter = Callable[[Any], Any]  # reads torch's own attributes of one layer class


def _activation(m: nn.Module) -> str:
    kinds = {1: "relu", 2: "gelu"}
    kind = getattr(m, "activation_relu_or_gelu", 0)
    if kind not in kinds:
        raise ValueError("its activation is a custom function")
    return kinds[kind]


_TRANSFORMER: dict[str, Getter] = {
    "d_model": lambda m: m.self_attn.embed_dim, "nhead": lambda m: m.self_attn.num_heads,
    "dim_feedforward": lambda m: m.linear1.out_features, "dropout": lambda m: m.dropout.p,
    "activation": _activation, "layer_norm_eps": lambda m: m.norm1.eps,
    "batch_first": lambda m: m.self_attn.batch_first, "bias": lambda m: m.linear1.bias is not None,
}
SPECIAL: dict[str, dict[str, Getter]] = {
    "MultiheadAttention": {"bias": lambda m: m.in_proj_bias is not None,
                           "add_bias_kv": lambda m: m.bias_k is not None,
                           "kdim": lambda m: None if m.kdim == m.embed_dim else m.kdim,
                           "vdim": lambda m: None if m.vdim == m.embed_dim else m.vdim},
    "TransformerEncoderLayer": _TRANSFORMER,
    "TransformerDecoderLayer": _TRANSFORMER,
}
# Classes whose signature is (*args, **kwargs): their arguments, in order.
_RNN = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
        "bidirectional")
POSITIONAL: dict[str, tuple[tuple[str, Any], ...]] = {
    "LSTM": tuple((n, inspect.Parameter.empty if i < 2 else d) for i, (n, d) in enumerate(
        zip((*_RNN, "proj_size"), (None, None, 1, True, False, 0.0, False, 0), strict=True))),
    "GRU": tuple((n, inspect.Parameter.empty if i < 2 else d) for i, (n, d) in enumerate(
        zip(_RNN, (None, None, 1, True, False, 0.0, False), strict=True))),
    "RNN": tuple((n, inspect.Parameter.empty if i < 2 else d) for i, (n, d) in enumerate(
        zip((*_RNN[:3], "nonlinearity", *_RNN[3:]), (None, None, 1, "tanh", True, False, 0.0,
                                                      False), strict=True))),
}
# Tuple arguments written as one number when every element is the same (`kernel_size=3`).
_SQUARE = frozenset({"kernel_size", "stride", "padding", "dilation", "output_padding"})


@dataclass(frozen=True)
class LayerCall:
    """A torch.nn class with the arguments that build the same layer."""

    cls: type[nn.Module]
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]

    def text(self) -> str:
        parts = [spec_literal(a) for a in self.args]
        parts += [f"{k}={spec_literal(v)}" for k, v in self.kwargs]
        return f"{self.cls.__name__}({', '.join(parts)})" if parts else self.cls.__name__

    def build(self, device: str = "meta") -> nn.Module:
        with torch.device(device):
            return self.cls(*self.args, **dict(self.kwargs))


def nameable(module: nn.Module) -> bool:
    """A torch.nn class a spec can name (containers are not ops)."""
    cls = type(module)
    return ops.torch_nn_ops().get(cls.__name__) is cls


def layer_call(module: nn.Module, path: str) -> LayerCall:
    """The op call that rebuilds this torch.nn layer, verified; LS160 at `path` otherwise."""
    cls = type(module)
    where = f"module '{path}' ({cls.__name__})"
    if any(isinstance(p, nn.parameter.UninitializedParameter) for p in module.parameters()):
        raise cannot("LS160", f"{where} is still lazy: its sizes are not known yet",
                     "run one forward pass before importing, so every lazy layer has its sizes")
    try:
        call = _recover(module)
    except (ValueError, Unwritable) as e:
        raise cannot("LS160", f"{where}: its constructor arguments cannot be recovered: "
                     f"{e or 'an argument is not a number, string, boolean or list'}") from None
    problem = _differs(module, call)
    if problem:
        raise cannot("LS160", f"{where}: rebuilt as {call.text()} it {problem}",
                     "its constructor arguments cannot be recovered from the instance; a "
                     "spec can hold only layers it can rebuild")
    return call


def _parameters(cls: type[nn.Module]) -> list[tuple[str, Any]]:
    """(name, default) of the constructor's arguments a spec may write, in order."""
    if cls.__name__ in POSITIONAL:
        return list(POSITIONAL[cls.__name__])
    out = []
    for p in ops.OpDef(cls.__name__, cls, "").signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name.startswith("_") \
                or p.name in PLACEMENT_ARGS:
            continue
        out.append((p.name, p.default))
    return out


def _recover(module: nn.Module) -> LayerCall:
    cls = type(module)
    special = SPECIAL.get(cls.__name__, {})
    args: list[Any] = []
    kwargs: list[tuple[str, Any]] = []
    for name, default in _parameters(cls):
        if name in special:
            value = special[name](module)
        elif hasattr(module, name):
            value = _plain(name, getattr(module, name), default)
        elif default is inspect.Parameter.empty:
            raise ValueError(f"no attribute holds its argument '{name}'")
        else:
            continue  # not stored: the default is the best guess, and the check below decides
        spec_literal(value)  # raises Unwritable for what a spec cannot hold
        if default is inspect.Parameter.empty:
            args.append(value)
        elif not _same(value, default):
            kwargs.append((name, value))
    return LayerCall(cls, tuple(args), tuple(kwargs))


def _plain(name: str, value: Any, default: Any) -> Any:
    """An attribute as the argument that made it: a tensor's presence as a boolean, a torch.Size
    as a tuple, `(3, 3)` as 3."""
    if isinstance(value, torch.Tensor) or (value is None and isinstance(default, bool)):
        return value is not None
    if isinstance(value, torch.Size):
        value = tuple(value)
    if name == "normalized_shape" and isinstance(value, tuple) and len(value) == 1:
        return value[0]  # LayerNorm(768), not LayerNorm((768,))
    if isinstance(value, tuple) and name in _SQUARE and value and \
            all(v == value[0] and type(v) is int for v in value):
        return value[0]
    if isinstance(value, float) and math.isnan(value):
        raise ValueError(f"'{name}' is NaN")
    return value


def _same(value: Any, default: Any) -> bool:
    return type(value) is type(default) and value == default


def _state(m: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    tensors = [*m.named_parameters(remove_duplicate=False),
               *m.named_buffers(remove_duplicate=False)]
    return sorted((name, tuple(t.shape)) for name, t in tensors)


def _state_difference(mine: dict[str, tuple[int, ...]], theirs: dict[str, tuple[int, ...]],
                      most: int = 3) -> str:
    """How the rebuilt layer's tensors differ from the module's: the first few differences and
    their counts (nn.Transformer holds hundreds of tensors)."""
    missing = [n for n in theirs if n not in mine]
    extra = [n for n in mine if n not in theirs]
    shaped = [f"{n} {list(mine[n])} where the module's is {list(theirs[n])}" for n in mine
              if n in theirs and mine[n] != theirs[n]]
    parts = []
    for what, names in (("lacks", missing), ("has in addition", extra),
                        ("holds other shapes,", shaped)):
        if names:
            more = f" and {len(names) - most:,} more" if len(names) > most else ""
            parts.append(f"{what} {', '.join(names[:most])}{more}")
    counts = "" if len(mine) == len(theirs) else \
        f"holds {len(mine):,} tensors where the module holds {len(theirs):,}: "
    return counts + "; ".join(parts)


def _differs(module: nn.Module, call: LayerCall) -> str | None:
    """Why the layer rebuilt from `call` is not the module's twin (None: it is)."""
    try:
        rebuilt = call.build()
    except Exception as e:  # the class refused the recovered arguments
        return f"cannot be built: {type(e).__name__}: {e}"
    mine, theirs = dict(_state(rebuilt)), dict(_state(module))
    if mine != theirs:
        return _state_difference(mine, theirs)
    if rebuilt.extra_repr() != module.extra_repr():
        return f"reads '{rebuilt.extra_repr()}', but the module reads '{module.extra_repr()}'"
    return None


# --- user modules that compute a torch.nn norm ----------------------------------------------------


def equivalent(module: nn.Module) -> LayerCall | None:
    """The torch.nn norm (or, with no tensors at all, lazyspec's `Rotary`) this childless user
    module computes, with the same parameter names (checked on random data); None when there is
    none."""
    if nameable(module) or any(True for _ in module.children()) or list(module.buffers()):
        return None
    params = dict(module.named_parameters())
    if not params:
        return next((c for c in _rotary_candidates(module) if _turns_the_same(module, c)), None)
    weight = params.get("weight")
    if weight is None or set(params) - {"weight", "bias"} or \
            any(p.shape != weight.shape for p in params.values()):
        return None
    shape = tuple(weight.shape)
    for call in _norm_candidates(module, shape, "bias" in params):
        if _computes_the_same(module, call, shape):
            return call
    return None


def _norm_candidates(module: nn.Module, shape: tuple[int, ...], bias: bool) -> list[LayerCall]:
    floats = [v for v in vars(module).values() if type(v) is float and 0 < v < 1]
    epsilons = list(dict.fromkeys([*floats, 1e-5, 1e-6]))
    size: Any = shape[0] if len(shape) == 1 else shape
    if bias:
        return [LayerCall(nn.LayerNorm, (size,), (("eps", e),) if e != 1e-5 else ())
                for e in epsilons]
    calls = [LayerCall(nn.RMSNorm, (size,), (("eps", e),)) for e in epsilons]
    calls += [LayerCall(nn.LayerNorm, (size,), (*((("eps", e),) if e != 1e-5 else ()),
                                                ("bias", False))) for e in epsilons]
    return calls


def _rotary_candidates(module: nn.Module) -> list[LayerCall]:
    """Rotary(head_dim, base) for the sizes and bases the module holds (HF's attribute names),
    and the usual bases: a hand-written rotary embedding folds into constants under torch.fx."""
    from lazyspec.builtin_ops import Rotary

    ints = [v for v in vars(module).values() if type(v) is int and 0 < v <= 4096 and v % 2 == 0]
    bases = [float(v) for v in vars(module).values() if type(v) in (int, float) and v >= 100]
    bases = list(dict.fromkeys([*bases, 10000.0, 500000.0, 1000000.0]))
    return [LayerCall(Rotary, (d,), (("base", b),) if b != 10000.0 else ())
            for d in dict.fromkeys(ints) for b in bases]


def _turns_the_same(module: nn.Module, call: LayerCall) -> bool:
    """Both on the CPU with the same random `[B, heads, T, head_dim]` input: the same output."""
    generator = torch.Generator().manual_seed(0)
    try:
        mine = call.build("cpu")
        x = torch.randn((2, 3, 5, int(call.args[0])), generator=generator)
        with torch.no_grad():
            return bool(torch.allclose(module(x), mine(x), rtol=1e-5, atol=1e-6))
    except Exception:  # the module cannot run on this input: not a rotary embedding
        return False


def _computes_the_same(module: nn.Module, call: LayerCall, shape: tuple[int, ...]) -> bool:
    """Both on the CPU with the same random parameters and input: the same output."""
    generator = torch.Generator().manual_seed(0)
    try:
        mine = call.build("cpu")
        with torch.no_grad():
            for p in mine.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) + 1)
        theirs = cpu_copy(module, dict(mine.named_parameters()))
        x = torch.randn((2, 3, *shape), generator=generator)
        with torch.no_grad():
            return bool(torch.allclose(theirs(x), mine(x), rtol=1e-5, atol=1e-6))
    except Exception:  # the module cannot even run on this input: not this layer
        return False


def cpu_copy(module: nn.Module, values: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of a childless module whose parameters are CPU tensors holding `values`."""
    memo: dict[int, Any] = {}
    for name, p in module.named_parameters():
        memo[id(p)] = nn.Parameter(values[name].detach().clone(), requires_grad=False)
    twin = copy.deepcopy(module, memo)
    assert isinstance(twin, nn.Module)
    return twin
