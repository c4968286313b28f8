"""Plain-PyTorch transcriptions (no lazyspec, no transformers) of Hugging Face's
MistralForCausalLM and Qwen2ForCausalLM (the LLaMA layout with a sliding window, biases and a
tied head), BertModel and ViTForImageClassification, with their full state-dict keys, for
tests/test_import_hf.py.

transformers is not a test dependency, so these classes follow its forward code line by line
(attention written out, no F.scaled_dot_product_attention), with the module names that the
checkpoints on the Hub hold (transformers 4's: transformers 5 renames ViT's modules as it loads
them). Each was checked against transformers 5.24 once, at small sizes: same keys and shapes, the
same outputs after load_state_dict. Dropout is left out (the identity in eval mode).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from reference_llama import RMSNorm, apply_rotary, rotary_cos_sin
from torch import nn

# --- transformers.models.{mistral,qwen2}: the LLaMA layout ---------------------------------------


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           allowed: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q k^T / sqrt(head_dim)), where allowed, times v."""
    att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if allowed is not None:
        att = att.masked_fill(~allowed, float("-inf"))
    return F.softmax(att, dim=-1) @ v


def causal(t: int, window: int | None = None) -> torch.Tensor:
    """Where query i may attend to key j: j <= i, and with a sliding window j > i - window
    (transformers' sliding_window_overlay)."""
    i, j = torch.arange(t)[:, None], torch.arange(t)[None, :]
    allowed = j <= i
    return allowed & (j > i - window) if window is not None else allowed


