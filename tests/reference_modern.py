"""Plain-PyTorch transcriptions (no lazyspec) of torchvision's ViT, ConvNeXt and Swin and of
Hugging Face's T5, for specs/vit_b_16.yaml, convnext_tiny.yaml, swin_t.yaml and t5_small.yaml.

torchvision and transformers are not test dependencies (torchvision's wheels need a CUDA build of
torch), so these classes follow the libraries' forward code line by line, with their module names
(tests/reference/*.json hold the real names and shapes), at any size: the tests build them at the
specs' `tiny` scales, load their state dicts into the specs' models and compare outputs. Dropout and
stochastic depth are left out (the identity in eval mode); so are options the specs do not use.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

# --- torchvision.models.vision_transformer -------------------------------------------------------


def mlp(d: int, hidden: int) -> nn.Sequential:
    """torchvision.ops.MLP(d, [hidden, d], activation_layer=nn.GELU): mlp.0 and mlp.3."""
    return nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, d),
                         nn.Dropout(0.0))


class EncoderBlock(nn.Module):
    def __init__(self, heads: int, d: int, mlp_dim: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = mlp(d, mlp_dim)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x = self.ln_1(input)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = x + input
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    def __init__(self, seq_length: int, layers: int, heads: int, d: int, mlp_dim: int):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, seq_length, d).normal_(std=0.02))
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(heads, d, mlp_dim)) for i in range(layers)))
        self.ln = nn.LayerNorm(d, eps=1e-6)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.ln(self.layers(input + self.pos_embedding))


class VisionTransformer(nn.Module):
    def __init__(self, image_size: int, patch_size: int, num_layers: int, num_heads: int,
                 hidden_dim: int, mlp_dim: int, num_classes: int):
        super().__init__()
        self.patch_size, self.hidden_dim = patch_size, hidden_dim
        self.conv_proj = nn.Conv2d(3, hidden_dim, patch_size, stride=patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        seq_length = (image_size // patch_size) ** 2 + 1
        self.encoder = Encoder(seq_length, num_layers, num_heads, hidden_dim, mlp_dim)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(hidden_dim, num_classes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        x = self.conv_proj(x)
        x = x.reshape(n, self.hidden_dim, (h // self.patch_size) * (w // self.patch_size))
        x = x.permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1)
        x = self.encoder(x)
        return self.heads(x[:, 0])


# --- torchvision.models.convnext -----------------------------------------------------------------


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Permute(nn.Module):
    def __init__(self, dims: list[int]):
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.permute(x, self.dims)


class CNBlock(nn.Module):
    def __init__(self, dim: int, layer_scale: float = 1e-6):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=1e-6),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return self.layer_scale * self.block(input) + input


class ConvNeXt(nn.Module):
    def __init__(self, widths: list[int], depths: list[int], num_classes: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, widths[0], 4, stride=4),
                                                 LayerNorm2d(widths[0], eps=1e-6))]
        for i, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            layers.append(nn.Sequential(*(CNBlock(width) for _ in range(depth))))
            if i + 1 < len(widths):
                layers.append(nn.Sequential(LayerNorm2d(width, eps=1e-6),
                                            nn.Conv2d(width, widths[i + 1], 2, stride=2)))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(LayerNorm2d(widths[-1], eps=1e-6), nn.Flatten(1),
                                        nn.Linear(widths[-1], num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)))


# --- torchvision.models.swin_transformer ---------------------------------------------------------


def shifted_window_attention(input: torch.Tensor, qkv: nn.Linear, proj: nn.Linear,
                             relative_position_bias: torch.Tensor, window_size: list[int],
                             num_heads: int, shift_size: list[int]) -> torch.Tensor:
    b, h, w, c = input.shape
    pad_r = (window_size[1] - w % window_size[1]) % window_size[1]
    pad_b = (window_size[0] - h % window_size[0]) % window_size[0]
    x = F.pad(input, (0, 0, 0, pad_r, 0, pad_b))
    _, pad_h, pad_w, _ = x.shape
    shift_size = shift_size.copy()
    if window_size[0] >= pad_h:  # the window covers the map: no shift
        shift_size[0] = 0
    if window_size[1] >= pad_w:
        shift_size[1] = 0
    if sum(shift_size) > 0:
        x = torch.roll(x, shifts=(-shift_size[0], -shift_size[1]), dims=(1, 2))
    num_windows = (pad_h // window_size[0]) * (pad_w // window_size[1])
    x = x.view(b, pad_h // window_size[0], window_size[0], pad_w // window_size[1],
               window_size[1], c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b * num_windows, window_size[0] * window_size[1], c)
    qkv_out = qkv(x)
    qkv_out = qkv_out.reshape(x.size(0), x.size(1), 3, num_heads, c // num_heads)
    qkv_out = qkv_out.permute(2, 0, 3, 1, 4)
    q, k, v = qkv_out[0], qkv_out[1], qkv_out[2]
    q = q * (c // num_heads) ** -0.5
    attn = q.matmul(k.transpose(-2, -1))
    attn = attn + relative_position_bias
    if sum(shift_size) > 0:
        attn_mask = x.new_zeros((pad_h, pad_w))
        h_slices = ((0, -window_size[0]), (-window_size[0], -shift_size[0]),
                    (-shift_size[0], None))
        w_slices = ((0, -window_size[1]), (-window_size[1], -shift_size[1]),
                    (-shift_size[1], None))
        count = 0
        for hs in h_slices:
            for ws in w_slices:
                attn_mask[hs[0]:hs[1], ws[0]:ws[1]] = count
                count += 1
        attn_mask = attn_mask.view(pad_h // window_size[0], window_size[0],
                                   pad_w // window_size[1], window_size[1])
        attn_mask = attn_mask.permute(0, 2, 1, 3).reshape(num_windows,
                                                          window_size[0] * window_size[1])
        attn_mask = attn_mask.unsqueeze(1) - attn_mask.unsqueeze(2)
        attn_mask = attn_mask.masked_fill(attn_mask != 0, -100.0).masked_fill(attn_mask == 0, 0.0)
        attn = attn.view(x.size(0) // num_windows, num_windows, num_heads, x.size(1), x.size(1))
        attn = attn + attn_mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, num_heads, x.size(1), x.size(1))
    attn = F.softmax(attn, dim=-1)
    x = attn.matmul(v).transpose(1, 2).reshape(x.size(0), x.size(1), c)
    x = proj(x)
    x = x.view(b, pad_h // window_size[0], pad_w // window_size[1], window_size[0],
               window_size[1], c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, pad_h, pad_w, c)
    if sum(shift_size) > 0:
        x = torch.roll(x, shifts=(shift_size[0], shift_size[1]), dims=(1, 2))
    return x[:, :h, :w, :].contiguous()


class ShiftedWindowAttention(nn.Module):
    def __init__(self, dim: int, window_size: list[int], shift_size: list[int], num_heads: int):
        super().__init__()
        self.window_size, self.shift_size, self.num_heads = window_size, shift_size, num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(
            (2 * window_size[0] - 1) * (2 * window_size[1] - 1), num_heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window_size[0]),
                                            torch.arange(window_size[1]), indexing="ij"))
        coords_flatten = torch.flatten(coords, 1)
        relative_coords = coords_flatten[:, :, None] - coords_flatten[:, None, :]
        relative_coords = relative_coords.permute(1, 2, 0).contiguous()
        relative_coords[:, :, 0] += window_size[0] - 1
        relative_coords[:, :, 1] += window_size[1] - 1
        relative_coords[:, :, 0] *= 2 * window_size[1] - 1
        self.register_buffer("relative_position_index", relative_coords.sum(-1).flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.window_size[0] * self.window_size[1]
        bias = self.relative_position_bias_table[self.relative_position_index]
        bias = bias.view(n, n, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
        return shifted_window_attention(x, self.qkv, self.proj, bias, self.window_size,
                                        self.num_heads, self.shift_size)


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window_size: list[int], shift_size: list[int]):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ShiftedWindowAttention(dim, window_size, shift_size, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w, _ = x.shape[-3:]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :],
                       x[..., 1::2, 1::2, :]], -1)
        return self.reduction(self.norm(x))


class SwinTransformer(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int, depths: list[int], num_heads: list[int],
                 window_size: int, num_classes: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(
            nn.Conv2d(3, embed_dim, patch_size, stride=patch_size), Permute([0, 2, 3, 1]),
            nn.LayerNorm(embed_dim))]
        for i, depth in enumerate(depths):
            dim = embed_dim * 2 ** i
            layers.append(nn.Sequential(*(
                SwinTransformerBlock(dim, num_heads[i], [window_size, window_size],
                                     [0 if j % 2 == 0 else window_size // 2] * 2)
                for j in range(depth))))
            if i < len(depths) - 1:
                layers.append(PatchMerging(dim))
        self.features = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(embed_dim * 2 ** (len(depths) - 1))
        self.head = nn.Linear(embed_dim * 2 ** (len(depths) - 1), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.features(x)).permute(0, 3, 1, 2)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# --- transformers.models.t5.modeling_t5 ----------------------------------------------------------


class T5LayerNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        variance = hidden_states.to(torch.float32).pow(2).mean(-1, keepdim=True)
        return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def relative_position_bucket(relative_position: torch.Tensor, bidirectional: bool,
                             num_buckets: int, max_distance: int) -> torch.Tensor:
    relative_buckets = 0
    if bidirectional:
        num_buckets //= 2
        relative_buckets += (relative_position > 0).to(torch.long) * num_buckets
        relative_position = torch.abs(relative_position)
    else:
        relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    if_large = max_exact + (torch.log(relative_position.float() / max_exact)
                            / math.log(max_distance / max_exact)
                            * (num_buckets - max_exact)).to(torch.long)
    if_large = torch.min(if_large, torch.full_like(if_large, num_buckets - 1))
    return relative_buckets + torch.where(is_small, relative_position, if_large)


class T5Attention(nn.Module):
    def __init__(self, cfg: dict[str, int], is_decoder: bool, has_relative_attention_bias: bool):
        super().__init__()
        d, self.n_heads, self.d_kv = cfg["d_model"], cfg["num_heads"], cfg["d_kv"]
        self.is_decoder, self.has_bias = is_decoder, has_relative_attention_bias
        self.buckets, self.max_distance = cfg["buckets"], cfg["max_distance"]
        inner = self.n_heads * self.d_kv
        self.q = nn.Linear(d, inner, bias=False)
        self.k = nn.Linear(d, inner, bias=False)
        self.v = nn.Linear(d, inner, bias=False)
        self.o = nn.Linear(inner, d, bias=False)
        if has_relative_attention_bias:
            self.relative_attention_bias = nn.Embedding(self.buckets, self.n_heads)

    def compute_bias(self, query_length: int, key_length: int) -> torch.Tensor:
        context_position = torch.arange(query_length, dtype=torch.long)[:, None]
        memory_position = torch.arange(key_length, dtype=torch.long)[None, :]
        bucket = relative_position_bucket(memory_position - context_position,
                                          not self.is_decoder, self.buckets, self.max_distance)
        return self.relative_attention_bias(bucket).permute([2, 0, 1]).unsqueeze(0)

    def forward(self, hidden_states: torch.Tensor, mask: torch.Tensor | None = None,
                key_value_states: torch.Tensor | None = None,
                position_bias: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b = hidden_states.shape[0]
        current = hidden_states if key_value_states is None else key_value_states

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, -1, self.n_heads, self.d_kv).transpose(1, 2)

        q, k, v = heads(self.q(hidden_states)), heads(self.k(current)), heads(self.v(current))
        scores = torch.matmul(q, k.transpose(3, 2))
        if position_bias is None:
            if not self.has_bias:
                position_bias = torch.zeros((1, self.n_heads, q.shape[-2], k.shape[-2]))
            else:
                position_bias = self.compute_bias(q.shape[-2], k.shape[-2])
            if mask is not None:
                position_bias = position_bias + mask
        scores += position_bias
        attn = F.softmax(scores.float(), dim=-1).type_as(scores)
        out = torch.matmul(attn, v).transpose(1, 2).contiguous().view(b, -1, self.n_heads *
                                                                      self.d_kv)
        return self.o(out), position_bias


class T5LayerSelfAttention(nn.Module):
    def __init__(self, cfg: dict[str, int], is_decoder: bool, has_bias: bool):
        super().__init__()
        self.SelfAttention = T5Attention(cfg, is_decoder, has_bias)
        self.layer_norm = T5LayerNorm(cfg["d_model"])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None,
                position_bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        out, bias = self.SelfAttention(self.layer_norm(x), mask, position_bias=position_bias)
        return x + out, bias


class T5LayerCrossAttention(nn.Module):
    def __init__(self, cfg: dict[str, int]):
        super().__init__()
        self.EncDecAttention = T5Attention(cfg, True, False)
        self.layer_norm = T5LayerNorm(cfg["d_model"])

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return x + self.EncDecAttention(self.layer_norm(x), key_value_states=memory)[0]


class T5DenseActDense(nn.Module):
    def __init__(self, cfg: dict[str, int]):
        super().__init__()
        self.wi = nn.Linear(cfg["d_model"], cfg["d_ff"], bias=False)
        self.wo = nn.Linear(cfg["d_ff"], cfg["d_model"], bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.wo(F.relu(self.wi(x)))


class T5LayerFF(nn.Module):
    def __init__(self, cfg: dict[str, int]):
        super().__init__()
        self.DenseReluDense = T5DenseActDense(cfg)
        self.layer_norm = T5LayerNorm(cfg["d_model"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.DenseReluDense(self.layer_norm(x))


class T5Block(nn.Module):
    def __init__(self, cfg: dict[str, int], is_decoder: bool, has_bias: bool):
        super().__init__()
        self.layer = nn.ModuleList([T5LayerSelfAttention(cfg, is_decoder, has_bias)])
        if is_decoder:
            self.layer.append(T5LayerCrossAttention(cfg))
        self.layer.append(T5LayerFF(cfg))


class T5Stack(nn.Module):
    def __init__(self, cfg: dict[str, int], embed_tokens: nn.Embedding, is_decoder: bool):
        super().__init__()
        self.embed_tokens, self.is_decoder = embed_tokens, is_decoder
        n = cfg["num_decoder_layers" if is_decoder else "num_layers"]
        self.block = nn.ModuleList(T5Block(cfg, is_decoder, i == 0) for i in range(n))
        self.final_layer_norm = T5LayerNorm(cfg["d_model"])

    def forward(self, ids: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed_tokens(ids)
        mask = None
        if self.is_decoder:  # the extended causal mask: 0 where allowed, the dtype's minimum
            t = ids.shape[1]
            allowed = torch.tril(torch.ones(t, t, dtype=torch.bool))
            mask = torch.zeros(t, t).masked_fill(~allowed, torch.finfo(x.dtype).min)[None, None]
        position_bias = None
        for block in self.block:
            x, position_bias = block.layer[0](x, mask, position_bias)
            if self.is_decoder:
                assert memory is not None
                x = block.layer[1](x, memory)
            x = block.layer[-1](x)
        return self.final_layer_norm(x)


class T5ForConditionalGeneration(nn.Module):
    """The classic structure: one `shared` module that both stacks hold, the head's weight tied
    to it (the state dict has all four names, as transformers' tied weights give)."""

    def __init__(self, cfg: dict[str, int]):
        super().__init__()
        self.model_dim = cfg["d_model"]
        self.shared = nn.Embedding(cfg["vocab_size"], cfg["d_model"])
        self.encoder = T5Stack(cfg, self.shared, False)
        self.decoder = T5Stack(cfg, self.shared, True)
        self.lm_head = nn.Linear(cfg["d_model"], cfg["vocab_size"], bias=False)
        self.lm_head.weight = self.shared.weight

    def forward(self, input_ids: torch.Tensor, decoder_input_ids: torch.Tensor) -> torch.Tensor:
        memory = self.encoder(input_ids)
        sequence_output = self.decoder(decoder_input_ids, memory)
        return self.lm_head(sequence_output * self.model_dim ** -0.5)
