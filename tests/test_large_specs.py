"""The large bundled specs: LLaMA-2 7B and 70B against their published parameter counts and a
plain-PyTorch reference (tests/reference_llama.py), and the 1,000-block synthetic spec."""

from __future__ import annotations

from pathlib import Path

import pytest
import reference_llama as ref
import torch
from torch import nn

import lazyspec
from lazyspec import engine, export
from lazyspec.inputs import parse_input
from lazyspec.options import BuildOptions

SPECS = Path(__file__).resolve().parent.parent / "specs"

LLAMA = [
    # spec, full sizes, tiny sizes, published count
    ("llama2-7b.yaml", ref.LLAMA2_7B, ref.LLAMA2_7B_TINY, ref.LLAMA2_7B_PARAMS),
    ("llama2-70b.yaml", ref.LLAMA2_70B, ref.LLAMA2_70B_TINY, ref.LLAMA2_70B_PARAMS),
]
IDS = ["7b", "70b"]


def records(result) -> list[tuple[str, tuple[int, ...]]]:  # type: ignore[no-untyped-def]
    return [(p.path, tuple(p.shape)) for p in result.params]


def param_shapes(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(n, tuple(p.shape)) for n, p in model.named_parameters()]


def on_meta(**sizes: int) -> ref.Llama:
    with torch.device("meta"):
        return ref.Llama(**sizes)


# --- the published counts, on meta, through the API ---------------------------------------------


@pytest.mark.parametrize(("name", "sizes", "tiny", "published"), LLAMA, ids=IDS)
def test_published_count_on_meta(name: str, sizes: dict[str, int], tiny: dict[str, int],
                                 published: int) -> None:
    result = lazyspec.load(SPECS / name).infer("2,64:int64")
    assert result.device == "meta"
    assert result.outputs == [(2, 64, 32000)]
    assert result.totals.params == published
    assert result.totals.trainable == published
    assert sum(p.count for p in result.params) == published
    assert result.totals.bytes == 4 * published  # float32
    assert all(p.shared is None for p in result.params)  # the head is not tied
    # The reference agrees with the published number, and with the spec name for name.
    reference = on_meta(**sizes)
    assert sum(p.numel() for p in reference.parameters()) == published
    assert records(result) == param_shapes(reference)


def test_70b_uses_grouped_query_attention() -> None:
    result = lazyspec.load(SPECS / "llama2-70b.yaml").infer("1,8:int64")
    shapes = dict(records(result))
    assert shapes["layers.0.self_attn.q_proj.weight"] == (8192, 8192)
    assert shapes["layers.0.self_attn.k_proj.weight"] == (1024, 8192)  # 8 KV heads x 128
    assert shapes["layers.0.self_attn.v_proj.weight"] == (1024, 8192)
    assert shapes["layers.0.self_attn.o_proj.weight"] == (8192, 8192)
    assert shapes["layers.79.mlp.gate_proj.weight"] == (28672, 8192)
    assert shapes["layers.79.mlp.down_proj.weight"] == (8192, 28672)
    assert "layers.80.norm.weight" not in shapes
    nodes = {n.path: n.output for n in result.nodes}
    assert nodes["layers.0.self_attn.q"] == (1, 64, 8, 128)
    assert nodes["layers.0.self_attn.k"] == (1, 8, 8, 128)
    assert nodes["layers.0.self_attn.attn"] == (1, 64, 8, 128)


# --- the tiny scales against the reference --------------------------------------------------------


@pytest.mark.parametrize(("name", "sizes", "tiny", "published"), LLAMA, ids=IDS)
def test_tiny_matches_reference_name_for_name(name: str, sizes: dict[str, int],
                                              tiny: dict[str, int], published: int) -> None:
    spec = lazyspec.load(SPECS / name)
    result = spec.infer("2,16:int64", scale="tiny")
    reference = on_meta(**tiny)
    assert result.outputs == [(2, 16, tiny["vocab_size"])]
    assert records(result) == param_shapes(reference)
    assert result.totals.params == sum(p.numel() for p in reference.parameters())
    assert {p.module_type for p in result.params} == {"Embedding", "RMSNorm", "Linear"}
    # The materialised module's state dict has the reference's keys and shapes (no buffers).
    model = spec.materialize("2,16:int64", scale="tiny")
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in reference.state_dict().items()]


