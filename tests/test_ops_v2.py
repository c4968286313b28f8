"""The built-in ops of spec language v2 (ViT, ConvNeXt, Swin, T5, LLaMA): each op against the
reference formula it reproduces (torchvision's and Hugging Face's code, written out here by hand
in plain torch), on CPU; their export forms; and what a spec that misuses them is told.

The references follow torchvision.models.swin_transformer (shifted_window_attention,
_patch_merging_pad, PatchMerging), torchvision.ops.misc.LayerNorm2d, and Hugging Face
transformers' LlamaRotaryEmbedding / apply_rotary_pos_emb and T5Attention._relative_position_bucket
/ compute_bias, line for line where the numerics depend on it.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml
from reference_modern import relative_position_bucket as hf_relative_position_bucket
from test_export import dry_run, load_code, records, state_shapes, table
from torch import nn

import lazyspec
from lazyspec import builtin_ops, explain, export
from lazyspec.builtin_ops import BUILTIN_OPS, OpInputError
from lazyspec.errors import DryRunError
from lazyspec.export.pytorch import COPIED, MODULE_OPS, copied_source, globals_read

NEW_OPS = ["Scale", "Roll", "ExpandAs", "Select", "Unsqueeze", "Squeeze", "Index", "LayerNorm2d",
           "WindowPartition", "WindowMerge", "ShiftedWindowMask", "PatchMerge", "Rotary",
           "T5RelativeAttentionBias", "CausalMask"]


# --- references (torchvision, Hugging Face) ----------------------------------------------------


def tv_pad(x: torch.Tensor, window: list[int]) -> torch.Tensor:
    _, h, w, _ = x.shape
    pad_r = (window[1] - w % window[1]) % window[1]
    pad_b = (window[0] - h % window[0]) % window[0]
    return F.pad(x, (0, 0, 0, pad_r, 0, pad_b))


def tv_partition(x: torch.Tensor, window: list[int]) -> torch.Tensor:
    """torchvision: pad, then [B*nW, Ws*Ws, C]."""
    b, _, _, c = x.shape
    x = tv_pad(x, window)
    _, pad_h, pad_w, _ = x.shape
    num_windows = (pad_h // window[0]) * (pad_w // window[1])
    x = x.view(b, pad_h // window[0], window[0], pad_w // window[1], window[1], c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b * num_windows, window[0] * window[1], c)


def tv_mask(x: torch.Tensor, window: list[int], shift_size: list[int]) -> torch.Tensor | None:
    """torchvision's attn_mask of shifted_window_attention ([nW, N, N]), or None (no shift)."""
    shift_size = list(shift_size)
    x = tv_pad(x, window)
    _, pad_h, pad_w, _ = x.shape
    if window[0] >= pad_h:
        shift_size[0] = 0
    if window[1] >= pad_w:
        shift_size[1] = 0
    if sum(shift_size) == 0:
        return None
    num_windows = (pad_h // window[0]) * (pad_w // window[1])
    attn_mask = x.new_zeros((pad_h, pad_w))
    h_slices = ((0, -window[0]), (-window[0], -shift_size[0]), (-shift_size[0], None))
    w_slices = ((0, -window[1]), (-window[1], -shift_size[1]), (-shift_size[1], None))
    count = 0
    for h in h_slices:
        for w in w_slices:
            attn_mask[h[0]: h[1], w[0]: w[1]] = count
            count += 1
    attn_mask = attn_mask.view(pad_h // window[0], window[0], pad_w // window[1], window[1])
    attn_mask = attn_mask.permute(0, 2, 1, 3).reshape(num_windows, window[0] * window[1])
    attn_mask = attn_mask.unsqueeze(1) - attn_mask.unsqueeze(2)
    return attn_mask.masked_fill(attn_mask != 0, -100.0).masked_fill(
        attn_mask == 0, 0.0)


def tv_relative_position_index(window: int) -> torch.Tensor:
    coords_h = torch.arange(window)
    coords_w = torch.arange(window)
    coords = torch.stack(torch.meshgrid(coords_h, coords_w, indexing="ij"))
    coords_flatten = torch.flatten(coords, 1)
    relative_coords = coords_flatten[:, :, None] - coords_flatten[:, None, :]
    relative_coords = relative_coords.permute(1, 2, 0).contiguous()
    relative_coords[:, :, 0] += window - 1
    relative_coords[:, :, 1] += window - 1
    relative_coords[:, :, 0] *= 2 * window - 1
    return relative_coords.sum(-1).flatten()


def tv_shifted_window_attention(x: torch.Tensor, qkv: nn.Linear, proj: nn.Linear,
                                table_: torch.Tensor, window: int, num_heads: int,
                                shift: int) -> torch.Tensor:
    """torchvision's shifted_window_attention (v1, no dropout), with its relative position
    bias from the table."""
    n = window * window
    index = tv_relative_position_index(window)
    bias = table_[index].view(n, n, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
    b, h, w, c = x.shape
    window_size, shift_size = [window, window], [shift, shift]
    padded = tv_pad(x, window_size)
    _, pad_h, pad_w, _ = padded.shape
    if window_size[0] >= pad_h:
        shift_size[0] = 0
    if window_size[1] >= pad_w:
        shift_size[1] = 0
    if sum(shift_size) > 0:
        padded = torch.roll(padded, shifts=(-shift_size[0], -shift_size[1]), dims=(1, 2))
    num_windows = (pad_h // window) * (pad_w // window)
    t = tv_partition(padded, window_size)
    q, k, v = qkv(t).reshape(t.size(0), t.size(1), 3, num_heads, c // num_heads) \
        .permute(2, 0, 3, 1, 4)
    q = q * (c // num_heads) ** -0.5
    attn = q.matmul(k.transpose(-2, -1)) + bias
    mask = tv_mask(x, window_size, [shift, shift])
    if mask is not None:
        attn = attn.view(t.size(0) // num_windows, num_windows, num_heads, t.size(1), t.size(1))
        attn = attn + mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, num_heads, t.size(1), t.size(1))
    attn = F.softmax(attn, dim=-1)
    t = attn.matmul(v).transpose(1, 2).reshape(t.size(0), t.size(1), c)
    t = proj(t)
    t = t.view(b, pad_h // window, pad_w // window, window, window, c)
    t = t.permute(0, 1, 3, 2, 4, 5).reshape(b, pad_h, pad_w, c)
    if sum(shift_size) > 0:
        t = torch.roll(t, shifts=(shift_size[0], shift_size[1]), dims=(1, 2))
    return t[:, :h, :w, :].contiguous()


def tv_patch_merging(x: torch.Tensor) -> torch.Tensor:
    """torchvision's PatchMerging before its norm and reduction."""
    h, w, _ = x.shape[-3:]
    x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
    x0 = x[..., 0::2, 0::2, :]
    x1 = x[..., 1::2, 0::2, :]
    x2 = x[..., 0::2, 1::2, :]
    x3 = x[..., 1::2, 1::2, :]
    return torch.cat([x0, x1, x2, x3], -1)


def tv_layernorm2d(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    x = x.permute(0, 2, 3, 1)
    x = F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    return x.permute(0, 3, 1, 2)


def hf_rotary(q: torch.Tensor, head_dim: int, base: float) -> torch.Tensor:
    """LlamaRotaryEmbedding (default rope) and apply_rotary_pos_emb, positions 0..T-1."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.int64)
                               .to(dtype=torch.float) / head_dim))
    position_ids = torch.arange(q.shape[-2])[None, :].expand(q.shape[0], -1)
    inv_freq_expanded = inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
    position_ids_expanded = position_ids[:, None, :].float()
    freqs = (inv_freq_expanded.float() @ position_ids_expanded.float()).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos = (emb.cos() * 1.0).to(dtype=q.dtype).unsqueeze(1)
    sin = (emb.sin() * 1.0).to(dtype=q.dtype).unsqueeze(1)

    def rotate_half(x: torch.Tensor) -> torch.Tensor:
        x1 = x[..., : x.shape[-1] // 2]
        x2 = x[..., x.shape[-1] // 2:]
        return torch.cat((-x2, x1), dim=-1)

    return (q * cos) + (rotate_half(q) * sin)


def hf_compute_bias(embedding: nn.Embedding, length: int, bidirectional: bool,
                    max_distance: int) -> torch.Tensor:
    context_position = torch.arange(length, dtype=torch.long)[:, None]
    memory_position = torch.arange(length, dtype=torch.long)[None, :]
    relative_position = memory_position - context_position
    bucket = hf_relative_position_bucket(relative_position, bidirectional=bidirectional,
                                         num_buckets=embedding.num_embeddings,
                                         max_distance=max_distance)
    values = embedding(bucket)
    return values.permute([2, 0, 1]).unsqueeze(0)


# --- each op against its reference --------------------------------------------------------------


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


def test_sdpa_with_three_inputs_calls_torch_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    real = F.scaled_dot_product_attention

    def spy(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(builtin_ops.F, "scaled_dot_product_attention", spy)
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    out = builtin_ops.ScaledDotProductAttention(is_causal=True, scale=0.3).eval()(q, k, v)
    assert calls == [{"is_causal": True, "scale": 0.3, "dropout_p": 0.0}]  # no attn_mask key
    assert torch.equal(out, real(q, k, v, is_causal=True, scale=0.3))


@pytest.mark.parametrize("kind", ["bool", "float", "5d-swin"])
def test_sdpa_mask_is_torchs_attn_mask(kind: str) -> None:
    shape = (2, 3, 4, 9, 8) if kind == "5d-swin" else (2, 3, 9, 8)
    q, k, v = (torch.randn(shape) for _ in range(3))
    if kind == "bool":
        mask = torch.rand(9, 9) > 0.3
        mask.fill_diagonal_(True)
    else:
        mask = torch.randn((3, 1, 9, 9) if kind == "5d-swin" else (1, 3, 9, 9))
    got = builtin_ops.ScaledDotProductAttention(scale=1.0)(q, k, v, mask)
    assert torch.equal(got, F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0))
    scores = q @ k.transpose(-2, -1)
    scores = scores.masked_fill(~mask, float("-inf")) if kind == "bool" else scores + mask
    torch.testing.assert_close(got, scores.softmax(-1) @ v)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_sdpa_rejects_a_mask_with_is_causal_on_every_device(device: str) -> None:
    q = torch.randn(2, 3, 9, 8, device=device)  # torch itself accepts it on cpu, not on meta
    with pytest.raises(OpInputError, match=r"takes three inputs .* cannot combine a mask"):
        builtin_ops.ScaledDotProductAttention(is_causal=True)(q, q, q, torch.zeros(9, 9,
                                                                                  device=device))


def test_scale_roll_select_squeeze_unsqueeze() -> None:
    x = torch.randn(2, 5, 6, 3)
    assert torch.equal(builtin_ops.Scale(0.125)(x), x * 0.125)
    assert torch.equal(builtin_ops.Roll([-2, -2], [1, 2])(x), torch.roll(x, (-2, -2), (1, 2)))
    assert torch.equal(builtin_ops.Roll(3, 1)(x), torch.roll(x, 3, 1))
    assert torch.equal(builtin_ops.Select(1, 0)(x), x[:, 0])
    assert torch.equal(builtin_ops.Unsqueeze(1)(x), x[:, None])
    assert builtin_ops.Squeeze(0)(x[None]).shape == x.shape
    assert builtin_ops.Squeeze(1)(x).shape == x.shape  # as torch: not size 1, no change


def test_expand_as_the_vit_class_token() -> None:
    cls_token = torch.randn(1, 1, 768)
    x = torch.randn(3, 196, 768)
    out = builtin_ops.ExpandAs(0)(cls_token, x)
    assert out.shape == (3, 1, 768)
    assert torch.equal(out, cls_token.expand(3, -1, -1))
    assert torch.equal(torch.cat([out, x], dim=1)[:, 0], cls_token[0].expand(3, -1))
    assert torch.equal(builtin_ops.ExpandAs()(cls_token, x), cls_token.expand_as(x))
    assert builtin_ops.ExpandAs(-3, -1)(torch.randn(1, 1, 1), x).shape == (3, 1, 768)


def test_index_gathers_swin_relative_position_bias() -> None:
    heads, window = 3, 7
    table_ = torch.randn((2 * window - 1) ** 2, heads)  # [169, 3]
    index = tv_relative_position_index(window)  # [2401]
    out = builtin_ops.Index()(table_, index)
    assert out.shape == (2401, heads)
    assert torch.equal(out, table_[index])
    square = builtin_ops.Index()(table_, index.view(49, 49))  # the index's shape, at dim 0
    assert torch.equal(square, table_[index].view(49, 49, heads))
    cols = builtin_ops.Index(dim=1)(table_, torch.tensor([[2, 0], [1, 1]], dtype=torch.int32))
    assert torch.equal(cols, table_[:, [[2, 0], [1, 1]]])
    with pytest.raises(OpInputError, match=r"integer index .* dtype float32"):
        builtin_ops.Index()(table_, index.float())


def test_layernorm2d_is_torchvisions() -> None:
    norm = builtin_ops.LayerNorm2d(8)
    assert isinstance(norm, nn.LayerNorm) and norm.eps == 1e-6
    assert [(k, tuple(v.shape)) for k, v in norm.state_dict().items()] == [("weight", (8,)),
                                                                           ("bias", (8,))]
    assert torch.equal(norm.weight, torch.ones(8)) and torch.equal(norm.bias, torch.zeros(8))
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 8, 5, 6)
    assert torch.equal(norm(x), tv_layernorm2d(norm, x))
    channels_last = nn.LayerNorm(8, eps=1e-6)
    channels_last.load_state_dict(norm.state_dict())
    torch.testing.assert_close(norm(x), channels_last(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
    assert list(builtin_ops.LayerNorm2d(8, elementwise_affine=False).state_dict()) == []


@pytest.mark.parametrize(("h", "w", "window"), [(8, 8, 4), (7, 9, 4), (3, 5, 4), (14, 14, 7)])
def test_window_partition_and_merge_are_torchvisions(h: int, w: int, window: int) -> None:
    x = torch.randn(2, h, w, 5)
    windows = builtin_ops.WindowPartition(window)(x)
    n_w = math.ceil(h / window) * math.ceil(w / window)
    assert windows.shape == (2, n_w, window * window, 5)  # B stays apart
    assert torch.equal(windows.reshape(2 * n_w, window * window, 5),
                       tv_partition(x, [window, window]))
    assert torch.equal(builtin_ops.WindowMerge(window)(windows, x), x)  # padding cropped


@pytest.mark.parametrize(("h", "w", "window", "shift"), [
    (8, 8, 4, 2), (14, 14, 7, 3), (7, 9, 4, 2),  # padded
    (4, 4, 4, 2),  # the window covers the map: no shift
    (8, 3, 4, 2),  # only the height is shifted (torchvision's slices with a zero shift)
    (8, 8, 4, 0),
])
def test_shifted_window_mask_is_torchvisions(h: int, w: int, window: int, shift: int) -> None:
    x = torch.randn(2, h, w, 6, dtype=torch.float64)
    mask = builtin_ops.ShiftedWindowMask(window, shift)(x)
    n_w = math.ceil(h / window) * math.ceil(w / window)
    assert mask.shape == (n_w, 1, window * window, window * window)
    assert mask.dtype == torch.float64
    want = tv_mask(x, [window, window], [shift, shift])
    if want is None:
        assert not mask.any()
    else:
        assert torch.equal(mask[:, 0], want)
        assert set(mask.unique().tolist()) == {0.0, -100.0}
    assert builtin_ops.ShiftedWindowMask(window, shift)(x.to("meta")).shape == mask.shape


def test_a_swin_block_from_ops_is_torchvisions_shifted_window_attention(tmp_path: Path) -> None:
    spec = tmp_path / "swin.yaml"
    spec.write_text(SWIN_BLOCK, encoding="utf-8")
    built, _ = dry_run(spec, (), device="cpu")
    model = built.module.eval()
    x = torch.randn(2, 8, 8, 8)
    table_ = torch.randn(49, 2) * 0.5
    index = tv_relative_position_index(4)
    with torch.no_grad():
        got = model(x, table_, index)
        want = tv_shifted_window_attention(x, model.qkv, model.proj, table_, 4, 2, 2)
    torch.testing.assert_close(got, want)


SWIN_BLOCK = """
params: {C: 8, heads: 2, win: 4, shift: 2}
inputs:
  x: [2, 8, 8, C]
  table: [49, heads]                      # (2 * win - 1) ** 2 rows
  index: {shape: [256], dtype: int64}     # (win * win) ** 2
layers:
  - shifted: Roll([-shift, -shift], [1, 2])
    in: x
  - windows: WindowPartition(win)          # [B, nW, N, C]
  - qkv: Linear(C, 3 * C)
  - split: Unflatten(-1, [3, heads, C // heads])
  - parts: Permute(3, 0, 1, 4, 2, 5)       # [3, B, nW, heads, N, hd]
  - q: Select(0, 0)
  - qs: Scale((C // heads) ** -0.5)
  - k: Select(0, 1)
    in: parts
  - v: Select(0, 2)
    in: parts
  - rows: Index                            # [N * N, heads]
    in: [table, index]
  - square: Unflatten(0, [win * win, win * win])
  - bias: Permute(2, 0, 1)                 # [heads, N, N]
  - mask: ShiftedWindowMask(win, shift)    # [nW, 1, N, N]
    in: x
  - full: Add
    in: [bias, mask]
  - attn: ScaledDotProductAttention(scale=1.0)
    in: [qs, k, v, full]                   # [B, nW, heads, N, hd]
  - heads_last: Transpose(2, 3)
  - flat: Flatten(-2)
  - proj: Linear(C, C)
  - merged: WindowMerge(win)
    in: [proj, shifted]
  - out: Roll([shift, shift], [1, 2])
"""


@pytest.mark.parametrize(("h", "w"), [(8, 8), (7, 5), (1, 1)])
def test_patch_merge_is_torchvisions(h: int, w: int) -> None:
    x = torch.randn(2, h, w, 3)
    out = builtin_ops.PatchMerge()(x)
    assert out.shape == (2, math.ceil(h / 2), math.ceil(w / 2), 12)
    assert torch.equal(out, tv_patch_merging(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("head_dim", "base"), [(8, 10000.0), (64, 500000.0)])
def test_rotary_is_hugging_face_llamas(dtype: torch.dtype, head_dim: int, base: float) -> None:
    q = torch.randn(2, 4, 37, head_dim).to(dtype)
    out = builtin_ops.Rotary(head_dim, base)(q)
    assert out.dtype == dtype
    assert torch.equal(out, hf_rotary(q, head_dim, base))
    assert builtin_ops.Rotary(head_dim, base)(q.to("meta")).shape == q.shape


def test_rotary_rotates_pairs_by_position() -> None:
    """Independent of HF's code: position t turns pair i by t * base^(-2i/d)."""
    q = torch.randn(1, 1, 5, 4, dtype=torch.float64)
    out = builtin_ops.Rotary(4, 100.0)(q.float()).double()
    for t in range(5):
        for i in range(2):
            angle = t * 100.0 ** (-2 * i / 4)
            a, b = q[0, 0, t, i], q[0, 0, t, i + 2]
            assert float(out[0, 0, t, i]) == pytest.approx(
                a * math.cos(angle) - b * math.sin(angle), abs=1e-5)
            assert float(out[0, 0, t, i + 2]) == pytest.approx(
                b * math.cos(angle) + a * math.sin(angle), abs=1e-5)


@pytest.mark.parametrize("bidirectional", [True, False])
def test_t5_relative_attention_bias_is_hugging_faces(bidirectional: bool) -> None:
    bias = builtin_ops.T5RelativeAttentionBias(32, 4, max_distance=128,
                                               bidirectional=bidirectional)
    assert [(k, tuple(v.shape)) for k, v in bias.state_dict().items()] == [("weight", (32, 4))]
    embedding = nn.Embedding(32, 4)
    embedding.load_state_dict(bias.state_dict())
    x = torch.randn(2, 300, 16)  # long enough for every logarithmic bucket, and beyond
    out = bias(x)
    assert out.shape == (1, 4, 300, 300)
    assert torch.equal(out, hf_compute_bias(embedding, 300, bidirectional, 128))
    rel = torch.arange(-300, 300)
    assert torch.equal(builtin_ops.relative_position_bucket(rel, bidirectional, 32, 128),
                       hf_relative_position_bucket(rel, bidirectional, 32, 128))
    on_meta = bias.to("meta")(torch.empty(2, 7, device="meta", dtype=torch.long))
    assert on_meta.shape == (1, 4, 7, 7) and on_meta.device.type == "meta"


def test_t5_relative_attention_bias_is_initialised_as_nn_embedding() -> None:
    torch.manual_seed(3)
    want = nn.Embedding(32, 8).weight
    torch.manual_seed(3)
    assert torch.equal(builtin_ops.T5RelativeAttentionBias(32, 8).weight, want)


def test_t5_bias_under_a_relative_attention_bias_node_has_hugging_faces_key(
        write_spec: Any) -> None:
    spec = write_spec("""
blocks:
  Attention:
    layers:
      - relative_attention_bias: T5RelativeAttentionBias(32, 8)
layers:
  - SelfAttention: Attention
""")
    result = lazyspec.infer(spec, "2,16,64")
    assert [(p.path, p.shape) for p in result.params] == [
        ("SelfAttention.relative_attention_bias.weight", (32, 8))]
    assert result.outputs == [(1, 8, 16, 16)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_causal_mask_is_hugging_faces(dtype: torch.dtype) -> None:
    x = torch.randn(2, 6, 4).to(dtype)
    mask = builtin_ops.CausalMask()(x)
    min_dtype = torch.finfo(dtype).min
    want = torch.triu(torch.full((6, 6), fill_value=min_dtype, dtype=dtype), diagonal=1)
    assert mask.dtype == dtype and torch.equal(mask, want)
    assert not mask.tril().any() and (mask.triu(1) + torch.tril(torch.ones(6, 6, dtype=dtype))
                                      ).min() == min_dtype


def test_positions_counts_along_dim_one() -> None:
    assert torch.equal(builtin_ops.Positions()(torch.zeros(2, 7, dtype=torch.long)),
                       torch.arange(7))
    assert torch.equal(builtin_ops.Positions()(torch.zeros(2, 7, 16)), torch.arange(7))  # [B, T, C]
    assert torch.equal(builtin_ops.Positions(0)(torch.zeros(5)), torch.arange(5))


# --- symbolic shapes -----------------------------------------------------------------------------


def test_symbolic_shapes_through_a_swin_block(cli: Any, write_spec: Any) -> None:
    """Named H and W go through the window ops as expressions, with no spurious constraint."""
    import json

    spec = write_spec(SWIN_BLOCK.replace("x: [2, 8, 8, C]", "x: [B, H, W, C]") +
                      "  - down: PatchMerge\n")
    r = cli("infer", spec, "--input", "x=B,H,W,8", "--input", "table=49,2", "--input",
            "index=256:int64", "-f", "json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    by_path = {n["path"]: n["symbolic"] for n in doc["nodes"]}
    assert by_path["windows"] == "[B, ((-W)//4)*((-H)//4), 16, 8]"
    assert by_path["mask"] == "[((-W)//4)*((-H)//4), 1, 16, 16]"
    assert by_path["merged"] == "[B, H, W, 8]"
    assert by_path["down"] == "[B, -((-H)//2), -((-W)//2), 32]"
    assert doc["notes"] == [] and r.stderr == ""


def test_a_symbolic_pass_that_fails_in_torch_prints_no_torch_traceback(
        cli: Any, write_spec: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch logs an op that fails on fake tensors (here F.pad with symbolic padding, which the
    window ops avoid) with a traceback; lazyspec reports a note instead."""
    def f_pad(x: torch.Tensor, pad_h: Any, pad_w: Any) -> torch.Tensor:
        return F.pad(x, (0, 0, 0, pad_w, 0, pad_h))

    class Records(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    monkeypatch.setattr(builtin_ops, "pad_hw", f_pad)
    logger = logging.getLogger("torch._subclasses.fake_tensor")  # writes to the real stderr
    seen = Records()
    logger.addHandler(seen)
    try:
        spec = write_spec("inputs:\n  x: [B, H, W, 8]\nlayers:\n  - w: WindowPartition(4)\n")
        r = cli("infer", spec, "--input", "B,H,W,8")
    finally:
        logger.removeHandler(seen)
    assert r.code == 0
    assert "symbolic shapes unavailable" in r.stdout
    assert seen.records == [] and not logger.disabled  # quiet during the pass only


# --- cost ----------------------------------------------------------------------------------------


def test_new_ops_cost_no_unknown_flops_and_attention_counts(tmp_path: Path) -> None:
    path = tmp_path / "all.yaml"
    path.write_text(ALL_OPS, encoding="utf-8")
    result = lazyspec.infer(path)
    assert result.totals.unknown_ops == []
    by_path = {n.path: n for n in result.nodes}
    free = [n for n in result.nodes if n.op in NEW_OPS]
    assert {n.op for n in free} == set(NEW_OPS)
    assert all(n.flops == 0 for n in free), [(n.path, n.flops) for n in free if n.flops]
    # Masked attention counts as attention: 2 matmuls of [B, heads, T, T, hd].
    assert by_path["t5attn"].flops == by_path["cattn"].flops == 2 * 2 * (2 * 2 * 6 * 6 * 16)


# --- export --------------------------------------------------------------------------------------

# Every new op (node names that are also names of the code export copies: they must not clash).
ALL_OPS = """
params: {d: 8, heads: 2, win: 3}
inputs:
  x: [2, 7, 5, 8]
  idx: {shape: [2, 6], dtype: int64}
  table_idx: {shape: [4, 2], dtype: int64}
blocks:
  patch_merge:                         # a block named as a copied function
    layers:
      - PatchMerge
layers:
  - norm: LayerNorm2d(7)               # channels first: C = 7
  - hw: Permute(0, 2, 3, 1)            # [2, 5, 8, 7]
  - proj: Linear(7, d)
  - shifted: Roll([-1, -1], [1, 2])
  - window_partition: WindowPartition(win)    # [2, 6, 9, 8]
  - qkv: Linear(d, 3 * d)
  - parts: Unflatten(-1, [3, heads, d // heads])
  - heads_first: Permute(3, 0, 1, 4, 2, 5)     # [3, 2, 6, 2, 9, 4]
  - q: Select(0, 0)
  - qs: Scale((d // heads) ** -0.5)
  - k: Select(0, 1)
    in: heads_first
  - v: Select(0, 2)
    in: heads_first
  - mask: ShiftedWindowMask(win, 1)    # [6, 1, 9, 9]
    in: shifted
  - attn: ScaledDotProductAttention(scale=1.0)
    in: [qs, k, v, mask]
  - merged_heads: Transpose(2, 3)
  - flat: Flatten(-2)                  # [2, 6, 9, 8]
  - back: WindowMerge(win)
    in: [flat, shifted]
  - unshift: Roll([1, 1], [1, 2])
  - pm: patch_merge                    # [2, 3, 4, 32]
  - sel: Select(1, 0)                  # [2, 4, 32]
  - tok: Embedding(10, 32)
    in: idx                            # [2, 6, 32]
  - cls: Unsqueeze(0)
  - sq: Squeeze(0)
  - one: Select(0, 0)                  # [6, 32]
  - one3: Unsqueeze(0)                 # [1, 6, 32]
  - cls_b: ExpandAs(0)                 # [2, 6, 32]
    in: [one3, tok]
  - all_b: ExpandAs
    in: [one3, tok]
  - relative_attention_bias: T5RelativeAttentionBias(8, 2, max_distance=16)
    in: tok
  - causal_rel: T5RelativeAttentionBias(8, 2, max_distance=16, bidirectional=false)
    in: tok
  - causal_mask: CausalMask
    in: tok
  - bias: Add
    in: [causal_rel, causal_mask]
  - th: Unflatten(-1, [2, 16])         # [2, 6, 2, 16]
    in: tok
  - tq: Transpose(1, 2)                # [2, 2, 6, 16]
  - rotary_embedding: Rotary(16)
  - t5attn: ScaledDotProductAttention(scale=1.0)
    in: [rotary_embedding, tq, tq, bias]
  - cattn: ScaledDotProductAttention(is_causal=true)
    in: [rotary_embedding, tq, tq]
  - pos: Positions
    in: tok
  - pos2: Positions(0)
  - tbl: Index(0)                      # [4, 2, 6, 32]
    in: [tok, table_idx]
  - index_table: Index(dim=1)          # [2, 4, 2, 32]
    in: [tok, table_idx]
outputs: [sel, cls_b, all_b, relative_attention_bias, t5attn, cattn, pos2, tbl, index_table,
          unshift]
"""


@pytest.fixture
def all_ops(tmp_path: Path) -> Path:
    path = tmp_path / "all.yaml"
    path.write_text(ALL_OPS, encoding="utf-8")
    return path


def _inputs() -> list[torch.Tensor]:
    return [torch.randn(2, 7, 5, 8), torch.randint(0, 10, (2, 6)), torch.randint(0, 2, (4, 2))]


def _same_outputs(got: Any, want: Any) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)


def test_every_new_op_is_in_the_export_spec() -> None:
    assert set(NEW_OPS) <= set(BUILTIN_OPS)
    used = set(re.findall(r"\b([A-Z]\w+)\b", ALL_OPS))
    assert set(NEW_OPS) <= used


def test_pytorch_code_of_every_new_op_computes_the_same(all_ops: Path) -> None:
    built, result = dry_run(all_ops, (), device="cpu")
    code = export.pytorch_code(built, result)
    imports = re.findall(r"^(?:import|from) (\S+)", code, re.M)
    assert set(imports) <= {"__future__", "math", "torch", "torch.nn.functional"}
    for name in ("LayerNorm2d", "T5RelativeAttentionBias", "window_partition", "patch_merge",
                 "rotary_embedding", "relative_position_bucket", "index_table"):
        assert len(re.findall(rf"^(?:def|class) {name}\b", code, re.M)) == 1, name
    assert "self.relative_attention_bias = T5RelativeAttentionBias(8, 2, max_distance=16)" in code
    state = export.init_state_dict(built.module, "xavier_normal", seed=0)
    model = load_code(code)["Model"]()
    assert list(model.state_dict()) == list(state)
    model.load_state_dict(state)
    xs = _inputs()
    model.eval()
    built.module.eval()
    with torch.no_grad():
        _same_outputs(model(*xs), built.module(*xs))
    with torch.device("meta"):
        assert state_shapes(load_code(code)["Model"]()) == state_shapes(built.module)


def test_explicit_spec_of_every_new_op_round_trips(all_ops: Path, tmp_path: Path) -> None:
    built, lazy = dry_run(all_ops, (), device="cpu")
    text = export.explicit_spec(built, lazy)
    layers = yaml.safe_load(text)["layers"]
    assert {"window_partition": "WindowPartition(3)"} in layers
    assert {"op": "Positions(0)", "name": "pos2"} in layers or {"pos2": "Positions(0)"} in layers
    jsonschema = pytest.importorskip("jsonschema")
    schema = pytest.importorskip("lazyspec.spec.schema")
    jsonschema.Draft202012Validator(schema.spec_schema()).validate(yaml.safe_load(text))
    out = tmp_path / "explicit.yaml"
    out.write_text(text, encoding="utf-8")
    again_built, again = dry_run(out, (), device="cpu")
    assert records(again) == records(lazy) and table(again) == table(lazy)
    again_built.module.load_state_dict(built.module.state_dict())
    xs = _inputs()
    with torch.no_grad():
        _same_outputs(again_built.module.eval()(*xs), built.module.eval()(*xs))


def test_copied_code_needs_only_torch_and_itself() -> None:
    """What export copies from builtin_ops reads no name but torch, nn, F, math, builtins and
    the other code it copies."""
    import builtins

    allowed = {"torch", "nn", "F", "math", *dir(builtins)}
    for op, obj in COPIED.items():
        sources = copied_source([obj])
        defined = {re.match(r"(?:def|class) (\w+)", s).group(1) for s in sources}  # type: ignore[union-attr]
        for source in sources:
            assert globals_read(source) <= allowed | defined, op
    assert set(COPIED) >= MODULE_OPS


def test_a_class_name_the_code_uses_is_refused(all_ops: Path) -> None:
    built, result = dry_run(all_ops, ())
    with pytest.raises(ValueError, match="a name the generated code uses"):
        export.pytorch_code(built, result, class_name="window_partition")


# --- diagnostics ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("op", "inputs", "expected"), [
    (builtin_ops.WindowMerge(7), [torch.zeros(2, 1, 49, 8)],
     "WindowMerge takes 2 inputs (windows, x), got 1"),
    (builtin_ops.Index(), [torch.zeros(3)], "Index takes 2 inputs (table, index), got 1"),
    (builtin_ops.ScaledDotProductAttention(), [torch.zeros(1, 2)] * 2,
     "ScaledDotProductAttention takes 3 or 4 inputs (q, k, v, mask), got 2"),
    (builtin_ops.Rotary(8), [torch.zeros(2, 8)] * 2, "Rotary takes 1 input (x), got 2"),
])
def test_a_wrong_number_of_inputs_is_explained(op: nn.Module, inputs: list[torch.Tensor],
                                               expected: str) -> None:
    assert explain.headline(op, inputs, TypeError()) == "wrong number of inputs"
    why = explain.explain(op, inputs, TypeError())
    assert why is not None and why[0] == expected


def test_an_op_input_error_is_the_explanation_and_not_a_torch_line(write_spec: Any) -> None:
    spec = write_spec("inputs:\n  x: [2, 49, 96]\nlayers:\n  - w: WindowPartition(7)\n")
    with pytest.raises(DryRunError) as exc:
        lazyspec.infer(spec)
    d = exc.value.diagnostics[0]
    assert d.code == "LS201" and d.message == "shape mismatch in node 'w' (WindowPartition)"
    assert "expected: WindowPartition expects an input [B, H, W, C] (4-d, channels last), " \
           "got 3-d [2, 49, 96]" in d.notes
    assert not any(n.startswith("torch:") for n in d.notes)
    assert d.hint is not None and "Permute(0, 2, 3, 1)" in d.hint


@pytest.mark.parametrize("make", [
    lambda: builtin_ops.Roll(1.5, 1), lambda: builtin_ops.Roll([1, 2], [1]),
    lambda: builtin_ops.Select(0, "a"), lambda: builtin_ops.ExpandAs(0, True),
    lambda: builtin_ops.Unsqueeze(None), lambda: builtin_ops.Squeeze(1.0),
    lambda: builtin_ops.Index("0"), lambda: builtin_ops.Positions([1]),
    lambda: builtin_ops.Scale("2"), lambda: builtin_ops.WindowPartition(-1),
    lambda: builtin_ops.WindowMerge(2.5), lambda: builtin_ops.ShiftedWindowMask(4, -1),
    lambda: builtin_ops.Rotary(0), lambda: builtin_ops.Rotary(6.0),
    lambda: builtin_ops.T5RelativeAttentionBias(3, 8, bidirectional=False, max_distance=1),
    lambda: builtin_ops.T5RelativeAttentionBias(32, 0),
])
def test_bad_arguments_fail_at_construction(make: Any) -> None:
    with pytest.raises(ValueError, match=r"must (be|both be)|at least|more than"):
        make()
