"""The Python API: load, build and infer without the CLI."""

from __future__ import annotations

import pytest
import torch
from conftest import SPECS
from torch import nn

import lazyspec
from lazyspec.errors import DryRunError, SpecError, UsageError


def test_build_returns_a_lazy_module_on_meta():
    model = lazyspec.load(SPECS / "mlp.yaml").build(device="meta")
    assert isinstance(model, nn.Module)
    weight = model.get_submodule("0").weight
    assert isinstance(weight, nn.parameter.UninitializedParameter)
    out = model(torch.empty(2, 20, device="meta"))
    assert out.shape == (2, 10) and out.device.type == "meta"
    assert model.get_submodule("0").weight.shape == (256, 20)


def test_built_module_trains_on_cpu():
    model = lazyspec.load(SPECS / "mlp.yaml").build(device="cpu")
    x = torch.randn(4, 20)
    loss = model(x).pow(2).mean()
    loss.backward()
    assert model.get_submodule("2").weight.grad is not None
    assert model.get_submodule("2").weight.grad.shape == (10, 256)


def test_infer_returns_plain_data():
    result = lazyspec.infer(SPECS / "mlp.yaml", "2,20")
    assert result.outputs == [(2, 10)]
    assert [(p.path, p.shape) for p in result.params] == [
        ("0.weight", (256, 20)), ("0.bias", (256,)), ("2.weight", (10, 256)), ("2.bias", (10,))]
    assert result.totals.params == 7946
    assert result.totals.bytes == 7946 * 4
    assert [n.output for n in result.nodes] == [(2, 256), (2, 256), (2, 10)]


def test_infer_accepts_sequences_and_dtype():
    result = lazyspec.load(SPECS / "mlp.yaml").infer((3, 20), dtype="bfloat16")
    assert result.outputs == [(3, 10)]
    assert result.totals.bytes == 7946 * 2
    assert {p.dtype for p in result.params} == {"bfloat16"}


def test_params_override(write_spec):
    spec = write_spec("params:\n  d: ${h * 2}\n  h: 8\nlayers:\n  - LazyLinear(d)\n")
    assert lazyspec.infer(spec, "1,3").outputs == [(1, 16)]
    assert lazyspec.infer(spec, "1,3", params={"h": 2}).outputs == [(1, 4)]


def test_errors_are_typed(write_spec):
    with pytest.raises(SpecError, match="unknown op 'Lin'"):
        lazyspec.load(write_spec("layers:\n  - Lin(3)\n")).build()
    with pytest.raises(DryRunError, match="shape mismatch in node '0'"):
        lazyspec.infer(write_spec("layers:\n  - Linear(3, 4)\n"), "2,5")
    with pytest.raises(UsageError, match="unknown scale"):
        lazyspec.infer(SPECS / "resnet18.yaml", "1,3,32,32", scale="nope")
    with pytest.raises(SpecError, match="YAML syntax error"):
        lazyspec.load(write_spec("layers: [\n"))


def test_dry_run_failure_lists_nodes_that_ran(write_spec):
    spec = write_spec("layers:\n  - LazyLinear(8)\n  - ReLU\n  - Linear(3, 4)\n")
    with pytest.raises(DryRunError) as exc:
        lazyspec.infer(spec, "2,5")
    assert exc.value.ran == ["0", "1"]
    d = exc.value.diagnostics[0]
    assert (d.location.line, d.location.col) == (4, 5)
    assert "inputs: [2, 8] float32" in d.notes


def test_materialize_applies_ties_and_fixes_sizes():
    spec = lazyspec.load(SPECS / "gpt2.yaml")
    model = spec.materialize("1,8:int64", scale="tiny", device="cpu")
    assert model.get_submodule("lm_head").weight is model.get_submodule("wte").weight
    assert not any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters())
    out = model(torch.zeros(1, 8, dtype=torch.long))
    assert out.shape[:2] == (1, 8)
