"""The bundled example specs (specs/*.yaml) against the language's normative results and against
plain-PyTorch reference models (tests/reference_models.py) that set every size by hand."""

from __future__ import annotations

from pathlib import Path

import pytest
import reference_models as ref
import torch
from torch import nn

import lazyspec
from lazyspec.errors import SpecError

SPECS = Path(__file__).resolve().parent.parent / "specs"


def spec(name: str) -> lazyspec.api.LoadedSpec:
    return lazyspec.load(SPECS / name)


def records(result) -> list[tuple[str, tuple[int, ...]]]:  # type: ignore[no-untyped-def]
    return [(p.path, tuple(p.shape)) for p in result.params]


def materialised(name: str, *inputs: torch.Tensor, device: str = "meta",
                 scale: str | None = None, params: dict | None = None) -> nn.Module:
    """The spec's module, built and run once by hand so that its lazy layers materialise."""
    model = spec(name).build(device=device, scale=scale, params=params)
    model.eval()
    with torch.no_grad():
        model(*inputs)
    return model


# --- the normative examples of the spec language -------------------------------------------------

# (spec, inputs, scale, output shape, parameter count); the numbers are the contract's, and
# test_reference_counts checks each against a reference model.
NORMATIVE = [
    ("mlp.yaml", ("2,20",), None, (2, 10), 7_946),
    ("mlp_fixed.yaml", ("2,20",), None, (2, 10), 7_946),
    ("lenet.yaml", ("1,1,28,28",), None, (1, 10), 61_706),
    ("resnet18.yaml", ("2,3,224,224",), None, (2, 1000), 11_689_512),
    ("resnet18.yaml", ("2,3,224,224",), "r34", (2, 1000), 21_797_672),
    ("gpt2.yaml", ("2,64:int64",), None, (2, 64, 50257), 124_439_808),
]


@pytest.mark.parametrize(("name", "inputs", "scale", "output", "params"), NORMATIVE,
                         ids=[f"{n}-{s or 'default'}" for n, _, s, _, _ in NORMATIVE])
def test_normative_results(name: str, inputs: tuple[str, ...], scale: str | None,
                           output: tuple[int, ...], params: int) -> None:
    result = spec(name).infer(*inputs, scale=scale)
    assert result.outputs == [output]
    assert result.totals.params == params
    assert sum(p.count for p in result.params) == params


@pytest.mark.parametrize(("factory", "params"), [
    (ref.mlp, 7_946), (ref.lenet, 61_706), (ref.resnet18, 11_689_512),
    (ref.resnet34, 21_797_672), (ref.GPT2, 124_439_808),
], ids=["mlp", "lenet", "resnet18", "resnet34", "gpt2"])
def test_reference_counts(factory, params: int) -> None:  # type: ignore[no-untyped-def]
    """The contract's numbers agree with models written by hand (so both sides are checked)."""
    assert ref.count(ref.on_meta(factory)) == params


def test_mlp_parameter_names() -> None:
    result = spec("mlp.yaml").infer("2,20")
    assert records(result) == [("0.weight", (256, 20)), ("0.bias", (256,)),
                               ("2.weight", (10, 256)), ("2.bias", (10,))]
    assert records(result) == ref.param_shapes(ref.mlp())


def test_lenet_matches_reference() -> None:
    result = spec("lenet.yaml").infer("1,1,28,28")
    assert records(result) == ref.param_shapes(ref.on_meta(ref.lenet))
    assert [p.module_type for p in result.params if p.path.endswith("weight")] == \
        ["Conv2d", "Conv2d", "Linear", "Linear", "Linear"]


# --- ResNet: torchvision's names, parameters and buffers ------------------------------------------


@pytest.mark.parametrize(("scale", "factory"), [(None, ref.resnet18), ("r34", ref.resnet34)],
                         ids=["resnet18", "resnet34"])
def test_resnet_state_dict_matches_torchvision_structure(scale: str | None, factory) -> None:  # type: ignore[no-untyped-def]
    x = torch.empty(2, 3, 224, 224, device="meta")
    model = materialised("resnet18.yaml", x, scale=scale)
    reference = ref.on_meta(factory)
    # Keys, order and shapes of parameters and buffers (running_mean, num_batches_tracked, ...).
    assert ref.state_shapes(model) == ref.state_shapes(reference)
    assert ref.param_shapes(model) == ref.param_shapes(reference)
    buffers = [k for k, _ in model.named_buffers()]
    assert "layer2.0.downsample.1.running_var" in buffers
    assert "layer1.0.downsample.0.weight" not in model.state_dict()  # stride 1: no projection
    # The dry run's report lists the same parameters.
    result = spec("resnet18.yaml").infer("2,3,224,224", scale=scale)
    assert records(result) == ref.param_shapes(reference)
    assert result.totals.buffers == sum(b.numel() for b in reference.buffers())


