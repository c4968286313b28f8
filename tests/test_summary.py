"""`lazyspec.summary(module, *inputs)`: the dry run, table, FLOPs, memory and budgets of any
nn.Module, with the same numbers a spec of the same model gives, and the user's module left as
it was."""

from __future__ import annotations

import json
import re

import pytest
import reference_models as R
import torch
from torch import nn

import lazyspec
from lazyspec.errors import BudgetError, DryRunError, UsageError
from lazyspec.module_summary import meta_twin

TINY_GPT2 = {"vocab_size": 512, "n_positions": 64, "n_embd": 64, "n_layer": 2, "n_head": 4}


def test_gpt2_counts_the_tie_once_and_matches_the_specs_flops() -> None:
    """torchinfo counts GPT-2 as 163,037,184 (the tied head twice); lazyspec counts 124,439,808
    and the same FLOPs as the bundled spec at the same input."""
    result = lazyspec.summary(R.on_meta(R.GPT2), "2,64:int64")
    assert result.totals.params == 124_439_808
    spec = lazyspec.infer("specs/gpt2.yaml", "2,64:int64")
    assert result.totals.flops == spec.totals.flops
    assert result.totals.unknown_ops == []
    wte = next(p for p in result.params if p.path == "wte.weight")
    assert wte.shared == "tied to lm_head.weight"
    assert result.outputs == [(2, 64, 50257)]


def test_resnet18_has_the_specs_parameter_names_and_shapes() -> None:
    result = lazyspec.summary(R.on_meta(R.resnet18), (2, 3, 224, 224))
    spec = lazyspec.infer("specs/resnet18.yaml", "2,3,224,224")
    assert [(p.path, p.shape) for p in result.params] == [(p.path, p.shape) for p in spec.params]
    assert result.totals.flops == spec.totals.flops
    assert result.totals.params == 11_689_512


def test_a_cpu_module_runs_on_a_meta_twin_and_is_not_modified() -> None:
    model = R.GPT2(**TINY_GPT2)
    model.train()
    model.h[0].eval()  # a submodule in its own mode: restored as it was, not as the root's
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = {n: id(p) for n, p in model.named_parameters()}
    result = lazyspec.summary(model, "2,16:int64")
    assert result.device == "meta" and result.totals.params == 136_960
    assert model.training and not model.h[0].training and model.h[1].training
    assert {n: id(p) for n, p in model.named_parameters()} == params
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_a_module_that_runs_itself_is_left_as_it_was() -> None:
    """A module on meta (or on the device asked for) runs itself: its modes come back as they
    were, submodule by submodule, and no hook stays behind, also after a failure."""
    model = R.on_meta(R.GPT2, **TINY_GPT2)
    model.train()
    model.h[1].eval()
    lazyspec.summary(model, "2,16:int64")
    with pytest.raises(DryRunError):
        lazyspec.summary(model, "2,16,3:int64")
    assert model.training and model.h[0].training and not model.h[1].training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    cpu = R.mlp().train()
    lazyspec.summary(cpu, (2, 20), device="cpu")
    assert cpu.training and all(not m._forward_hooks for m in cpu.modules())


def test_the_meta_twin_copies_no_weights_and_keeps_ties() -> None:
    model = R.GPT2(**TINY_GPT2)
    twin = meta_twin(model)
    assert all(p.device.type == "meta" for p in twin.parameters())
    assert twin.lm_head.weight is twin.wte.weight
    assert [(n, p.shape) for n, p in twin.named_parameters()] == \
        [(n, p.shape) for n, p in model.named_parameters()]
    assert model.wte.weight.device.type == "cpu"


def test_a_lazy_module_materialises_only_on_the_twin() -> None:
    model = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(2))
    result = lazyspec.summary(model, (3, 5))
    assert result.totals.params == 5 * 8 + 8 + 8 * 2 + 2
    assert isinstance(model[0].weight, nn.parameter.UninitializedParameter)
    with pytest.raises(UsageError, match=r"lazy parameters .* would materialise"):
        lazyspec.summary(model, (3, 5), device="cpu")


