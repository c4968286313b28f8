"""FLOPs per node during the dry run, from torch's own flop formulas (works on `meta`).

Matrix products, convolutions and attention are counted with `torch.utils.flop_counter`'s
formulas (2 FLOPs per multiply-accumulate). Element-wise ops, reductions, norms, pooling, views
and tensor creation count 0 by convention, as in fvcore and torchinfo. Any other op is *unknown*:
the node's FLOPs are reported as unknown, never as 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry as _torch_registry
from torch.utils.flop_counter import sdpa_flop


def mha_flop(query: Any, key: Any, value: Any, embed_dim: int, *args: Any, out_val: Any = None,
             **kwargs: Any) -> int:
    """nn.MultiheadAttention's fused CPU/CUDA kernel (its fast path in eval mode, batch first):
    the in-projections of q, k and v, q @ k^T, the weights @ v, and the out-projection, as the
    same layer counts on meta, where it decomposes into those matrix products."""
    e = int(embed_dim)
    lq, lk = int(query.shape[-2]), int(key.shape[-2])
    batch = query.numel() // (lq * e) if lq * e else 0
    projections = 2 * batch * (lq + 2 * lk) * e * e + 2 * batch * lq * e * e
    attention = 2 * 2 * batch * lq * lk * e
    return projections + attention


# torch's formulas, plus kernels it does not list whose FLOPs follow a listed formula: the CPU's
# fused attention counts as attention does on meta (where it decomposes into two bmm), and so
# does nn.MultiheadAttention's fused kernel.
flop_registry = dict(_torch_registry)
for _name in ("_scaled_dot_product_flash_attention_for_cpu",):
    if hasattr(torch.ops.aten, _name):
        flop_registry[getattr(torch.ops.aten, _name)] = sdpa_flop
if hasattr(torch.ops.aten, "_native_multi_head_attention"):
    flop_registry[torch.ops.aten._native_multi_head_attention] = mha_flop

# Ops that are not pointwise/reduction/view by tag but still cost no multiply-accumulates.
FREE_OPS = frozenset({
    "embedding", "embedding_bag", "_embedding_bag", "native_layer_norm", "native_batch_norm",
    "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
    "_native_batch_norm_legit_functional", "native_group_norm", "_fused_rms_norm", "rms_norm",
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices",
    "max_pool2d_with_indices", "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d",
    "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_max_pool3d", "_softmax", "_log_softmax", "_safe_softmax", "softmax", "log_softmax",
    "cat", "stack", "clone", "_to_copy", "copy", "copy_", "empty", "empty_like",
    "empty_strided", "zeros", "zeros_like", "ones", "ones_like", "full", "full_like", "arange",
    "scalar_tensor", "tril", "triu", "_unsafe_view", "constant_pad_nd", "index_select",
    "gather", "scatter", "lift_fresh", "lift_fresh_copy", "new_empty", "new_zeros", "new_ones",
    "new_full", "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d",
    "upsample_bilinear2d", "_upsample_nearest_exact2d", "pixel_shuffle", "pixel_unshuffle",
    "channel_shuffle", "native_dropout", "bernoulli", "rand", "randn", "randint", "rand_like",
    "randn_like", "masked_fill", "index", "index_put", "flip", "roll", "repeat", "im2col",
    "col2im", "reflection_pad1d", "reflection_pad2d", "reflection_pad3d",
    "replication_pad1d", "replication_pad2d", "replication_pad3d", "_pdist_forward",
    "unsafe_split", "unsafe_split_with_sizes", "unsafe_chunk", "split_with_sizes",
    "hardswish", "hardsigmoid", "hardtanh", "_assert_async", "_local_scalar_dense",
})
_FREE_TAGS = tuple(getattr(torch.Tag, name) for name in
                   ("pointwise", "reduction", "inplace_view", "nondeterministic_seeded", "inplace")
                   if hasattr(torch.Tag, name))  # older torch releases know fewer tags


@dataclass
class Frame:
    """What one node's execution cost; nested nodes add to every frame above them."""

    flops: int = 0
    unknown: set[str] = field(default_factory=set)


def _is_free(func: Any) -> bool:
    if func._overloadpacket.__name__ in FREE_OPS:
        return True
    if any(tag in _FREE_TAGS for tag in func.tags):
        return True
    return any(r.alias_info is not None for r in func._schema.returns)  # views


class CostMode(TorchDispatchMode):  # type: ignore[no-untyped-call]  # torch's base is untyped
    """Counts FLOPs of every aten op into the frames of the nodes running it."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.frames: list[Frame] = [Frame()]  # frames[0]: the whole model

    @property
    def total(self) -> Frame:
        return self.frames[0]

    def open_frame(self) -> Frame:
        frame = Frame()
        self.frames.append(frame)
        return frame

    def close_frame(self, frame: Frame) -> None:
        if self.frames and self.frames[-1] is frame:
            self.frames.pop()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        packet = func._overloadpacket
        if packet not in flop_registry:
            # Composite ops (linear, einsum, ...) count through what they decompose into.
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        if packet in flop_registry:
            flops = int(flop_registry[packet](*args, **kwargs, out_val=out))
            for frame in self.frames:
                frame.flops += flops
        elif not _is_free(func):
            name = packet._qualified_op_name  # aten::cumsum, mylib::op
            for frame in self.frames:
                frame.unknown.add(name)
        return out