@pytest.mark.parametrize(("name", "sizes", "tiny", "published"), LLAMA, ids=IDS)
def test_tiny_computes_what_the_reference_computes(name: str, sizes: dict[str, int],
                                                   tiny: dict[str, int], published: int) -> None:
    """RMSNorm, SwiGLU, causal (grouped-query) attention and the residuals are right."""
    torch.manual_seed(0)
    idx = torch.randint(0, tiny["vocab_size"], (2, 16))
    model = lazyspec.load(SPECS / name).materialize(idx.shape, device="cpu", scale="tiny")
    reference = ref.Llama(**tiny).eval()
    with torch.no_grad():  # RMSNorm weights start at 1: make them differ so a swap shows
        for p in reference.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    model.load_state_dict(reference.state_dict())  # strict: every key and shape agrees
    model.eval()
    with torch.no_grad():
        out = model(idx)
        torch.testing.assert_close(out, reference(idx), rtol=1e-4, atol=1e-4)
        changed = idx.clone()
        changed[:, 10] = (changed[:, 10] + 1) % tiny["vocab_size"]
        out2 = model(changed)
    torch.testing.assert_close(out2[:, :10], out[:, :10])  # causal
    assert not torch.allclose(out2[:, 10:], out[:, 10:])


@pytest.mark.parametrize(("name", "sizes", "tiny", "published"), LLAMA, ids=IDS)
def test_tiny_exported_code_computes_what_the_reference_computes(
        name: str, sizes: dict[str, int], tiny: dict[str, int], published: int) -> None:
    """`export --to pytorch` writes LLaMA, rotary embeddings included: the code alone (no
    lazyspec) gives the reference's logits from the reference's weights."""
    done = engine.run(engine.Request(SPECS / name, inputs=(parse_input("2,16:int64"),),
                                     options=BuildOptions(device="cpu", scale="tiny")))
    assert done.built is not None and done.result is not None
    code = export.pytorch_code(done.built, done.result)
    assert code.count("= rotary_embedding(") == 2  # q and k, in the one Attention class
    namespace: dict[str, object] = {}
    exec(compile(code, "<exported>", "exec"), namespace)  # the code under test
    model = namespace["Model"]()
    assert isinstance(model, nn.Module)
    torch.manual_seed(0)
    reference = ref.Llama(**tiny).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    model.load_state_dict(reference.state_dict())  # strict
    model.eval()
    idx = torch.randint(0, tiny["vocab_size"], (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(model(idx), reference(idx), rtol=1e-4, atol=1e-4)


# --- the synthetic 1,000-block spec ---------------------------------------------------------------


def test_synthetic_1000_node_count() -> None:
    result = lazyspec.load(SPECS / "synthetic-1000.yaml").infer("2,64")
    assert result.outputs == [(2, 64)]
    ops = [n.op for n in result.nodes]
    assert ops.count("Residual") == 1000
    for op in ("RMSNorm", "LazyLinear", "SiLU", "Add"):
        assert ops.count(op) == 1000
    # 1,000 blocks of 1 + 4 nodes, plus the node that holds the repetition.
    assert len(result.nodes) == 5001
    assert result.nodes[0].path == "blocks" and result.nodes[-1].path == "blocks.999.sum"
    assert result.totals.params == 1000 * (64 + 64 * 64 + 64) == 4_224_000
    tiny = lazyspec.load(SPECS / "synthetic-1000.yaml").infer("2,64", scale="tiny")
    assert len(tiny.nodes) == 1 + 10 * 5 and tiny.totals.params == 10 * (64 + 64 * 64 + 64)
