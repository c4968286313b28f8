"""Function calls in a traced forward -> the spec's built-in ops and torch.nn modules.

`x + y` is `Add`, `torch.cat(xs, 1)` is `Concat(1)`, `F.gelu(x, approximate='tanh')` is
`GELU(approximate='tanh')`, `x / c` is `Scale(1 / c)`, `x.view(b, t, h, d)` of an `[b, t, h*d]`
input is `Unflatten(2, [h, d])`: sizes the module reads from its input are matched to the input's
own dimensions through the shape pass's symbolic sizes, so the op holds only the numbers that
do not depend on the input. Two idioms are folded into the ops written for them:
`torch.arange(x.shape[k])` is `Positions(k)`, and the causal mask written out
(`s.masked_fill(~torch.ones(t, t, dtype=torch.bool).tril(), float('-inf'))`) is `CausalMask`
added to `s`. A call with no rule, or an argument no op can hold (a size that depends on the
input's shape in another way, a tensor where a number belongs), is Unexpressible with the reason.
"""

from __future__ import annotations

import inspect
import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F

from lazyspec.importers import optext, reshape
from lazyspec.importers.bodies import Builder, Unexpressible
from lazyspec.importers.specdoc import Ref

Converter = Callable[[Builder, fx.Node], Ref]
TABLE: dict[Any, Converter] = {}


def _on(*targets: Any) -> Callable[[Converter], Converter]:
    """Register a converter for functions and for `Tensor` methods (given as `.name`)."""
    def register(fn: Converter) -> Converter:
        for t in targets:
            TABLE[("method", t[1:]) if isinstance(t, str) else t] = fn
        return fn
    return register


def convert(b: Builder, n: fx.Node) -> Ref:
    key = ("method", n.target) if n.op == "call_method" else n.target
    try:
        rule = TABLE.get(key)
    except TypeError:  # an unhashable target
        rule = None
    if rule is None:
        raise Unexpressible("has no spec op")
    return rule(b, n)


# --- reading arguments ---------------------------------------------------------------------------