class DecoderAttention(nn.Module):
    def __init__(self, c: dict[str, Any], window: int | None):
        super().__init__()
        d, self.heads, self.kv, self.hd = c["d"], c["heads"], c["kv"], c["head_dim"]
        self.theta, self.window = c["theta"], window
        self.q_proj = nn.Linear(d, self.heads * self.hd, bias=c["qkv_bias"])
        self.k_proj = nn.Linear(d, self.kv * self.hd, bias=c["qkv_bias"])
        self.v_proj = nn.Linear(d, self.kv * self.hd, bias=c["qkv_bias"])
        self.o_proj = nn.Linear(self.heads * self.hd, d, bias=c["o_bias"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.heads, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.kv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.kv, self.hd).transpose(1, 2)
        cos, sin = rotary_cos_sin(self.hd, t, x.dtype, self.theta)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        group = self.heads // self.kv  # repeat_kv
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        y = attend(q, k, v, causal(t, self.window))
        return self.o_proj(y.transpose(1, 2).reshape(b, t, self.heads * self.hd))


class GatedMLP(nn.Module):
    def __init__(self, c: dict[str, Any]):
        super().__init__()
        self.gate_proj = nn.Linear(c["d"], c["ffn"], bias=c["mlp_bias"])
        self.up_proj = nn.Linear(c["d"], c["ffn"], bias=c["mlp_bias"])
        self.down_proj = nn.Linear(c["ffn"], c["d"], bias=c["mlp_bias"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, c: dict[str, Any], window: int | None):
        super().__init__()
        self.self_attn = DecoderAttention(c, window)
        self.mlp = GatedMLP(c)
        self.input_layernorm = RMSNorm(c["d"], c["eps"])
        self.post_attention_layernorm = RMSNorm(c["d"], c["eps"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class DecoderModel(nn.Module):
    def __init__(self, c: dict[str, Any]):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab"], c["d"])
        self.layers = nn.ModuleList(
            DecoderLayer(c, c["window"] if i >= c["first_window_layer"] else None)
            for i in range(c["layers"]))
        self.norm = RMSNorm(c["d"], c["eps"])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


class CausalLM(nn.Module):
    """MistralForCausalLM (window in every layer) or Qwen2ForCausalLM (q/k/v biases; a window
    from layer max_window_layers on when use_sliding_window)."""

    def __init__(self, c: dict[str, Any]):
        super().__init__()
        self.model = DecoderModel(c)
        self.lm_head = nn.Linear(c["d"], c["vocab"], bias=False)
        if c["tie"]:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.model(ids))


# --- transformers.models.bert: BertModel ---------------------------------------------------------


class BertEmbeddings(nn.Module):
    def __init__(self, c: dict[str, Any]):
        super().__init__()
        self.word_embeddings = nn.Embedding(c["vocab"], c["d"])
        self.position_embeddings = nn.Embedding(c["positions"], c["d"])
        self.token_type_embeddings = nn.Embedding(c["types"], c["d"])
        self.LayerNorm = nn.LayerNorm(c["d"], eps=c["eps"])

    def forward(self, ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        x = self.word_embeddings(ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(torch.arange(ids.shape[1])[None])
        return self.LayerNorm(x)


class SelfAttention(nn.Module):
    """BertSelfAttention and ViTSelfAttention: query, key, value; bidirectional."""

    def __init__(self, d: int, heads: int, bias: bool = True):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(d, d, bias=bias)
        self.key = nn.Linear(d, d, bias=bias)
        self.value = nn.Linear(d, d, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        y = attend(split(self.query(x)), split(self.key(x)), split(self.value(x)))
        return y.transpose(1, 2).reshape(b, t, d)


class DenseNorm(nn.Module):
    """BertSelfOutput and BertOutput: LayerNorm(dense(x) + residual)."""

    def __init__(self, d_in: int, d: int, eps: float):
        super().__init__()
        self.dense = nn.Linear(d_in, d)
        self.LayerNorm = nn.LayerNorm(d, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class BertAttention(nn.Module):
    def __init__(self, c: dict[str, Any]):
        super().__init__()
        self.self = SelfAttention(c["d"], c["heads"])
        self.output = DenseNorm(c["d"], c["d"], c["eps"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x), x)


class Dense(nn.Module):
    """BertIntermediate, ViTIntermediate (dense, then GELU), ViTSelfOutput (dense)."""

    def __init__(self, d_in: int, d_out: int, act: bool):
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x)) if self.act else self.dense(x)


class BertLayer(nn.Module):
    def __init__(self, c: dict[str, Any]):
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = Dense(c["d"], c["ffn"], act=True)
        self.output = DenseNorm(c["ffn"], c["d"], c["eps"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.attention(x)
        return self.output(self.intermediate(h), h)


class Layers(nn.Module):
    """BertEncoder, ViTEncoder: `layer.N`."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layer = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layer:
            x = layer(x)
        return x


class BertPooler(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.dense = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(x[:, 0]))


class BertModel(nn.Module):
    def __init__(self, c: dict[str, Any]):
        super().__init__()
        self.embeddings = BertEmbeddings(c)
        self.encoder = Layers([BertLayer(c) for _ in range(c["layers"])])
        self.pooler = BertPooler(c["d"])

    def forward(self, ids: torch.Tensor, token_type_ids: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.encoder(self.embeddings(ids, token_type_ids))
        return x, self.pooler(x)


# --- transformers.models.vit: ViTForImageClassification ------------------------------------------


class ViTPatchEmbeddings(nn.Module):
    def __init__(self, c: dict[str, Any]):
        super().__init__()
        self.projection = nn.Conv2d(c["channels"], c["d"], c["patch"], stride=c["patch"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(x).flatten(2).transpose(1, 2)


class ViTEmbeddings(nn.Module):
    def __init__(self, c: dict[str, Any]):
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, c["d"]))
        self.patch_embeddings = ViTPatchEmbeddings(c)
        patches = (c["image"] // c["patch"]) ** 2
        self.position_embeddings = nn.Parameter(torch.randn(1, patches + 1, c["d"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.patch_embeddings(x)
        e = torch.cat((self.cls_token.expand(e.shape[0], -1, -1), e), dim=1)
        return e + self.position_embeddings


class ViTAttention(nn.Module):
    def __init__(self, c: dict[str, Any]):
        super().__init__()
        self.attention = SelfAttention(c["d"], c["heads"], c["qkv_bias"])
        self.output = Dense(c["d"], c["d"], act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.attention(x))


class ViTOutput(nn.Module):
    def __init__(self, c: dict[str, Any]):
        super().__init__()
        self.dense = nn.Linear(c["ffn"], c["d"])

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.dense(x) + residual


class ViTLayer(nn.Module):
    def __init__(self, c: dict[str, Any]):
        super().__init__()
        self.attention = ViTAttention(c)
        self.intermediate = Dense(c["d"], c["ffn"], act=True)
        self.output = ViTOutput(c)
        self.layernorm_before = nn.LayerNorm(c["d"], eps=c["eps"])
        self.layernorm_after = nn.LayerNorm(c["d"], eps=c["eps"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.attention(self.layernorm_before(x)) + x
        return self.output(self.intermediate(self.layernorm_after(h)), h)


class ViTModel(nn.Module):
    """Without its pooler, as ViTForImageClassification builds it."""

    def __init__(self, c: dict[str, Any]):
        super().__init__()
        self.embeddings = ViTEmbeddings(c)
        self.encoder = Layers([ViTLayer(c) for _ in range(c["layers"])])
        self.layernorm = nn.LayerNorm(c["d"], eps=c["eps"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layernorm(self.encoder(self.embeddings(x)))


class ViTForImageClassification(nn.Module):
    def __init__(self, c: dict[str, Any]):
        super().__init__()
        self.vit = ViTModel(c)
        self.classifier = nn.Linear(c["d"], c["labels"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.vit(x)[:, 0, :])
