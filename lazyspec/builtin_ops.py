"""The built-in ops: small nn.Modules for the data flow that torch.nn has no module for.

Each op is one class; BUILTIN_OPS lists them, so adding an op is one class, one entry, one test.
An op whose computation is more than one torch call keeps it in a module-level function (or, with
parameters, in its class) that uses only torch, nn, F and math: `export --to pytorch` copies that
source into the code it writes. The classes check their inputs and raise OpInputError, whose
message says what the op expected; the copied functions do not check.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class OpInputError(ValueError):
    """A built-in op got inputs it cannot take; the message says what it expected, `what` names
    the kind of problem in the diagnostic's headline."""

    def __init__(self, message: str, hint: str | None = None, what: str = "shape mismatch"):
        super().__init__(message)
        self.hint, self.what = hint, what


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integers(op: str, values: dict[str, Any], lists: bool = False) -> None:
    """Construction-time check of index and dimension arguments: ints (or lists of ints)."""
    for name, value in values.items():
        items = value if lists and isinstance(value, (list, tuple)) else [value]
        if not items or not all(_is_int(v) for v in items):
            kind = "an integer or a list of integers" if lists else "an integer"
            raise ValueError(f"{op}: {name} must be {kind}, got {value!r}")


def _dtype(x: torch.Tensor) -> str:
    return str(x.dtype).removeprefix("torch.")