def test_resnet18_computes_what_the_reference_computes() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    model = materialised("resnet18.yaml", x, device="cpu")
    reference = ref.resnet18().eval()
    model.load_state_dict(reference.state_dict())  # strict: every key and shape must agree
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


# --- GPT-2: Hugging Face's names, the tied head ---------------------------------------------------

GPT2_TINY = {"vocab_size": 512, "n_positions": 64, "n_embd": 64, "n_layer": 2, "n_head": 4}


def test_gpt2_tiny_matches_reference() -> None:
    result = spec("gpt2.yaml").infer("2,16:int64", scale="tiny")
    reference = ref.on_meta(ref.GPT2, **GPT2_TINY)
    assert result.outputs == [(2, 16, GPT2_TINY["vocab_size"])]
    # The tied head is one parameter: lm_head.weight is not listed again, and wte.weight is marked.
    assert records(result) == ref.param_shapes(reference)
    assert "lm_head.weight" not in [p.path for p in result.params]
    wte = next(p for p in result.params if p.path == "wte.weight")
    assert wte.shared is not None and "lm_head.weight" in wte.shared
    assert result.totals.params == ref.count(reference)
    # Hugging Face's names come out of the node names.
    paths = {p.path for p in result.params}
    for i in range(GPT2_TINY["n_layer"]):
        for part in ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj"):
            assert f"h.{i}.{part}.weight" in paths
            assert f"h.{i}.{part}.bias" in paths


def test_gpt2_tiny_state_dict_matches_reference() -> None:
    idx = torch.zeros(2, 16, dtype=torch.int64, device="meta")
    model = materialised("gpt2.yaml", idx, scale="tiny")
    reference = ref.on_meta(ref.GPT2, **GPT2_TINY)
    assert ref.state_shapes(model) == ref.state_shapes(reference)


def test_gpt2_tiny_computes_what_the_reference_computes() -> None:
    """Heads split by Unflatten/Transpose, causal attention and the residuals are right."""
    torch.manual_seed(0)
    idx = torch.randint(0, GPT2_TINY["vocab_size"], (2, 16))
    model = materialised("gpt2.yaml", idx, device="cpu", scale="tiny")
    reference = ref.GPT2(**GPT2_TINY).eval()
    model.load_state_dict(reference.state_dict())
    with torch.no_grad():
        out = model(idx)
        torch.testing.assert_close(out, reference(idx), rtol=1e-4, atol=1e-4)
        # Causal: changing a later token leaves the earlier positions' logits unchanged.
        changed = idx.clone()
        changed[:, 10] = (changed[:, 10] + 1) % GPT2_TINY["vocab_size"]
        out2 = model(changed)
    torch.testing.assert_close(out2[:, :10], out[:, :10])
    assert not torch.allclose(out2[:, 10:], out[:, 10:])


@pytest.mark.parametrize(("scale", "sizes"), [
    (None, ref.GPT2_SMALL),
    ("medium", {**ref.GPT2_SMALL, "n_embd": 1024, "n_layer": 24, "n_head": 16}),
], ids=["small", "medium"])
def test_gpt2_full_size_on_meta(scale: str | None, sizes: dict[str, int]) -> None:
    result = spec("gpt2.yaml").infer("2,64:int64", scale=scale)
    reference = ref.on_meta(ref.GPT2, **sizes)
    assert result.outputs == [(2, 64, sizes["vocab_size"])]
    assert records(result) == ref.param_shapes(reference)
    assert result.totals.params == ref.count(reference)
    assert result.inputs[0].dtype == "int64"


# --- U-Net ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [2, 5])
def test_unet_matches_reference(num_classes: int) -> None:
    result = spec("unet.yaml").infer("1,3,64,64", params={"num_classes": num_classes})
    reference = ref.on_meta(ref.UNet, in_channels=3, num_classes=num_classes)
    assert result.outputs == [(1, num_classes, 64, 64)]
    assert records(result) == ref.param_shapes(reference)
    assert result.totals.params == ref.count(reference)
    assert result.totals.buffers == sum(b.numel() for b in reference.buffers())
    # The skip connections concatenate: the decoders' first convolutions see twice the channels.
    shapes = dict(records(result))
    assert shapes["up1.conv.0.weight"] == (64, 128, 3, 3)
    assert shapes["up3.conv.0.weight"] == (16, 32, 3, 3)


