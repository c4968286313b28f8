"""The bundled specs that claim a reference library's names - torchvision's vit_b_16,
convnext_tiny and swin_t, Hugging Face's T5ForConditionalGeneration as t5-small - against the
names and shapes dumped from those libraries (tests/reference/*.json, a copy of
../shared/reference): name for name and shape for shape, both ways, for the parameters (a tied
tensor once), the state dict (buffers and tied names included) and the total, in the model lazyspec
builds and in the model that `export --to pytorch` writes."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import reference_modern as modern
import torch
from torch import nn

import lazyspec
from lazyspec import engine, export
from lazyspec.inputs import parse_input
from lazyspec.options import BuildOptions

SPECS = Path(__file__).resolve().parent.parent / "specs"
VENDORED = Path(__file__).resolve().parent / "reference"
# The folder the reference files come from, beside the repository (absent in a bare clone).
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "reference"

# model -> (the spec's natural inputs, its output shape, the published total)
MODELS: dict[str, tuple[tuple[str, ...], tuple[int, ...], int]] = {
    "vit_b_16": (("1,3,224,224",), (1, 1000), 86_567_656),
    "convnext_tiny": (("1,3,224,224",), (1, 1000), 28_589_128),
    "swin_t": (("1,3,224,224",), (1, 1000), 28_288_354),
    "t5_small": (("input_ids=2,16:int64", "decoder_input_ids=2,8:int64"), (2, 8, 32128),
                 60_506_624),
}
NAMES = sorted(MODELS)

Shapes = dict[str, list[int]]


def reference(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VENDORED / f"{name}.json").read_text(encoding="utf-8"))
    return data


@cache
def outcome(name: str) -> engine.Outcome:
    """The spec's engine run on meta at its natural inputs (once per test session)."""
    inputs = tuple(parse_input(i) for i in MODELS[name][0])
    result = engine.run(engine.Request(SPECS / f"{name}.yaml", inputs=inputs,
                                       options=BuildOptions(device="meta")))
    assert result.error is None, result.error
    return result


def state_shapes(module: nn.Module) -> Shapes:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def param_shapes(module: nn.Module) -> Shapes:
    return {k: list(v.shape) for k, v in module.named_parameters()}


def differences(got: Shapes, want: Shapes) -> dict[str, Any]:
    """What keeps two name -> shape tables apart, both ways (empty when they agree)."""
    return {"missing": sorted(set(want) - set(got)), "extra": sorted(set(got) - set(want)),
            "shapes": {k: (got[k], want[k]) for k in sorted(set(got) & set(want))
                       if got[k] != want[k]}}


NONE: dict[str, Any] = {"missing": [], "extra": [], "shapes": {}}


# --- the reference files ------------------------------------------------------------------------


def test_the_vendored_copy_is_the_shared_one() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is not there (a bare clone): the vendored copy stands alone")
    shared = sorted(p.name for p in SHARED.glob("*.json"))
    assert shared == sorted(p.name for p in VENDORED.glob("*.json"))
    for name in shared:
        assert (VENDORED / name).read_bytes() == (SHARED / name).read_bytes(), name


@pytest.mark.parametrize("name", NAMES)
def test_reference_file_agrees_with_itself(name: str) -> None:
    data = reference(name)
    assert data["model"] == name
    assert data["total_parameters"] == MODELS[name][2]
    counts = [int(torch.Size(shape).numel()) for shape in data["parameters"].values()]
    assert sum(counts) == data["total_parameters"]
    for key, shape in data["parameters"].items():  # every parameter is in the state dict
        assert data["state_dict"][key] == shape


# --- the spec's model ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_parameters_match_name_for_name(name: str) -> None:
    result = outcome(name).result
    assert result is not None
    want = reference(name)
    got = {p.path: list(p.shape) for p in result.params}
    assert len(got) == len(result.params)  # no name twice
    assert differences(got, want["parameters"]) == NONE
    assert result.totals.params == want["total_parameters"] == MODELS[name][2]
    assert result.totals.trainable == want["total_parameters"]
    assert sum(p.count for p in result.params) == want["total_parameters"]
    assert result.outputs == [MODELS[name][1]]


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_matches_name_for_name(name: str) -> None:
    built = outcome(name).built
    assert built is not None
    want = reference(name)
    assert differences(state_shapes(built.module), want["state_dict"]) == NONE
    assert differences(param_shapes(built.module), want["parameters"]) == NONE


@pytest.mark.parametrize("name", NAMES)
def test_exported_pytorch_model_matches_name_for_name(name: str) -> None:
    done = outcome(name)
    assert done.built is not None and done.result is not None
    code = export.pytorch_code(done.built, done.result)
    namespace: dict[str, Any] = {}
    exec(compile(code, f"<{name} export>", "exec"), namespace)  # the code under test
    with torch.device("meta"):
        model = namespace["Model"]()
    want = reference(name)
    assert differences(state_shapes(model), want["state_dict"]) == NONE
    assert differences(param_shapes(model), want["parameters"]) == NONE


# --- what the names alone do not show ------------------------------------------------------------


def test_swin_shifts_where_torchvision_does() -> None:
    """torchvision sets the shift to 0 when the window covers the feature map: Swin-T's last
    stage (7x7 at 224) has no Roll, the earlier stages roll in every odd block."""
    result = outcome("swin_t").result
    assert result is not None
    skipped = {n.path: n.skipped for n in result.nodes}
    for stage in (1, 3, 5):
        assert skipped[f"features.{stage}.0.attn.shifted"] == "when: false"
        assert skipped[f"features.{stage}.1.attn.shifted"] is None
        assert skipped[f"features.{stage}.1.attn.unshifted"] is None
    assert skipped["features.7.0.attn.shifted"] == "when: false"
    assert skipped["features.7.1.attn.shifted"] == "when: false"
    assert skipped["features.7.1.attn.unshifted"] == "when: false"


