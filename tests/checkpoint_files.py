"""Checkpoint files for the tests of `lazyspec weights` (and bench/weights.py): safetensors files
written by hand (the format is an 8-byte little-endian header length, a JSON header, then the
data), sparse where the data does not matter (`truncate` past the header: no disk space), and
sharded Hugging Face checkpoints with their index.

Shapes for LLaMA-2 come from tests/reference_llama.py's hand-written configs, in Hugging Face's
LlamaForCausalLM names (`model.` prefix), so they are an independent computation.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

BITS = {"F32": 32, "F16": 16, "BF16": 16, "F64": 64, "I64": 64, "I32": 32, "U8": 8, "BOOL": 8}
TORCH_TO_SAFETENSORS = {"float32": "F32", "float16": "F16", "bfloat16": "BF16",
                        "float64": "F64", "int64": "I64", "int32": "I32", "uint8": "U8",
                        "bool": "BOOL"}

Tensors = Mapping[str, tuple[str, Sequence[int]]]  # name -> (safetensors dtype, shape)


def header_of(tensors: Tensors) -> tuple[dict[str, Any], int]:
    """The JSON header (contiguous data offsets, in the given order) and the data's size."""
    header: dict[str, Any] = {}
    offset = 0
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * BITS[dtype] // 8
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    return header, offset


def write_raw(path: Path, header: Any, data_size: int, length: int | None = None) -> Path:
    """A safetensors file from a header (any JSON value, or bytes) and a sparse data region;
    `length` overrides the header length written in the first 8 bytes."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode("utf-8")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw) if length is None else length))
        f.write(raw)
        f.truncate(8 + len(raw) + data_size)  # sparse: the data is never written
    return path


def write_safetensors(path: Path, tensors: Tensors) -> Path:
    header, size = header_of(tensors)
    return write_raw(path, header, size)


def state_shapes(state: Mapping[str, Any]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """A torch state dict's names, safetensors dtypes and shapes."""
    return {name: (TORCH_TO_SAFETENSORS[str(t.dtype).removeprefix("torch.")], tuple(t.shape))
            for name, t in state.items()}


def llama_hf_shapes(config: Mapping[str, int], dtype: str = "BF16"
                    ) -> dict[str, tuple[str, tuple[int, ...]]]:
    """LlamaForCausalLM's state dict as Hugging Face saves it, from a reference config."""
    d, ffn, vocab = config["d"], config["ffn"], config["vocab_size"]
    kv = config["n_kv_head"] * (d // config["n_head"])
    out = {"model.embed_tokens.weight": (dtype, (vocab, d))}
    for i in range(config["n_layer"]):
        p = f"model.layers.{i}."
        out.update({
            p + "self_attn.q_proj.weight": (dtype, (d, d)),
            p + "self_attn.k_proj.weight": (dtype, (kv, d)),
            p + "self_attn.v_proj.weight": (dtype, (kv, d)),
            p + "self_attn.o_proj.weight": (dtype, (d, d)),
            p + "mlp.gate_proj.weight": (dtype, (ffn, d)),
            p + "mlp.up_proj.weight": (dtype, (ffn, d)),
            p + "mlp.down_proj.weight": (dtype, (d, ffn)),
            p + "input_layernorm.weight": (dtype, (d,)),
            p + "post_attention_layernorm.weight": (dtype, (d,)),
        })
    out["model.norm.weight"] = (dtype, (d,))
    out["lm_head.weight"] = (dtype, (vocab, d))
    return out


def write_sharded(folder: Path, tensors: Tensors, shards: int,
                  index_name: str = "model.safetensors.index.json") -> Path:
    """Sparse shards named as Hugging Face names them, and their index; returns the index."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(tensors)
    per = math.ceil(len(names) / shards)
    weight_map: dict[str, str] = {}
    total = 0
    for i in range(shards):
        part = names[i * per:(i + 1) * per]
        shard = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        header, size = header_of({n: tensors[n] for n in part})
        write_raw(folder / shard, header, size)
        weight_map.update(dict.fromkeys(part, shard))
        total += size
    index = folder / index_name
    index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map},
                                indent=2), encoding="utf-8")
    return index
