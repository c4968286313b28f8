"""Free tensors a spec declares itself: learned `Parameter(...)` nodes and constant `Buffer(...)`
nodes, registered on the module of their node list under the node's own name, so the state-dict
key is exactly the node's path (`class_token`, `encoder.pos_embedding`), as `nn.Parameter`
attributes are in hand-written PyTorch.

    - class_token: Parameter(1, 1, d)                         # zeros, trainable
    - pos_embedding: Parameter(1, n + 1, d, init='normal:0.02')
    - layer_scale: Parameter(None, 1, 1, init='constant:1e-6') # [C, 1, 1]: C from the input
    - relative_position_index: Buffer('relative_position_index', [7, 7])

A dimension written `None` is taken from the node's input, aligned from the right as
broadcasting aligns shapes: `Parameter(None, 1, 1)` on a `[N, C, H, W]` input is `[C, 1, 1]`.
The buffer schemes below are plain torch functions; `export --to pytorch` copies their source, so
the exported module computes the same values.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

# Ops the compiler makes into tensor nodes (a spec block of the same name wins, as for any op).
TENSOR_OPS = ("Parameter", "Buffer")

# Parameter(init=...): name -> the number it takes (None: none), as `export --init` reads them.
INITS: dict[str, float | None] = {"zeros": None, "ones": None, "normal": 0.02,
                                  "trunc_normal": 0.02, "uniform": 0.05, "constant": 0.0}


@dataclass(frozen=True)
class TensorDecl:
    """One declared tensor, as the compiler read it from the node."""

    name: str  # its attribute on the node list's module: the last part of its path
    kind: str  # "parameter" or "buffer"
    shape: tuple[int | None, ...]  # parameter: None is taken from the input; buffer: its size
    init: str = "zeros"  # parameter: how export --to state-dict (and a real build) fills it
    trainable: bool = True
    scheme: str | None = None  # buffer: which function computes it
    args: tuple[Any, ...] = ()  # buffer: the scheme's arguments
    persistent: bool = True  # buffer: in the state dict
    elements: int = 0  # buffer: how many elements its scheme makes

    @property
    def lazy(self) -> bool:
        return any(d is None for d in self.shape)

    def shape_for(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """The full shape once the input is known: None dims from the input, right-aligned."""
        if len(input_shape) < len(self.shape):
            raise ValueError(f"Parameter{_dims(self.shape)} takes its unknown sizes from its "
                             f"input, but the input {list(input_shape)} has fewer dimensions")
        tail = list(input_shape)[len(input_shape) - len(self.shape):]
        return tuple(t if d is None else d for d, t in zip(self.shape, tail, strict=True))


def _dims(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


# --- Parameter(...) and Buffer(...) as ops: their signatures, checked like any op's ---------------


def parameter_signature(*shape: int | None, init: str = "zeros",
                        trainable: bool = True) -> None:
    """`Parameter(*shape, init='zeros', trainable=True)`."""


def buffer_signature(scheme: str, *args: Any, persistent: bool = True) -> None:
    """`Buffer(scheme, *args, persistent=True)`."""


SIGNATURES: dict[str, Callable[..., None]] = {"Parameter": parameter_signature,
                                              "Buffer": buffer_signature}


def parse_init(text: str) -> tuple[str, float | None]:
    """`zeros`, `normal:0.02`, `constant:1e-6` -> (scheme, value); ValueError names the choices."""
    name, sep, raw = str(text).partition(":")
    if name not in INITS:
        raise ValueError(f"unknown init '{text}'; choose one of: "
                         + ", ".join(f"{n}:{v}" if v is not None else n for n, v in INITS.items()))
    if not sep:
        return name, INITS[name]
    if INITS[name] is None:
        raise ValueError(f"init '{name}' takes no value (got '{text}')")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f"init '{text}': the value after ':' must be a finite number")
    return name, value


def initialise(tensor: torch.Tensor, init: str) -> None:
    """Fill a parameter by its declared init (nothing to fill on `meta`)."""
    if tensor.device.type == "meta":
        return
    name, value = parse_init(init)
    with torch.no_grad():
        if name == "zeros":
            nn.init.zeros_(tensor)
        elif name == "ones":
            nn.init.ones_(tensor)
        elif name == "normal":
            nn.init.normal_(tensor, 0.0, value or 0.0)
        elif name == "trunc_normal":
            std = value or 0.0
            nn.init.trunc_normal_(tensor, 0.0, std, -2 * std, 2 * std)
        elif name == "uniform":
            nn.init.uniform_(tensor, -(value or 0.0), value or 0.0)
        else:
            nn.init.constant_(tensor, value or 0.0)


def init_code(target: str, init: str) -> str:
    """The PyTorch statement that fills `target` (a parameter expression) by `init`."""
    name, value = parse_init(init)
    if name in ("zeros", "ones"):
        return f"nn.init.{name}_({target})"
    if name == "normal":
        return f"nn.init.normal_({target}, 0.0, {value!r})"
    if name == "trunc_normal":
        return f"nn.init.trunc_normal_({target}, 0.0, {value!r}, {-2 * (value or 0)!r}, " \
               f"{2 * (value or 0)!r})"
    if name == "uniform":
        return f"nn.init.uniform_({target}, {-(value or 0)!r}, {value!r})"
    return f"nn.init.constant_({target}, {value!r})"


# --- buffer schemes: plain torch functions (export copies their source) ---------------------------


def relative_position_index(size: Sequence[int]) -> torch.Tensor:
    """Swin's relative position index for a window of `size` (h, w): for every pair of tokens
    in the window, the row of the bias table holding their relative position; flattened to
    `[h * w * h * w]`, as torchvision's `define_relative_position_index` registers it."""
    h, w = int(size[0]), int(size[1])
    coords = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"))
    flat = torch.flatten(coords, 1)  # (2, h*w)
    relative = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
    relative[:, :, 0] += h - 1  # shift to start from 0
    relative[:, :, 1] += w - 1
    relative[:, :, 0] *= 2 * w - 1
    return relative.sum(-1).flatten()  # (h*w*h*w,)