def _bind(n: fx.Node, signature: Callable[..., None]) -> dict[str, Any]:
    """The call's arguments by name, defaults filled in."""
    try:
        bound = inspect.signature(signature).bind(*n.args, **n.kwargs)
    except TypeError as e:
        raise Unexpressible(f"is called in a form lazyspec does not read: {e}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def _call(name: str, *args: Any, **kwargs: Any) -> str:
    try:
        return optext.call(name, *args, **kwargs)
    except optext.NotWritable as e:
        raise Unexpressible(str(e)) from None


def _tensors(b: Builder, *args: Any) -> list[Ref]:
    return [b.ref(a) for a in args]


def _number(b: Builder, arg: Any, what: str) -> float | int:
    value = b.const(arg, what)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Unexpressible(f"takes {value!r} as {what}, where a number belongs")
    return value


def _dims(args: Sequence[Any]) -> list[Any]:
    """`x.permute(0, 2, 1)` and `x.permute((0, 2, 1))` alike."""
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        return list(args[0])
    return list(args)


# --- arithmetic ----------------------------------------------------------------------------------


@_on(operator.add, operator.iadd, torch.add, ".add", ".add_")
def _add(b: Builder, n: fx.Node) -> Ref:
    x, y = n.args[:2]
    if n.kwargs.get("alpha", 1) != 1:
        raise Unexpressible("with alpha has no spec op")
    if not (b.is_tensor(x) and b.is_tensor(y)):
        raise Unexpressible("adds a number to a tensor: no spec op does (Add adds tensors)")
    return b.emit("Add", _tensors(b, x, y), n.name)


@_on(operator.mul, operator.imul, torch.mul, ".mul", ".mul_")
def _mul(b: Builder, n: fx.Node) -> Ref:
    x, y = n.args[:2]
    if b.is_tensor(x) and b.is_tensor(y):
        return b.emit("Mul", _tensors(b, x, y), n.name)
    tensor, factor = (x, y) if b.is_tensor(x) else (y, x)
    return b.emit(_call("Scale", _number(b, factor, "the factor")), _tensors(b, tensor), n.name)


@_on(operator.truediv, operator.itruediv, torch.div, torch.true_divide, ".div", ".div_")
def _div(b: Builder, n: fx.Node) -> Ref:
    x, y = n.args[:2]
    if n.kwargs.get("rounding_mode") is not None or not b.is_tensor(x) or b.is_tensor(y):
        raise Unexpressible("divides in a way no spec op does (Scale divides a tensor by a "
                            "number)")
    divisor = _number(b, y, "the divisor")
    if divisor == 0:
        raise Unexpressible("divides by zero")
    return b.emit(_call("Scale", 1 / divisor), _tensors(b, x), n.name)


@_on(operator.sub, operator.isub, torch.sub, ".sub")
def _sub(b: Builder, n: fx.Node) -> Ref:
    x, y = n.args[:2]
    if not (b.is_tensor(x) and b.is_tensor(y)) or n.kwargs.get("alpha", 1) != 1:
        raise Unexpressible("subtracts a number: no spec op does")
    negated = b.emit("Scale(-1.0)", _tensors(b, y), f"{n.name}_neg")
    return b.emit("Add", [b.ref(x), negated], n.name)


@_on(operator.neg, torch.neg, ".neg")
def _neg(b: Builder, n: fx.Node) -> Ref:
    return b.emit("Scale(-1.0)", _tensors(b, n.args[0]), n.name)


@_on(operator.matmul, torch.matmul, torch.bmm, ".matmul", ".bmm")
def _matmul(b: Builder, n: fx.Node) -> Ref:
    return b.emit("MatMul", _tensors(b, *n.args[:2]), n.name)


# --- joining and splitting ----------------------------------------------------------------------


@_on(torch.cat, torch.concat, torch.concatenate)
def _cat(b: Builder, n: fx.Node) -> Ref:
    args = _bind(n, lambda tensors, dim=0, *, out=None: None)
    dim = b.const(args["dim"], "the dim")
    return b.emit(_call("Concat", dim), _tensors(b, *args["tensors"]), n.name)


@_on(torch.stack)
def _stack(b: Builder, n: fx.Node) -> Ref:
    args = _bind(n, lambda tensors, dim=0, *, out=None: None)
    dim = b.const(args["dim"], "the dim")
    parts = [b.emit(_call("Unsqueeze", dim), [b.ref(t)], f"{n.name}_{i}")
             for i, t in enumerate(args["tensors"])]
    return b.emit(_call("Concat", dim), parts, n.name)


@_on(torch.split, ".split")
def _split(b: Builder, n: fx.Node) -> Ref:
    args = _bind(n, lambda tensor, split_size, dim=0: None)
    sizes = b.const(args["split_size"], "the split sizes")
    sizes = list(sizes) if isinstance(sizes, (list, tuple)) else sizes
    outputs = len(b.value(n))
    return b.emit(_call("Split", sizes, b.const(args["dim"], "the dim")),
                  [b.ref(args["tensor"])], n.name, outputs)


@_on(torch.chunk, ".chunk")
def _chunk(b: Builder, n: fx.Node) -> Ref:
    args = _bind(n, lambda input, chunks, dim=0: None)
    return b.emit(_call("Chunk", b.const(args["chunks"], "the chunk count"),
                        b.const(args["dim"], "the dim")),
                  [b.ref(args["input"])], n.name, len(b.value(n)))


@_on(operator.getitem)
def _getitem(b: Builder, n: fx.Node) -> Ref:
    source, index = n.args
    if not b.is_tensor(source):  # an output of a node that returns several
        i = b.const(index, "the output index")
        if not isinstance(i, int):
            raise Unexpressible(f"picks {i!r} from several outputs: a spec reads `name.K`")
        ref = b.ref(source)
        if ref.output is not None:
            raise Unexpressible("reads an output of an output: a spec reads one level")
        return ref.at(i)
    return _index(b, n, source, b.const(index, "the index"))


def _index(b: Builder, n: fx.Node, source: Any, index: Any) -> Ref:
    """`x[:, 0]` is Select(1, 0), `x[..., 0]` Select(-1, 0), `x[:, None]` Unsqueeze(1)."""
    items = list(index) if isinstance(index, tuple) else [index]
    full = slice(None)
    if len(items) == 2 and items[0] is Ellipsis and isinstance(items[1], int):
        return b.emit(_call("Select", -1, items[1]), [b.ref(source)], n.name)
    if all(i == full for i in items[:-1]):
        last, dim = items[-1], len(items) - 1
        if isinstance(last, int) and not isinstance(last, bool):
            return b.emit(_call("Select", dim, last), [b.ref(source)], n.name)
        if last is None:
            return b.emit(_call("Unsqueeze", dim), [b.ref(source)], n.name)
    raise Unexpressible(f"indexes a tensor with {index!r}: the spec's ops pick one index of one "
                        "dimension (Select) or add one (Unsqueeze), they do not slice")


# --- shapes --------------------------------------------------------------------------------------


@_on(torch.flatten, ".flatten")
def _flatten(b: Builder, n: fx.Node) -> Ref:
    args = _bind(n, lambda input, start_dim=0, end_dim=-1: None)
    start, end = b.const(args["start_dim"], "start_dim"), b.const(args["end_dim"], "end_dim")
    return b.emit(optext.flatten_op(start, end), [b.ref(args["input"])], n.name)


@_on(torch.reshape, ".view", ".reshape")
def _reshape(b: Builder, n: fx.Node) -> Ref:
    x, *sizes = n.args if n.op == "call_method" else (n.args[0], *_dims(n.args[1:]))
    if "shape" in n.kwargs:
        sizes = list(_dims([n.kwargs["shape"]]))
    if len(sizes) == 1 and isinstance(sizes[0], (list, tuple)):
        sizes = list(sizes[0])
    return reshape.reshape(b, n, x, sizes)


@_on(torch.permute, ".permute")
def _permute(b: Builder, n: fx.Node) -> Ref:
    x, *rest = n.args
    dims = b.const(_dims(rest or [n.kwargs.get("dims")]), "the dims")
    return b.emit(_call("Permute", *dims), [b.ref(x)], n.name)


@_on(torch.transpose, torch.swapaxes, torch.swapdims, ".transpose", ".swapaxes", ".swapdims")
def _transpose(b: Builder, n: fx.Node) -> Ref:
    x, d0, d1 = n.args[:3]
    return b.emit(_call("Transpose", b.const(d0, "dim0"), b.const(d1, "dim1")), [b.ref(x)],
                  n.name)


@_on(torch.t, ".t")
def _t(b: Builder, n: fx.Node) -> Ref:
    x = n.args[0]
    if b.value(x).dim() < 2:
        return b.ref(x)
    return b.emit("Transpose(0, 1)", [b.ref(x)], n.name)


@_on(getattr)
def _attribute(b: Builder, n: fx.Node) -> Ref:
    x, name = n.args[:2]
    if (name == "T" and b.value(x).dim() == 2) or name == "mT":
        return b.emit("Transpose(0, 1)" if name == "T" else "Transpose(-2, -1)", [b.ref(x)],
                      n.name)
    raise Unexpressible(f"reads the tensor attribute '{name}': no spec op does")


@_on(torch.unsqueeze, ".unsqueeze")
def _unsqueeze(b: Builder, n: fx.Node) -> Ref:
    return b.emit(_call("Unsqueeze", b.const(n.args[1], "the dim")), [b.ref(n.args[0])],
                  n.name)


@_on(torch.squeeze, ".squeeze")
def _squeeze(b: Builder, n: fx.Node) -> Ref:
    if len(n.args) < 2 or isinstance(n.args[1], (list, tuple)):
        raise Unexpressible("without one dim has no spec op (Squeeze takes one dim)")
    return b.emit(_call("Squeeze", b.const(n.args[1], "the dim")), [b.ref(n.args[0])], n.name)


@_on(torch.select, ".select")
def _select(b: Builder, n: fx.Node) -> Ref:
    x, dim, index = n.args[:3]
    return b.emit(_call("Select", b.const(dim, "the dim"), b.const(index, "the index")),
                  [b.ref(x)], n.name)


@_on(".expand")
def _expand(b: Builder, n: fx.Node) -> Ref:
    """`token.expand(b, -1, -1)` is `ExpandAs(0)` against a tensor of the same rank whose first
    dimension is b (ViT's class token against the patch sequence)."""
    x, *sizes = n.args
    sizes = _dims(sizes or [n.kwargs.get("size")])
    own = [reshape.size_expr(b, d) for d in b.value(x).shape]
    if len(sizes) != len(own):
        raise Unexpressible("adds dimensions: ExpandAs keeps the rank")
    wanted = {}
    for i, s in enumerate(sizes):
        value = b.value(s)
        if not (isinstance(value, int) and value == -1) and \
                not reshape.same(reshape.size_expr(b, value), own[i]):
            wanted[i] = reshape.size_expr(b, value)
    if not wanted:
        return b.ref(x)
    other = reshape.tensor_with(b, n, len(own), wanted)
    return b.emit(_call("ExpandAs", *sorted(wanted)), [b.ref(x), b.ref(other)], n.name)


@_on(".expand_as")
def _expand_as(b: Builder, n: fx.Node) -> Ref:
    return b.emit("ExpandAs", _tensors(b, *n.args[:2]), n.name)


@_on(torch.roll, ".roll")
def _roll(b: Builder, n: fx.Node) -> Ref:
    args = _bind(n, lambda input, shifts, dims=None: None)
    if args["dims"] is None:
        raise Unexpressible("without dims has no spec op (Roll takes dims)")
    shifts, dims = b.const(args["shifts"], "the shifts"), b.const(args["dims"], "the dims")
    listed = [list(v) if isinstance(v, tuple) else v for v in (shifts, dims)]
    return b.emit(_call("Roll", *listed), [b.ref(args["input"])], n.name)


@_on(".contiguous", torch.clone, ".clone", ".detach", torch.detach)
def _same_tensor(b: Builder, n: fx.Node) -> Ref:
    return b.ref(n.args[0])  # the same values: nothing to write


@_on(".to", ".float", ".type_as", ".half", ".double", ".bfloat16")
def _cast(b: Builder, n: fx.Node) -> Ref:
    x = n.args[0]
    before, after = b.value(x), b.value(n)
    if before.dtype != after.dtype or before.device != after.device:
        raise Unexpressible(f"changes the dtype from {before.dtype} to {after.dtype}: no spec "
                            "op does (--dtype sets one dtype for the model)")
    return b.ref(x)


@_on(".repeat_interleave", torch.repeat_interleave)
def _repeat_interleave(b: Builder, n: fx.Node) -> Ref:
    repeats = b.const(n.args[1] if len(n.args) > 1 else n.kwargs.get("repeats"), "repeats")
    if repeats == 1:
        return b.ref(n.args[0])  # one copy of each: the same tensor
    raise Unexpressible("has no spec op (for grouped-query attention, call "
                        "F.scaled_dot_product_attention(..., enable_gqa=True), which a spec "
                        "writes as ScaledDotProductAttention(enable_gqa=true))")


# --- reductions, attention, positions -----------------------------------------------------------


@_on(torch.mean, ".mean")
def _mean(b: Builder, n: fx.Node) -> Ref:
    args = _bind(n, lambda input, dim=None, keepdim=False, *, dtype=None: None)
    dim = b.const(args["dim"], "the dim")
    if dim is None or args["dtype"] is not None:
        raise Unexpressible("over all dimensions, or with a dtype, has no spec op (Mean "
                            "takes dims)")
    dim = list(dim) if isinstance(dim, tuple) else dim
    keep = b.const(args["keepdim"], "keepdim")
    op = _call("Mean", dim, keepdim=True) if keep else _call("Mean", dim)
    return b.emit(op, [b.ref(args["input"])], n.name)


def _sdpa_signature(query: Any, key: Any, value: Any, attn_mask: Any = None,
                    dropout_p: float = 0.0, is_causal: bool = False, scale: Any = None,
                    enable_gqa: bool = False) -> None:
    """F.scaled_dot_product_attention's arguments."""


@_on(F.scaled_dot_product_attention)
def _sdpa(b: Builder, n: fx.Node) -> Ref:
    args = _bind(n, _sdpa_signature)
    kwargs = {}
    for name, spec_name, default in (("is_causal", "is_causal", False),
                                     ("dropout_p", "dropout", 0.0), ("scale", "scale", None),
                                     ("enable_gqa", "enable_gqa", False)):
        value = b.const(args[name], name)
        if value != default:
            kwargs[spec_name] = value
    inputs = _tensors(b, args["query"], args["key"], args["value"])
    if args["attn_mask"] is not None:
        inputs.append(b.ref(args["attn_mask"]))
    return b.emit(_call("ScaledDotProductAttention", **kwargs), inputs, n.name)


@_on(torch.arange)
def _arange(b: Builder, n: fx.Node) -> Ref:
    """`torch.arange(x.shape[k])` (int64, from 0) is `Positions(k)` on x."""
    args = list(n.args)
    if len(args) != 1 or n.kwargs.get("dtype") not in (None, torch.long):
        raise Unexpressible("has no spec op but in the form torch.arange(x.shape[k]), which is "
                            "Positions(k)")
    source, dim = reshape.dimension_of(b, args[0])
    return b.emit("Positions" if dim == 1 else _call("Positions", dim), [b.ref(source)], n.name)


@_on(".masked_fill", torch.masked_fill)
def _masked_fill(b: Builder, n: fx.Node) -> Ref:
    """A causal mask filled with -inf: `CausalMask` of the tensor whose dimension 1 gave its
    size, added to the scores. Other masks have no spec op."""
    scores, mask, value = n.args[:3]
    fill = b.const(value, "the fill value")
    if not isinstance(fill, float) or not (fill == -math.inf or fill <= -1e30):
        raise Unexpressible("with a value other than -inf has no spec op")
    size = reshape.causal_size(b, mask)
    source, dim = reshape.dimension_of(b, size)
    if dim != 1 or not b.value(source).dtype.is_floating_point:
        raise Unexpressible("fills a causal mask whose size is not dimension 1 of a float "
                            "tensor: CausalMask takes its size there")
    causal = b.emit("CausalMask", [b.ref(source)], f"{n.name}_causal")
    return b.emit("Add", [b.ref(scores), causal], n.name)


# --- activations and other layers as functions ---------------------------------------------------

_REQUIRED = inspect.Parameter.empty


def _signature(*params: tuple[str, Any]) -> inspect.Signature:
    """`input` and then these (name, default) arguments."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter("input", kind),
                              *(inspect.Parameter(n, kind, default=d) for n, d in params)])


_POOL = (("kernel_size", _REQUIRED), ("stride", None), ("padding", 0))
_MAX_POOL = _signature(*_POOL, ("dilation", 1), ("ceil_mode", False), ("return_indices", False))
_AVG_POOL = _signature(*_POOL, ("ceil_mode", False), ("count_include_pad", True),
                       ("divisor_override", None))
_INPLACE = _signature(("inplace", False))
_SOFTMAX = _signature(("dim", None), ("_stacklevel", 3), ("dtype", None))
_ADAPTIVE = _signature(("output_size", _REQUIRED))
# function (or ("method", name)) -> (torch.nn class, its arguments, those the class takes: the
# others must keep their defaults). `training` of F.dropout is the module's mode, which the
# Dropout layer has too.
_LAYERS: dict[Any, tuple[str, inspect.Signature, tuple[str, ...]]] = {
    F.relu: ("ReLU", _INPLACE, ("inplace",)), F.relu6: ("ReLU6", _INPLACE, ("inplace",)),
    F.silu: ("SiLU", _INPLACE, ("inplace",)), F.mish: ("Mish", _INPLACE, ("inplace",)),
    F.hardswish: ("Hardswish", _INPLACE, ("inplace",)),
    F.hardsigmoid: ("Hardsigmoid", _INPLACE, ("inplace",)),
    F.gelu: ("GELU", _signature(("approximate", "none")), ("approximate",)),
    F.elu: ("ELU", _signature(("alpha", 1.0), ("inplace", False)), ("alpha", "inplace")),
    F.leaky_relu: ("LeakyReLU", _signature(("negative_slope", 0.01), ("inplace", False)),
                   ("negative_slope", "inplace")),
    F.softplus: ("Softplus", _signature(("beta", 1.0), ("threshold", 20.0)),
                 ("beta", "threshold")),
    F.hardtanh: ("Hardtanh", _signature(("min_val", -1.0), ("max_val", 1.0),
                                        ("inplace", False)), ("min_val", "max_val", "inplace")),
    F.sigmoid: ("Sigmoid", _signature(), ()), F.tanh: ("Tanh", _signature(), ()),
    F.softmax: ("Softmax", _SOFTMAX, ("dim",)), F.log_softmax: ("LogSoftmax", _SOFTMAX, ("dim",)),
    F.glu: ("GLU", _signature(("dim", -1)), ("dim",)),
    F.dropout: ("Dropout", _signature(("p", 0.5), ("training", True), ("inplace", False)),
                ("p", "inplace")),
    F.adaptive_avg_pool1d: ("AdaptiveAvgPool1d", _ADAPTIVE, ("output_size",)),
    F.adaptive_avg_pool2d: ("AdaptiveAvgPool2d", _ADAPTIVE, ("output_size",)),
    F.adaptive_avg_pool3d: ("AdaptiveAvgPool3d", _ADAPTIVE, ("output_size",)),
    F.pixel_shuffle: ("PixelShuffle", _signature(("upscale_factor", _REQUIRED)),
                      ("upscale_factor",)),
    F.interpolate: ("Upsample", _signature(
        ("size", None), ("scale_factor", None), ("mode", "nearest"), ("align_corners", None),
        ("recompute_scale_factor", None), ("antialias", False)),
        ("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor")),
    F.max_pool1d: ("MaxPool1d", _MAX_POOL, tuple(_MAX_POOL.parameters)[1:]),
    F.max_pool2d: ("MaxPool2d", _MAX_POOL, tuple(_MAX_POOL.parameters)[1:]),
    F.max_pool3d: ("MaxPool3d", _MAX_POOL, tuple(_MAX_POOL.parameters)[1:]),
    F.avg_pool1d: ("AvgPool1d", _AVG_POOL, tuple(_AVG_POOL.parameters)[1:]),
    F.avg_pool2d: ("AvgPool2d", _AVG_POOL, tuple(_AVG_POOL.parameters)[1:]),
    F.avg_pool3d: ("AvgPool3d", _AVG_POOL, tuple(_AVG_POOL.parameters)[1:]),
    torch.relu: ("ReLU", _signature(), ()), torch.sigmoid: ("Sigmoid", _signature(), ()),
    torch.tanh: ("Tanh", _signature(), ()),
    torch.softmax: ("Softmax", _signature(("dim", _REQUIRED), ("dtype", None)), ("dim",)),
    torch.log_softmax: ("LogSoftmax", _signature(("dim", _REQUIRED), ("dtype", None)),
                        ("dim",)),
    ("method", "relu"): ("ReLU", _signature(), ()),
    ("method", "sigmoid"): ("Sigmoid", _signature(), ()),
    ("method", "tanh"): ("Tanh", _signature(), ()),
    ("method", "softmax"): ("Softmax", _signature(("dim", _REQUIRED), ("dtype", None)),
                            ("dim",)),
    ("method", "log_softmax"): ("LogSoftmax", _signature(("dim", _REQUIRED), ("dtype", None)),
                                ("dim",)),
}
_IGNORED = frozenset({"_stacklevel", "training"})


def _functional(b: Builder, n: fx.Node) -> Ref:
    layer, signature, taken = _LAYERS[("method", n.target) if n.op == "call_method"
                                      else n.target]
    try:
        bound = signature.bind(*n.args, **n.kwargs)
    except TypeError as e:
        raise Unexpressible(f"is called in a form lazyspec does not read: {e}") from None
    bound.apply_defaults()
    kwargs: dict[str, Any] = {}
    for name, arg in list(bound.arguments.items())[1:]:
        value = b.const(arg, f"'{name}'")
        if name in taken:
            kwargs[name] = value
        elif name not in _IGNORED and value != signature.parameters[name].default:
            raise Unexpressible(f"with {name}={value!r} has no spec op")
    return b.emit(_layer_text(layer, kwargs), [b.ref(bound.arguments["input"])], n.name)


def _layer_text(layer: str, kwargs: dict[str, Any]) -> str:
    """The layer's call, leaving out arguments at the class's defaults."""
    cls = getattr(torch.nn, layer)
    defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
    kept = {k: v for k, v in kwargs.items()
            if not (k in defaults and type(v) is type(defaults[k]) and v == defaults[k])}
    return _call(layer, **kept)


for _key in _LAYERS:
    TABLE[_key] = _functional