def test_unet_computes_what_the_reference_computes() -> None:
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    model = materialised("unet.yaml", x, device="cpu")
    reference = ref.UNet().eval()
    model.load_state_dict(reference.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


# --- two inputs, one shared encoder ---------------------------------------------------------------

# specs/two_input.yaml: inputs of width 32, hidden 64, head_hidden 32, num_classes 2.
ENCODER = (32 * 64 + 64) + (64 * 64 + 64)
HEAD = (2 * 64 * 32 + 32) + (32 * 2 + 2)


def test_two_input_counts_the_shared_encoder_once() -> None:
    result = spec("two_input.yaml").infer("a=4,32", "b=4,32")
    assert result.outputs == [(4, 2)]
    assert [i.name for i in result.inputs] == ["a", "b"]
    assert result.totals.params == ENCODER + HEAD
    assert result.totals.params == ref.count(ref.TwoInput())
    assert not any(p.path.startswith("enc_b.") for p in result.params)
    nodes = {n.path: n for n in result.nodes}
    assert nodes["enc_b"].shared_from == "enc_a"
    assert nodes["enc_b"].params == 0
    assert nodes["enc_a"].params == ENCODER


def test_two_input_marks_the_shared_parameters() -> None:
    result = spec("two_input.yaml").infer("a=4,32", "b=4,32")
    encoder = [p for p in result.params if p.path.startswith("enc_a.")]
    assert [p.path for p in encoder] == ["enc_a.fc1.weight", "enc_a.fc1.bias",
                                         "enc_a.fc2.weight", "enc_a.fc2.bias"]
    assert all(p.shared is not None and "enc_b" in p.shared for p in encoder), \
        [(p.path, p.shared) for p in encoder]
    assert all(p.shared is None for p in result.params if not p.path.startswith("enc_a."))


def test_two_input_encodes_both_inputs_with_the_same_weights() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(4, 32), torch.randn(4, 32)
    model = materialised("two_input.yaml", a, b, device="cpu")
    reference = ref.TwoInput().eval()
    model.load_state_dict(reference.state_dict())  # strict: no second encoder's weights
    with torch.no_grad():
        torch.testing.assert_close(model(a, b), reference(a, b))


# --- mlp_fixed: a first layer with its sizes given ------------------------------------------------


def test_mlp_fixed_first_layer_is_not_lazy() -> None:
    model = spec("mlp_fixed.yaml").build(device="meta")
    first, last = model.get_submodule("0"), model.get_submodule("2")
    assert type(first) is nn.Linear
    assert not isinstance(first.weight, nn.parameter.UninitializedParameter)
    assert tuple(first.weight.shape) == (256, 20)  # before any dry run
    assert isinstance(last.weight, nn.parameter.UninitializedParameter)
    result = spec("mlp_fixed.yaml").infer("2,20")
    assert records(result) == records(spec("mlp.yaml").infer("2,20"))
    assert [p.op for p in result.params] == ["Linear", "Linear", "LazyLinear", "LazyLinear"]


def test_mlp_fixed_rejects_a_wrong_input_width() -> None:
    with pytest.raises(SpecError, match="20"):
        spec("mlp_fixed.yaml").infer("2,21")


# --- every bundled spec: meta and cpu agree ------------------------------------------------------

# A small input (and scale) per bundled spec, so that the cpu runs stay fast.
SMALL = {
    "mlp.yaml": (("2,20",), None),
    "mlp_fixed.yaml": (("2,20",), None),
    "lenet.yaml": (("1,1,28,28",), None),
    "resnet18.yaml": (("1,3,64,64",), None),
    "gpt2.yaml": (("2,16:int64",), "tiny"),
    "unet.yaml": (("1,3,32,32",), None),
    "two_input.yaml": (("a=2,32", "b=2,32"), None),
    "llama2-7b.yaml": (("2,16:int64",), "tiny"),
    "llama2-70b.yaml": (("2,16:int64",), "tiny"),
    "synthetic-1000.yaml": (("2,64",), "tiny"),
    "vit_b_16.yaml": (("2,3,32,32",), "tiny"),
    "convnext_tiny.yaml": (("2,3,32,32",), "tiny"),
    "swin_t.yaml": (("2,3,32,32",), "tiny"),
    "t5_small.yaml": (("input_ids=2,16:int64", "decoder_input_ids=2,8:int64"), "tiny"),
}
BUNDLED = sorted(p.name for p in SPECS.glob("*.yaml"))


def test_every_bundled_spec_is_covered() -> None:
    assert set(BUNDLED) == set(SMALL), "give each bundled spec a small input in SMALL"


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_spec_has_a_header_comment(name: str) -> None:
    assert (SPECS / name).read_text(encoding="utf-8").startswith("#")


@pytest.mark.parametrize("name", BUNDLED)
def test_meta_and_cpu_give_the_same_shapes(name: str) -> None:
    if name not in SMALL:
        pytest.fail(f"{name}: no small input in SMALL")
    inputs, scale = SMALL[name]
    meta = spec(name).infer(*inputs, device="meta", scale=scale)
    cpu = spec(name).infer(*inputs, device="cpu", scale=scale)
    assert meta.device == "meta" and cpu.device == "cpu"
    assert records(cpu) == records(meta)
    assert [p.shared for p in cpu.params] == [p.shared for p in meta.params]
    assert cpu.outputs == meta.outputs
    assert cpu.totals == meta.totals
    assert meta.totals.params > 0
