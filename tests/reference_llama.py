"""A plain-PyTorch LLaMA-2 (no lazyspec, no lazy modules) for specs/llama2-7b.yaml and
specs/llama2-70b.yaml.

Every size is given by hand, so its parameter names, shapes and counts are an independent
computation to check the specs against. Names follow Hugging Face's LlamaForCausalLM without the
`model.` prefix (embed_tokens, layers.N.self_attn.q_proj, ..., norm, lm_head). Modules are
registered in forward order (input_layernorm, self_attn, post_attention_layernorm, mlp), as the
spec lists its nodes; Hugging Face registers self_attn and mlp before the two norms, so its
state-dict keys are the same set in a different order (load_state_dict does not care).

Like the specs, it turns q and k with rotary position embeddings written as Hugging Face's
LlamaRotaryEmbedding and apply_rotary_pos_emb compute them (inv_freq from theta 10000, the
frequencies as a matrix product with the positions 0 .. T-1, cos and sin of [freqs, freqs],
rotate_half); they hold no parameters. Attention is written out (no
F.scaled_dot_product_attention), and grouped-query attention repeats each key/value head for its
group of query heads, as Hugging Face's repeat_kv does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LLAMA2_7B = {"vocab_size": 32000, "d": 4096, "n_layer": 32, "n_head": 32, "n_kv_head": 32,
             "ffn": 11008}
LLAMA2_70B = {"vocab_size": 32000, "d": 8192, "n_layer": 80, "n_head": 64, "n_kv_head": 8,
              "ffn": 28672}
# The specs' `tiny` scales.
LLAMA2_7B_TINY = {"vocab_size": 256, "d": 64, "n_layer": 2, "n_head": 4, "n_kv_head": 4,
                  "ffn": 172}
LLAMA2_70B_TINY = {"vocab_size": 256, "d": 64, "n_layer": 2, "n_head": 8, "n_kv_head": 2,
                   "ffn": 224}

# Published parameter counts (Touvron et al. 2023; Hugging Face's meta-llama/Llama-2-*-hf).
LLAMA2_7B_PARAMS = 6_738_415_616
LLAMA2_70B_PARAMS = 68_976_648_192


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, as LlamaRMSNorm."""

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotary_cos_sin(head_dim: int, t: int, dtype: torch.dtype, theta: float = 10000.0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [T, head_dim] as LlamaRotaryEmbedding computes them (attention_scaling 1)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float()
                                / head_dim))
    positions = torch.arange(t, dtype=torch.int64).float()
    freqs = (inv_freq[:, None] @ positions[None, :]).transpose(0, 1)  # [T, head_dim / 2]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, heads, T, head_dim] turned by position, as apply_rotary_pos_emb."""
    return x * cos + rotate_half(x) * sin


class RotaryEmbedding(nn.Module):
    """q or k [B, heads, T, head_dim] turned by position (no parameters), as Hugging Face's
    LlamaRotaryEmbedding and apply_rotary_pos_emb do."""

    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        self.head_dim, self.theta = head_dim, theta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[-2]
        cos, sin = (c.to(x.device) for c in rotary_cos_sin(self.head_dim, t, x.dtype, self.theta))
        return apply_rotary(x, cos, sin)


class LlamaAttention(nn.Module):
    def __init__(self, d: int, n_head: int, n_kv_head: int, theta: float = 10000.0):
        super().__init__()
        assert d % n_head == 0 and n_head % n_kv_head == 0
        self.n_head, self.n_kv_head, self.head_dim = n_head, n_kv_head, d // n_head
        self.rotary = RotaryEmbedding(self.head_dim, theta)
        self.q_proj = nn.Linear(d, n_head * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d, n_kv_head * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d, n_kv_head * self.head_dim, bias=False)
        self.o_proj = nn.Linear(n_head * self.head_dim, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, t, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, t, self.n_kv_head, self.head_dim).transpose(1, 2)
        q, k = self.rotary(q), self.rotary(k)
        group = self.n_head // self.n_kv_head  # query heads per key/value head
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        att = F.softmax(att.masked_fill(~causal, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, self.n_head * self.head_dim)
        return self.o_proj(y)


class LlamaMLP(nn.Module):
    def __init__(self, d: int, ffn: int):
        super().__init__()
        self.gate_proj = nn.Linear(d, ffn, bias=False)
        self.up_proj = nn.Linear(d, ffn, bias=False)
        self.down_proj = nn.Linear(ffn, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, d: int, n_head: int, n_kv_head: int, ffn: int, eps: float = 1e-5):
        super().__init__()
        self.input_layernorm = RMSNorm(d, eps)
        self.self_attn = LlamaAttention(d, n_head, n_kv_head)
        self.post_attention_layernorm = RMSNorm(d, eps)
        self.mlp = LlamaMLP(d, ffn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    def __init__(self, vocab_size: int = 32000, d: int = 4096, n_layer: int = 32,
                 n_head: int = 32, n_kv_head: int = 32, ffn: int = 11008, eps: float = 1e-5):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab_size, d)
        self.layers = nn.ModuleList(LlamaDecoderLayer(d, n_head, n_kv_head, ffn, eps)
                                    for _ in range(n_layer))
        self.norm = RMSNorm(d, eps)
        self.lm_head = nn.Linear(d, vocab_size, bias=False)  # untied

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.embed_tokens(idx)
        for layer in self.layers:
            x = layer(x)
        return self.lm_head(self.norm(x))