def arange(n: int) -> torch.Tensor:
    """0, 1, ..., n-1 as int64."""
    return torch.arange(int(n), dtype=torch.long)


def causal_mask(n: int) -> torch.Tensor:
    """`[n, n]` bool, True on and below the diagonal: where a position may attend."""
    return torch.tril(torch.ones(int(n), int(n), dtype=torch.bool))


def zeros(shape: Sequence[int]) -> torch.Tensor:
    """Zeros of `shape` (float32)."""
    return torch.zeros([int(d) for d in shape])


def ones(shape: Sequence[int]) -> torch.Tensor:
    """Ones of `shape` (float32)."""
    return torch.ones([int(d) for d in shape])


BUFFER_SCHEMES: dict[str, Callable[..., torch.Tensor]] = {
    f.__name__: f for f in (relative_position_index, arange, causal_mask, zeros, ones)}

# How many elements each scheme makes, from its arguments: checked before it runs.
BUFFER_SIZES: dict[str, Callable[..., int]] = {
    "relative_position_index": lambda size: math.prod(int(d) for d in size) ** 2,
    "arange": lambda n: int(n),
    "causal_mask": lambda n: int(n) ** 2,
    "zeros": lambda shape: math.prod(int(d) for d in shape),
    "ones": lambda shape: math.prod(int(d) for d in shape),
}

MAX_BUFFER_ELEMENTS = 2**24  # a buffer is computed for real on a real device: keep it small
# ... and all of a model's buffers together (copies of a repeated block each hold their own):
# Swin-T's 12 relative position indexes hold 28,812; four buffers of the largest size fit.
MAX_MODEL_BUFFER_ELEMENTS = 2**26
MAX_TENSOR_DIM = 2**40


# --- from a node's arguments to a tensor ----------------------------------------------------------


def declare(op: str, name: str, arguments: dict[str, Any]) -> TensorDecl:
    """The TensorDecl of a `Parameter(...)` or `Buffer(...)` node from its bound arguments;
    ValueError says what is wrong with them."""
    if op == "Parameter":
        shape = tuple(arguments["shape"])
        for d in shape:
            if d is not None and (not isinstance(d, int) or isinstance(d, bool)
                                  or not 0 <= d <= MAX_TENSOR_DIM):
                raise ValueError(f"each size is a whole number from 0 to 2**40 or None (taken "
                                 f"from the input), got {d!r}")
        parse_init(arguments["init"])
        if not isinstance(arguments["trainable"], bool):
            raise ValueError("trainable must be true or false")
        return TensorDecl(name, "parameter", shape, arguments["init"], arguments["trainable"])
    scheme, args = arguments["scheme"], tuple(arguments["args"])
    if scheme not in BUFFER_SCHEMES:
        raise ValueError(f"unknown buffer scheme {scheme!r}; choose one of: "
                         + ", ".join(BUFFER_SCHEMES))
    try:
        inspect.signature(BUFFER_SCHEMES[scheme]).bind(*args)
        size = BUFFER_SIZES[scheme](*args)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{scheme}{_dims(args)}: {e}") from None
    if size > MAX_BUFFER_ELEMENTS:
        raise ValueError(f"{scheme} would make {size:,} elements (limit: "
                         f"{MAX_BUFFER_ELEMENTS:,})")
    if not isinstance(arguments["persistent"], bool):
        raise ValueError("persistent must be true or false")
    return TensorDecl(name, "buffer", (), scheme=scheme, args=args,
                      persistent=arguments["persistent"], elements=size)


def make_tensor(decl: TensorDecl, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The declared tensor on `device`: a parameter in `dtype`, filled by its init (an
    uninitialised one when a size comes from the input), or the buffer its scheme computes
    (floating buffers in `dtype`)."""
    if decl.kind == "parameter":
        if decl.lazy:
            return nn.parameter.UninitializedParameter(  # type: ignore[call-arg]
                requires_grad=decl.trainable, device=device, dtype=dtype)
        shape = tuple(d for d in decl.shape if d is not None)
        param = nn.Parameter(torch.empty(shape, device=device, dtype=dtype),
                             requires_grad=decl.trainable)
        initialise(param, decl.init)
        return param
    assert decl.scheme is not None
    # On `meta` (the default dry run) the scheme runs on `meta` too: the same shape and dtype,
    # and nothing computed (a [4096, 4096] relative position index takes 0.85 s for real).
    with torch.device("meta") if device.type == "meta" else contextlib.nullcontext():
        value = BUFFER_SCHEMES[decl.scheme](*decl.args)
    if value.dtype.is_floating_point:
        value = value.to(dtype)
    return value.to(device)