def test_swin_holds_torchvisions_relative_position_index() -> None:
    """The buffer's values (a meta run has none: compiled on the CPU, small, with 7x7 windows)."""
    done = engine.run(engine.Request(SPECS / "swin_t.yaml", stage="compile", options=BuildOptions(
        device="cpu", scale="tiny", overrides={"window_size": 7})))
    assert done.error is None and done.built is not None
    index = done.built.module.state_dict()["features.5.1.attn.relative_position_index"]
    assert index.dtype == torch.int64 and index.shape == (2401,)
    # Row (dy + 6) * 13 + (dx + 6) of the table for the offset (dy, dx) between two tokens.
    pairs = index.view(49, 49)
    assert pairs[0, :3].tolist() == [84, 83, 82] and pairs[0, 7].item() == 84 - 13
    assert torch.equal(pairs.diagonal(), torch.full((49,), 84))
    assert torch.equal(pairs + pairs.T, torch.full((49, 49), 168))
    assert int(index.min()) == 0 and int(index.max()) == 168


def test_t5_position_bias_lives_in_block_0_of_each_stack() -> None:
    result = outcome("t5_small").result
    assert result is not None
    nodes = {n.path: n for n in result.nodes}
    for stack, length in (("encoder", 16), ("decoder", 8)):
        first = f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias"
        assert nodes[first].output == (1, 8, length, length)
        later = f"{stack}.block.1.layer.0.SelfAttention.relative_attention_bias"
        assert nodes[later].skipped == "when: false"
    assert nodes["decoder.block.0.layer.0.SelfAttention.causal_mask"].output == (8, 8)
    assert nodes["encoder.block.0.layer.0.SelfAttention.causal_mask"].skipped == "when: false"
    assert nodes["scaled"].output == (2, 8, 512)


def test_t5_ties_the_embedding_to_both_stacks_and_the_head() -> None:
    built = outcome("t5_small").built
    assert built is not None
    module = built.module
    shared = module.get_parameter("shared.weight")
    for name in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
                 "lm_head.weight"):
        assert module.get_parameter(name) is shared


def test_a_skipped_node_is_not_reported_as_computed(tmp_path: Path) -> None:
    """`when: false` nodes compute nothing: no LS151 for them (T5's causal mask and the Add that
    reads it are both skipped in the encoder), while a computed dead node still warns."""
    spec = tmp_path / "skip.yaml"
    spec.write_text("params: {causal: false}\nlayers:\n  - x: LazyLinear(4)\n"
                    "  - mask: ReLU\n    when: causal\n  - both: Add\n    in: [x, mask]\n"
                    "    when: causal\n  - dead: Tanh\n    in: x\n  - y: LazyLinear(2)\n"
                    "    in: both\n", encoding="utf-8")
    done = engine.run(engine.Request(spec, stage="compile"))
    assert done.error is None
    assert [d.message for d in done.findings] == [
        "node 'dead' (Tanh) is computed but its output is never used"]


# --- the tiny scales compute what the libraries' code computes -----------------------------------

T5_TINY = {"vocab_size": 128, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2,
           "num_decoder_layers": 2, "num_heads": 4, "buckets": 8, "max_distance": 16}
# model -> (the reference at the spec's `tiny` sizes, the inputs)
TINY: dict[str, tuple[Callable[[], nn.Module], Callable[[], tuple[torch.Tensor, ...]]]] = {
    "vit_b_16": (lambda: modern.VisionTransformer(32, 8, 2, 4, 32, 64, 10),
                 lambda: (torch.randn(2, 3, 32, 32),)),
    "convnext_tiny": (lambda: modern.ConvNeXt([8, 16, 24, 32], [1, 1, 2, 1], 10),
                      lambda: (torch.randn(2, 3, 32, 32),)),
    "swin_t": (lambda: modern.SwinTransformer(4, 8, [2, 2, 2, 2], [2, 2, 4, 4], 2, 10),
               lambda: (torch.randn(2, 3, 32, 32),)),
    "t5_small": (lambda: modern.T5ForConditionalGeneration(T5_TINY),
                 lambda: (torch.randint(0, 128, (2, 16)), torch.randint(0, 128, (2, 8)))),
}


def flag(x: torch.Tensor) -> str:
    """The `--input` text of a tensor: `2,16:int64`."""
    return ",".join(map(str, x.shape)) + (":int64" if x.dtype == torch.int64 else "")


@pytest.mark.parametrize("name", NAMES)
def test_tiny_computes_what_the_reference_computes(name: str) -> None:
    """The reference's weights loaded into the spec's model (strict: every key and shape) give
    the reference's outputs, so the forward pass is the library's, not only the names."""
    factory, make_inputs = TINY[name]
    torch.manual_seed(0)
    reference = factory().eval()
    with torch.no_grad():  # norms start at 1 and layer scales at 1e-6: make every tensor count
        for p in reference.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    xs = make_inputs()
    spec = lazyspec.load(SPECS / f"{name}.yaml")
    model = spec.materialize(*(flag(x) for x in xs), device="cpu", scale="tiny")
    state = model.state_dict()
    for key, buffer in reference.named_buffers():  # computed by the spec, not loaded
        assert torch.equal(state[key], buffer), key
    model.load_state_dict(reference.state_dict())
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(*xs), reference(*xs), rtol=1e-4, atol=1e-4)