def _rank4(op: str, name: str, x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise OpInputError(f"{op} expects {name} [B, H, W, C] (4-d, channels last), got "
                           f"{x.dim()}-d {list(x.shape)}",
                           "Swin's stages work on [B, H, W, C]: Permute(0, 2, 3, 1) a [B, C, H, W] "
                           "feature map, Unflatten a [B, H*W, C] sequence")


class Add(nn.Module):
    """Element-wise sum of all inputs (broadcasting)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Mul(nn.Module):
    """Element-wise product of all inputs (broadcasting)."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out


class Concat(nn.Module):
    """`torch.cat` of the inputs along `dim`."""

    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Chunk(nn.Module):
    """`torch.chunk` into n pieces: a tuple, read downstream as `name.0`, `name.1`, ..."""

    def __init__(self, n: int, dim: int = -1):
        super().__init__()
        self.n, self.dim = n, dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.chunk(x, self.n, dim=self.dim)

    def extra_repr(self) -> str:
        return f"n={self.n}, dim={self.dim}"


class Split(nn.Module):
    """`torch.split` by sizes (an int or a list): a tuple, read as `name.0`, `name.1`, ..."""

    def __init__(self, sizes: int | list[int], dim: int = -1):
        super().__init__()
        self.sizes, self.dim = sizes, dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.split(x, self.sizes, dim=self.dim)

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, dim={self.dim}"


class Reshape(nn.Module):
    """`torch.reshape` to a whole shape (batch included); -1 infers one dimension."""

    def __init__(self, *shape: int):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.reshape(x, self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class Permute(nn.Module):
    """`torch.permute` of all dimensions."""

    def __init__(self, *dims: int):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class Transpose(nn.Module):
    """`torch.transpose` of two dimensions."""

    def __init__(self, a: int, b: int):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(self.a, self.b)

    def extra_repr(self) -> str:
        return f"{self.a}, {self.b}"


class MatMul(nn.Module):
    """Matrix product of two inputs."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class Mean(nn.Module):
    """Mean over `dim` (an int or a list of ints)."""

    def __init__(self, dim: int | list[int], keepdim: bool = False):
        super().__init__()
        self.dim = tuple(dim) if isinstance(dim, (list, tuple)) else dim
        self.keepdim = keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=self.dim, keepdim=self.keepdim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, keepdim={self.keepdim}"


class ScaledDotProductAttention(nn.Module):
    """`F.scaled_dot_product_attention(q, k, v)` with its keyword arguments; an optional fourth
    input is the attention mask (bool, True = attend, or a float bias added to the scores)."""

    def __init__(self, is_causal: bool = False, dropout: float = 0.0, scale: float | None = None,
                 enable_gqa: bool = False):
        super().__init__()
        self.is_causal, self.dropout, self.scale = is_causal, dropout, scale
        self.enable_gqa = enable_gqa

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        kwargs: dict[str, Any] = {"is_causal": self.is_causal, "scale": self.scale,
                                  "dropout_p": self.dropout if self.training else 0.0}
        if mask is not None:
            if self.is_causal:  # torch rejects it on some devices only: reject it everywhere
                raise OpInputError(
                    "ScaledDotProductAttention(is_causal=true) takes three inputs (q, k, v): "
                    "torch cannot combine a mask with is_causal",
                    "set is_causal=false and add CausalMask to the mask (as T5's decoder does), "
                    "or drop the fourth input", what="wrong inputs")
            if mask.dtype != torch.bool and not mask.dtype.is_floating_point:
                raise OpInputError(
                    f"ScaledDotProductAttention's mask (its fourth input) must be bool (True = "
                    f"attend) or a float bias, but it has dtype {_dtype(mask)}",
                    what="dtype mismatch")
            kwargs["attn_mask"] = mask
        if self.enable_gqa:  # only newer torch knows the argument; pass it only when asked
            kwargs["enable_gqa"] = True
        return F.scaled_dot_product_attention(q, k, v, **kwargs)

    def extra_repr(self) -> str:
        return f"is_causal={self.is_causal}, dropout={self.dropout}, scale={self.scale}"


class Positions(nn.Module):
    """Positions 0..T-1 along dimension `dim` of the input ([B, T] or [B, T, C] with the default
    dim=1), as an int64 tensor of shape [T]."""

    def __init__(self, dim: int = 1):
        super().__init__()
        _integers("Positions", {"dim": dim})
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.arange(x.shape[self.dim], dtype=torch.long, device=x.device)  # [T]

    def value_range(self, x: torch.Tensor) -> tuple[int, int]:
        """The values it returns, 0 .. T-1: the dry run checks them against an Embedding."""
        return (0, int(x.shape[self.dim]))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Scale(nn.Module):
    """Multiplication by a constant factor (Swin's query scaling, T5's `d_model ** -0.5`)."""

    def __init__(self, factor: float):
        super().__init__()
        if isinstance(factor, bool) or not isinstance(factor, (int, float)):
            raise ValueError(f"Scale: factor must be a number, got {factor!r}")
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


def _ints(value: int | list[int] | tuple[int, ...]) -> int | tuple[int, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else value


class Roll(nn.Module):
    """`torch.roll` by `shifts` along `dims` (ints, or lists of the same length)."""

    def __init__(self, shifts: int | list[int], dims: int | list[int]):
        super().__init__()
        _integers("Roll", {"shifts": shifts, "dims": dims}, lists=True)
        self.shifts, self.dims = _ints(shifts), _ints(dims)
        n_shifts = len(self.shifts) if isinstance(self.shifts, tuple) else None
        n_dims = len(self.dims) if isinstance(self.dims, tuple) else None
        if n_shifts != n_dims:
            raise ValueError(f"Roll: shifts and dims must both be integers or lists of the same "
                             f"length, got shifts={shifts!r}, dims={dims!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.roll(x, self.shifts, self.dims)

    def extra_repr(self) -> str:
        return f"shifts={self.shifts}, dims={self.dims}"


def expand_as_dims(x: torch.Tensor, other: torch.Tensor,
                   dims: tuple[int, ...]) -> torch.Tensor:
    """x expanded to other's sizes along `dims`; along every dimension when `dims` is empty."""
    if not dims:
        return x.expand_as(other)
    sizes = [-1] * x.dim()
    for d in dims:
        sizes[d] = other.shape[d]
    return x.expand(sizes)


class ExpandAs(nn.Module):
    """The first input expanded to the second's sizes along `dims` (all when none are given):
    ViT's class token [1, 1, d] with `ExpandAs(0)` against [B, N, d] is [B, 1, d]."""

    def __init__(self, *dims: int):
        super().__init__()
        _integers("ExpandAs", {f"dims[{i}]": d for i, d in enumerate(dims)})
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        if self.dims and x.dim() != other.dim():
            raise OpInputError(f"{self} needs two inputs of the same rank, got "
                               f"{list(x.shape)} and {list(other.shape)}",
                               "Unsqueeze the first input to the rank of the second")
        bad = [d for d in self.dims if not -x.dim() <= d < x.dim()]
        if bad:
            raise OpInputError(f"{self}: the inputs {list(x.shape)} and "
                               f"{list(other.shape)} have no dimension {bad[0]}")
        return expand_as_dims(x, other, self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"

    def __str__(self) -> str:
        return f"ExpandAs({', '.join(map(str, self.dims))})"


class Select(nn.Module):
    """`x.select(dim, index)`: one index of one dimension, which goes (ViT's `x[:, 0]`)."""

    def __init__(self, dim: int, index: int):
        super().__init__()
        _integers("Select", {"dim": dim, "index": index})
        self.dim, self.index = dim, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.select(self.dim, self.index)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, index={self.index}"


class Unsqueeze(nn.Module):
    """`x.unsqueeze(dim)`: a new dimension of size 1 at `dim`."""

    def __init__(self, dim: int):
        super().__init__()
        _integers("Unsqueeze", {"dim": dim})
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Squeeze(nn.Module):
    """`x.squeeze(dim)`: removes dimension `dim` if its size is 1 (as torch, else no change)."""

    def __init__(self, dim: int):
        super().__init__()
        _integers("Squeeze", {"dim": dim})
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.squeeze(self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


def index_table(table: torch.Tensor, index: torch.Tensor, dim: int) -> torch.Tensor:
    """table gathered at dimension `dim` by an integer index tensor of any shape, which takes
    the place of that dimension (Swin: table [169, heads], index [2401] -> [2401, heads])."""
    d = dim % table.dim() if table.dim() else dim
    out = table.index_select(d, index.reshape(-1))
    return out.reshape(*table.shape[:d], *index.shape, *table.shape[d + 1:])


class Index(nn.Module):
    """Two inputs (table, index): `table.index_select(dim, index.flatten())`, unflattened to the
    index's shape at `dim`."""

    def __init__(self, dim: int = 0):
        super().__init__()
        _integers("Index", {"dim": dim})
        self.dim = dim

    def forward(self, table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        if index.dtype not in (torch.int64, torch.int32):
            raise OpInputError(f"Index needs an integer index (int64 or int32) as its second "
                               f"input, but it has dtype {_dtype(index)}",
                               "give it `in: [table, index]` with an integer index: a Buffer "
                               "of dtype int64, or an input declared with `dtype: int64`",
                               what="dtype mismatch")
        if not -table.dim() <= self.dim < table.dim():
            raise OpInputError(f"Index(dim={self.dim}) needs a table with dimension {self.dim}, "
                               f"but the table (its first input) is {list(table.shape)}")
        return index_table(table, index, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LayerNorm2d(nn.LayerNorm):
    """torchvision's channels-first LayerNorm (ConvNeXt): [B, C, H, W] normalised over C, with
    nn.LayerNorm's parameters `weight` and `bias`."""

    def __init__(self, num_channels: int, eps: float = 1e-6, elementwise_affine: bool = True,
                 device: Any = None, dtype: Any = None):
        super().__init__(num_channels, eps=eps, elementwise_affine=elementwise_affine,
                         device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def _positive(op: str, **values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{op}: {name} must be a positive integer, got {value!r}")


def pad_hw(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """x [..., H, W, C] with pad_h rows and pad_w columns of zeros added at the end: torchvision's
    F.pad(x, (0, 0, 0, pad_w, 0, pad_h)), as a concatenation (which symbolic sizes allow)."""
    *lead, h, w, c = x.shape
    x = torch.cat([x, x.new_zeros(*lead, pad_h, w, c)], dim=-3)
    return torch.cat([x, x.new_zeros(*lead, h + pad_h, pad_w, c)], dim=-2)


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """[B, H, W, C] -> [B, nW, window * window, C]: H and W padded at the end to multiples of
    the window (as torchvision's shifted_window_attention), then cut into windows row by row."""
    b, h, w, c = x.shape
    # Windows per column and row, rounded up; the padding is torchvision's
    # (window - h % window) % window, written so that symbolic sizes simplify.
    nh, nw = -(-h // window), -(-w // window)
    x = pad_hw(x, nh * window - h, nw * window - w)
    x = x.view(b, nh, window, nw, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, nh * nw, window * window, c)


def window_merge(windows: torch.Tensor, x: torch.Tensor, window: int) -> torch.Tensor:
    """The inverse of window_partition: windows [B, nW, window * window, C] back to
    [B, H, W, C], H and W those of the reference x (the padding cropped)."""
    b, h, w = x.shape[0], x.shape[1], x.shape[2]
    nh, nw = -(-h // window), -(-w // window)
    c = windows.shape[-1]
    out = windows.reshape(b, nh, nw, window, window, c).permute(0, 1, 3, 2, 4, 5)
    out = out.reshape(b, nh * window, nw * window, c)
    return out.narrow(1, 0, h).narrow(2, 0, w)  # torchvision: [:, :H, :W, :]


class WindowPartition(nn.Module):
    """[B, H, W, C] -> [B, nW, window * window, C] (Swin's windows; B stays apart)."""

    def __init__(self, window: int):
        super().__init__()
        _positive("WindowPartition", window=window)
        self.window = window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _rank4("WindowPartition", "an input", x)
        return window_partition(x, self.window)

    def extra_repr(self) -> str:
        return f"window={self.window}"


class WindowMerge(nn.Module):
    """Two inputs (windows [B, nW, window * window, C], x [B, H, W, C]) -> [B, H, W, C]: the
    inverse of WindowPartition, with the H and W of x."""

    def __init__(self, window: int):
        super().__init__()
        _positive("WindowMerge", window=window)
        self.window = window

    def forward(self, windows: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        _rank4("WindowMerge", "its second input x", x)
        b, h, w, w_ = x.shape[0], x.shape[1], x.shape[2], self.window
        want = [b, -(-h // w_) * -(-w // w_), w_ * w_]
        if windows.dim() != 4 or list(windows.shape[:3]) != want:
            raise OpInputError(f"WindowMerge({w_}) of x {list(x.shape)} needs windows "
                               f"[{', '.join(map(str, want))}, C] as its first input, got "
                               f"{list(windows.shape)}",
                               "give it `in: [windows, x]`, x being WindowPartition's input")
        return window_merge(windows, x, self.window)

    def extra_repr(self) -> str:
        return f"window={self.window}"


def shifted_window_mask(x: torch.Tensor, window: int, shift: int) -> torch.Tensor:
    """torchvision's additive mask for shifted windows over x [B, H, W, C]: [nW, 1, N, N]
    (N = window * window), 0 between tokens of one region, -100.0 elsewhere; zeros when there
    is no shift (a dimension whose padded size the window covers is not shifted)."""
    h, w = x.shape[1], x.shape[2]
    pad_h, pad_w = -(-h // window) * window, -(-w // window) * window  # padded as partitioned
    shift_h = 0 if window >= pad_h else shift
    shift_w = 0 if window >= pad_w else shift
    num_windows = (pad_h // window) * (pad_w // window)
    n = window * window
    if shift_h + shift_w == 0:
        return x.new_zeros((num_windows, 1, n, n))
    mask = x.new_zeros((pad_h, pad_w))
    h_slices = ((0, -window), (-window, -shift_h), (-shift_h, None))
    w_slices = ((0, -window), (-window, -shift_w), (-shift_w, None))
    count = 0
    for hs in h_slices:
        for ws in w_slices:
            mask[hs[0]:hs[1], ws[0]:ws[1]] = count
            count += 1
    mask = mask.view(pad_h // window, window, pad_w // window, window)
    mask = mask.permute(0, 2, 1, 3).reshape(num_windows, n)
    mask = mask.unsqueeze(1) - mask.unsqueeze(2)
    mask = mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)
    return mask.unsqueeze(1)


class ShiftedWindowMask(nn.Module):
    """x [B, H, W, C] -> the attention mask [nW, 1, N, N] of Swin's shifted windows."""

    def __init__(self, window: int, shift: int):
        super().__init__()
        _positive("ShiftedWindowMask", window=window)
        if not isinstance(shift, int) or isinstance(shift, bool) or not 0 <= shift < window:
            raise ValueError(f"ShiftedWindowMask: shift must be an integer in 0..{window - 1} "
                             f"(less than the window), got {shift!r}")
        self.window, self.shift = window, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _rank4("ShiftedWindowMask", "an input", x)
        return shifted_window_mask(x, self.window, self.shift)

    def extra_repr(self) -> str:
        return f"window={self.window}, shift={self.shift}"


def patch_merge(x: torch.Tensor) -> torch.Tensor:
    """torchvision's patch merging without its norm and reduction: [B, H, W, C] padded to even
    H and W, then [B, H/2, W/2, 4C] from the four interleaved sub-grids."""
    h, w = x.shape[-3], x.shape[-2]
    x = pad_hw(x, -(-h // 2) * 2 - h, -(-w // 2) * 2 - w)  # h % 2 and w % 2, as torchvision
    x0 = x[..., 0::2, 0::2, :]
    x1 = x[..., 1::2, 0::2, :]
    x2 = x[..., 0::2, 1::2, :]
    x3 = x[..., 1::2, 1::2, :]
    return torch.cat([x0, x1, x2, x3], -1)


class PatchMerge(nn.Module):
    """[B, H, W, C] -> [B, ceil(H/2), ceil(W/2), 4C] (Swin's PatchMerging before its norm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _rank4("PatchMerge", "an input", x)
        return patch_merge(x)


def rotary_embedding(x: torch.Tensor, head_dim: int, base: float) -> torch.Tensor:
    """Rotary position embedding of x [..., T, head_dim], Hugging Face LLaMA's convention:
    cos and sin computed in float32 and cast to x's dtype, x * cos + rotate_half(x) * sin."""
    # On the CPU, then moved, as HF computes its inv_freq buffer at init (pow may round
    # differently on another device).
    steps = torch.arange(0, head_dim, 2, dtype=torch.int64, device="cpu").float()
    inv_freq = (1.0 / (base ** (steps / head_dim))).to(x.device)
    positions = torch.arange(x.shape[-2], dtype=torch.int64, device=x.device).float()
    # HF multiplies [head_dim / 2, 1] @ [1, T]: one product per entry, which this is exactly
    # (element-wise work, so no FLOPs are counted for it).
    freqs = positions[:, None] * inv_freq[None, :]  # [T, head_dim / 2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [T, head_dim]
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    x1, x2 = x[..., :x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Rotary(nn.Module):
    """Rotary position embeddings (no parameters) of q or k [B, heads, T, head_dim]."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        _positive("Rotary", head_dim=head_dim)
        if head_dim % 2:
            raise ValueError(f"Rotary: head_dim must be even, got {head_dim}")
        self.head_dim, self.base = head_dim, base

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[-1] != self.head_dim:
            raise OpInputError(f"Rotary({self.head_dim}) expects an input [..., T, "
                               f"{self.head_dim}] (head_dim last), got {list(x.shape)}",
                               "apply it to q and k split into heads: [B, heads, T, head_dim]")
        return rotary_embedding(x, self.head_dim, self.base)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base}"


def _check_buckets(num_buckets: int, num_heads: int, max_distance: int,
                   bidirectional: bool) -> None:
    _positive("T5RelativeAttentionBias", num_buckets=num_buckets, num_heads=num_heads,
              max_distance=max_distance)
    # The bucketing needs one exact bucket per direction and a distance beyond the exact ones.
    max_exact = (num_buckets // 2 if bidirectional else num_buckets) // 2
    if max_exact < 1:
        raise ValueError(f"T5RelativeAttentionBias: num_buckets must be at least "
                         f"{4 if bidirectional else 2}{' when bidirectional' * bidirectional}, "
                         f"got {num_buckets}")
    if max_distance <= max_exact:
        raise ValueError(f"T5RelativeAttentionBias: max_distance must be more than {max_exact} "
                         f"(the distances with a bucket each), got {max_distance}")


def relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool,
                             num_buckets: int, max_distance: int) -> torch.Tensor:
    """Hugging Face T5's `_relative_position_bucket`: a distance (memory - query) -> a bucket;
    exact buckets for small distances, logarithmic ones up to max_distance."""
    relative_buckets = torch.zeros_like(relative_position)  # HF starts from the integer 0
    if bidirectional:
        num_buckets //= 2
        relative_buckets += (relative_position > 0).to(torch.long) * num_buckets
        relative_position = torch.abs(relative_position)
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    relative_position_if_large = max_exact + (
        torch.log(relative_position.float() / max_exact)
        / math.log(max_distance / max_exact)
        * (num_buckets - max_exact)
    ).to(torch.long)
    relative_position_if_large = torch.min(
        relative_position_if_large, torch.full_like(relative_position_if_large, num_buckets - 1))
    return relative_buckets + torch.where(is_small, relative_position, relative_position_if_large)


class T5RelativeAttentionBias(nn.Module):
    """T5's relative position bias: x [B, T, ...] -> [1, num_heads, T, T], from one parameter
    `weight` [num_buckets, num_heads] (the nn.Embedding Hugging Face calls
    relative_attention_bias), initialised as nn.Embedding's."""

    def __init__(self, num_buckets: int, num_heads: int, max_distance: int = 128,
                 bidirectional: bool = True, device: Any = None, dtype: Any = None):
        super().__init__()
        _check_buckets(num_buckets, num_heads, max_distance, bidirectional)
        self.num_buckets, self.num_heads = num_buckets, num_heads
        self.max_distance, self.bidirectional = max_distance, bidirectional
        self.weight = nn.Parameter(torch.empty(num_buckets, num_heads, device=device,
                                               dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = torch.arange(x.shape[1], dtype=torch.long, device=x.device)[:, None]
        memory = torch.arange(x.shape[1], dtype=torch.long, device=x.device)[None, :]
        bucket = relative_position_bucket(memory - context, self.bidirectional,
                                          self.num_buckets, self.max_distance)
        values = F.embedding(bucket, self.weight)  # [T, T, num_heads]
        return values.permute([2, 0, 1]).unsqueeze(0)

    def extra_repr(self) -> str:
        return (f"num_buckets={self.num_buckets}, num_heads={self.num_heads}, "
                f"max_distance={self.max_distance}, bidirectional={self.bidirectional}")


def causal_mask(x: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """The additive causal mask [T, T] of x [B, T, ...] in x's dtype: 0 where query i may attend
    to key j (j <= i, and with a window also i - j < window, Mistral's sliding window as Hugging
    Face masks it), the dtype's lowest value elsewhere."""
    t = x.shape[1]
    lowest = torch.full((t, t), torch.finfo(x.dtype).min, dtype=x.dtype, device=x.device)
    mask = torch.triu(lowest, diagonal=1)
    if window is not None:  # keys `window` or more places back; disjoint from the part above
        mask = mask + torch.tril(lowest, diagonal=-window)
    return mask


class CausalMask(nn.Module):
    """x [B, T, ...] -> an additive causal mask [T, T] in x's dtype (for a bias that SDPA's
    is_causal cannot be combined with, as in T5's decoder); with `window`, each position sees
    only itself and the window - 1 before it (Mistral's sliding-window attention)."""

    def __init__(self, window: int | None = None):
        super().__init__()
        if window is not None:
            _positive("CausalMask", window=window)
        self.window = window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.dtype.is_floating_point:
            raise OpInputError(f"CausalMask takes its dtype from its input, which must be a float "
                               f"tensor, but it has dtype {_dtype(x)}",
                               "give it the hidden states [B, T, d] (after the embedding), not "
                               "the token ids", what="dtype mismatch")
        if x.dim() < 2:
            raise OpInputError(f"CausalMask expects an input [B, T, ...], got {list(x.shape)}")
        return causal_mask(x, self.window)

    def extra_repr(self) -> str:
        return "" if self.window is None else f"window={self.window}"


BUILTIN_OPS: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (Add, Mul, Concat, Chunk, Split, Reshape, Permute, Transpose, MatMul, Mean,
                ScaledDotProductAttention, Positions, Scale, Roll, ExpandAs, Select, Unsqueeze,
                Squeeze, Index, LayerNorm2d, WindowPartition, WindowMerge, ShiftedWindowMask,
                PatchMerge, Rotary, T5RelativeAttentionBias, CausalMask)
}
