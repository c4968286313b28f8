"""The built-in ops: small nn.Modules for the data flow that torch.nn has no module for.

Each op is one class; BUILTIN_OPS lists them, so adding an op is one class, one entry, one test.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


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
    """`F.scaled_dot_product_attention(q, k, v)` with its keyword arguments."""

    def __init__(self, is_causal: bool = False, dropout: float = 0.0, scale: float | None = None,
                 enable_gqa: bool = False):
        super().__init__()
        self.is_causal, self.dropout, self.scale = is_causal, dropout, scale
        self.enable_gqa = enable_gqa

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        kwargs: dict[str, Any] = {"is_causal": self.is_causal, "scale": self.scale,
                                  "dropout_p": self.dropout if self.training else 0.0}
        if self.enable_gqa:  # only newer torch knows the argument; pass it only when asked
            kwargs["enable_gqa"] = True
        return F.scaled_dot_product_attention(q, k, v, **kwargs)

    def extra_repr(self) -> str:
        return f"is_causal={self.is_causal}, dropout={self.dropout}, scale={self.scale}"


class Positions(nn.Module):
    """Positions 0..T-1 of an integer input of shape (B, T), as an int64 tensor of shape (T,)."""

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return torch.arange(idx.shape[-1], dtype=torch.long, device=idx.device)  # (T,)


BUILTIN_OPS: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (Add, Mul, Concat, Chunk, Split, Reshape, Permute, Transpose, MatMul, Mean,
                ScaledDotProductAttention, Positions)
}