def test_a_real_device_runs_the_module_where_it_is() -> None:
    model = R.mlp()
    result = lazyspec.summary(model, (2, 20), device="cpu")
    assert result.device == "cpu" and result.run is not None
    assert result.run.estimate_bytes > 0
    with pytest.raises(UsageError, match="never moves it"):
        lazyspec.summary(R.on_meta(R.mlp), (2, 20), device="cpu")


def test_a_failure_is_reported_at_the_module_path_and_class() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.Linear(9, 2))
    with pytest.raises(DryRunError) as info:
        lazyspec.summary(model, (3, 4))
    d = info.value.diagnostics[0]
    assert (d.code, d.message, d.location) == ("LS201", "shape mismatch in module '1' (Linear)",
                                               None)
    assert "inputs: [3, 8] float32" in d.notes
    assert any(n.startswith("expected: Linear(in_features=9") for n in d.notes)
    assert info.value.ran == ["0"]
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


class Mixer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 8), nn.Linear(4, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x)  # [.., 8] + [.., 6]: fails in Mixer's own code


def test_a_failure_in_a_modules_own_forward_names_that_module() -> None:
    model = nn.Sequential(nn.Identity(), Mixer())
    with pytest.raises(DryRunError) as info:
        lazyspec.summary(model, (2, 4))
    assert info.value.diagnostics[0].message == "shape mismatch in module '1' (Mixer)"
    assert not any(n.startswith("parameters:") for n in info.value.diagnostics[0].notes)


def test_budgets_fail_with_the_result() -> None:
    with pytest.raises(BudgetError) as info:
        lazyspec.summary(R.mlp(), (2, 20), max_params="1K", expect_output=(2, 11))
    codes = [d.code for d in info.value.diagnostics]
    assert codes == ["LS210", "LS211"]
    assert all(d.location is None for d in info.value.diagnostics)
    assert info.value.result.totals.params == 7_946  # type: ignore[attr-defined]
    assert lazyspec.summary(R.mlp(), (2, 20), max_params=10_000, max_bytes="1MB")


def test_the_result_prints_as_the_table_and_reports_every_format() -> None:
    result = lazyspec.summary(R.GPT2(**TINY_GPT2), "2,16:int64")
    table = str(result)
    assert table.startswith("GPT2  (reference_models.GPT2)")
    assert "parameters: 136,960" in table and "wte.weight tied to lm_head.weight" in table
    rows = [line.split() for line in table.splitlines()]
    assert ["h", "ModuleList"] in [r[:2] for r in rows]  # the container its blocks nest under
    assert json.loads(result.report("json"))["totals"]["params"] == 136_960
    markdown = result.report("markdown")
    assert "| `h` | ModuleList |" in markdown  # the node table, as the table format shows it
    assert "counted once: wte.weight tied to lm_head.weight" in markdown
    nodes = result.report(depth=1)
    assert re.search(r"^h +ModuleList ", nodes, re.MULTILINE) and "GPT2Block" not in nodes
    with pytest.raises(UsageError, match="unknown format"):
        result.report("yaml")


def test_inputs_as_tensors_strings_and_shapes() -> None:
    model = R.TwoInput()
    result = lazyspec.summary(model, torch.randn(4, 32), "4,32")
    assert [(i.name, i.shape, i.dtype) for i in result.inputs] == \
        [("a", (4, 32), "float32"), ("b", (4, 32), "float32")]
    assert result.totals.params == 10_466
    with pytest.raises(UsageError, match="takes sizes, not names"):
        lazyspec.summary(model, "B,32", "B,32")
    with pytest.raises(UsageError, match="needs the model's inputs"):
        lazyspec.summary(model)
    with pytest.raises(UsageError, match=r"takes an nn\.Module"):
        lazyspec.summary("specs/mlp.yaml", (2, 20))
