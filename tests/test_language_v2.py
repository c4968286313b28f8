"""Spec language v2: free tensors (Parameter, Buffer), repeat with side inputs and threaded
outputs, names for copies, the copy index, and freezing."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from lazyspec import engine, export
from lazyspec.errors import DryRunError, SpecError
from lazyspec.inputs import parse_input
from lazyspec.options import BuildOptions
from lazyspec.tensors import relative_position_index


def run(spec: Path, *inputs: str, device: str = "meta") -> engine.Outcome:
    outcome = engine.run(engine.Request(spec, inputs=tuple(parse_input(i) for i in inputs),
                                        options=BuildOptions(device=device)))
    outcome.raise_error()
    return outcome


def params(outcome: engine.Outcome) -> dict[str, tuple[int, ...]]:
    assert outcome.result is not None
    return {p.path: p.shape for p in outcome.result.params}


def error(spec: Path, *inputs: str) -> str:
    outcome = engine.run(engine.Request(spec, inputs=tuple(parse_input(i) for i in inputs)))
    assert outcome.error is not None, "expected an error"
    return "\n".join(f"{d.code} {d.location.line if d.location else ''}: {d.message}\n"
                     + "\n".join(d.notes) for d in outcome.error.diagnostics)


# --- Parameter and Buffer -------------------------------------------------------------------------

VIT_LIKE = """\
params: {d: 8, n: 4}
layers:
  - proj: LazyLinear(d)                       # [B, n, d]
  - class_token: Parameter(1, 1, d)
  - tok: Add                                  # stands in for ExpandAs + Concat
    in: [class_token, proj]
  - encoder: Encoder(d, n)
blocks:
  Encoder:
    params: {d: 8, n: 4}
    layers:
      - pos_embedding: Parameter(1, n, d, init='normal:0.02')
      - x: Add
        in: [input, pos_embedding]
      - ln: LayerNorm(d)
"""


def test_a_parameter_node_has_its_path_as_its_state_dict_key(write_spec) -> None:
    outcome = run(write_spec(VIT_LIKE), "2,4,3")
    assert params(outcome) == {
        "class_token": (1, 1, 8), "proj.weight": (8, 3), "proj.bias": (8,),
        "encoder.pos_embedding": (1, 4, 8), "encoder.ln.weight": (8,), "encoder.ln.bias": (8,)}
    assert outcome.built is not None
    assert set(outcome.built.module.state_dict()) == set(params(outcome))
    rows = {p.path: p for p in outcome.result.params} if outcome.result else {}
    assert rows["class_token"].op == "Parameter" and rows["class_token"].location is not None
    nodes = {n.path: n for n in outcome.result.nodes} if outcome.result else {}
    assert nodes["class_token"].params == 8 and nodes["class_token"].output == (1, 1, 8)
    assert nodes["encoder"].params == 32 + 16


def test_a_size_written_none_comes_from_the_input_right_aligned(write_spec) -> None:
    spec = write_spec("layers:\n  - c: LazyConv2d(6, 3)\n"
                      "  - layer_scale: Parameter(None, 1, 1, init='constant:1e-6')\n"
                      "  - op: Mul\n    in: [layer_scale, c]\n")
    outcome = run(spec, "2,3,10,10", device="cpu")
    assert params(outcome)["layer_scale"] == (6, 1, 1)
    assert outcome.built is not None
    assert torch.equal(outcome.built.module.layer_scale.detach(), torch.full((6, 1, 1), 1e-6))


def test_init_schemes_fill_the_tensor_on_a_real_device(write_spec) -> None:
    spec = write_spec("layers:\n  - a: Parameter(200, 50, init='normal:0.5')\n"
                      "  - b: Parameter(3, init='ones')\n"
                      "  - c: Parameter(1000, init='trunc_normal:0.02')\n"
                      "  - d: Parameter(4, init='uniform:0.1')\n  - e: Parameter(2)\n")
    module = run(spec, "2,3", device="cpu").built.module  # type: ignore[union-attr]
    a, b, c, d, e = (t.detach() for t in (module.a, module.b, module.c, module.d, module.e))
    assert abs(float(a.std()) - 0.5) < 0.05
    assert torch.equal(b, torch.ones(3)) and torch.equal(e, torch.zeros(2))
    assert float(c.abs().max()) <= 0.04 and float(d.abs().max()) <= 0.1


def test_a_frozen_parameter_and_a_frozen_node(write_spec) -> None:
    spec = write_spec("layers:\n  - fc: LazyLinear(4)\n    trainable: false\n"
                      "  - scale: Parameter(4, trainable=false)\n  - head: LazyLinear(2)\n")
    outcome = run(spec, "2,3")
    assert outcome.result is not None
    frozen = [p.path for p in outcome.result.params if not p.trainable]
    assert frozen == ["scale", "fc.weight", "fc.bias"]
    assert outcome.result.totals.trainable == outcome.result.totals.params - 4 - 16


def test_a_buffer_holds_the_scheme_values(write_spec) -> None:
    spec = write_spec("layers:\n  - index: Buffer('relative_position_index', [2, 3])\n"
                      "  - mask: Buffer('causal_mask', 3, persistent=false)\n")
    outcome = run(spec, "1,1", device="cpu")
    module = outcome.built.module  # type: ignore[union-attr]
    assert "index" in module.state_dict() and "mask" not in module.state_dict()
    assert outcome.result is not None and outcome.result.totals.buffers == 36 + 9
    assert torch.equal(module.index, relative_position_index([2, 3]))


def test_the_relative_position_index_is_swins() -> None:
    """torchvision's define_relative_position_index, written out for a 2 x 2 window."""
    h, w = 2, 2
    pairs = [(a, b) for a in range(h) for b in range(w)]
    want = [((a0 - b0) + h - 1) * (2 * w - 1) + (a1 - b1) + w - 1
            for a0, a1 in pairs for b0, b1 in pairs]
    assert relative_position_index([h, w]).tolist() == want
    assert relative_position_index([7, 7]).shape == (2401,)
    assert int(relative_position_index([7, 7]).max()) == 13 * 13 - 1


@pytest.mark.parametrize(("spec", "expected"), [
    ("layers:\n  - p: Parameter(2, -1)\n", "LS128 2: Parameter(2, -1) failed: each size"),
    ("layers:\n  - p: Parameter(2, init='xavier')\n", "LS128 2: Parameter(2, init='xavier') "
     "failed: unknown init 'xavier'"),
    ("layers:\n  - p: Parameter(2, bias=true)\n", "LS127 2: Parameter: got an unexpected"),
    ("layers:\n  - p: Parameter(2)\n    repeat: 2\n", "LS114 3: a Parameter(...) node cannot "
     "repeat"),
    ("layers:\n  - b: Buffer('fourier', 3)\n", "LS128 2: Buffer('fourier', 3) failed: unknown "
     "buffer scheme 'fourier'"),
    ("layers:\n  - b: Buffer('causal_mask', 100000)\n", "would make 10,000,000,000 elements"),
    ("layers:\n  - b: Buffer('arange')\n", "missing a required argument"),
])
def test_bad_tensor_nodes_are_located(write_spec, spec: str, expected: str) -> None:
    assert expected in error(write_spec(spec), "2,3")


def test_none_sizes_need_an_input_with_enough_dimensions(write_spec) -> None:
    spec = write_spec("layers:\n  - p: Parameter(None, None, None)\n")
    with pytest.raises(DryRunError, match="shape mismatch in node 'p'"):
        run(spec, "2,3")


# --- repeat: side inputs, threaded outputs, the copy index, names -------------------------------

DECODER = """\
lazyspec: {version}
params: {{d: 16, heads: 2}}
inputs: {{tgt: [B, 5, 16], memory: [B, 7, 16]}}
layers:
  - layers: TransformerDecoderLayer(d, heads, 32, batch_first=true)
    repeat: 3
    in: [tgt, memory]
"""


def test_version_2_passes_side_inputs_to_every_copy(write_spec) -> None:
    outcome = run(write_spec(DECODER.format(version=2)))
    assert outcome.result is not None and outcome.result.outputs == [(2, 5, 16)]
    assert "layers.2.multihead_attn.in_proj_weight" in params(outcome)


def test_version_1_keeps_its_meaning_only_copy_0_takes_the_other_inputs(write_spec) -> None:
    message = error(write_spec(DECODER.format(version=1)))
    assert "failure in node 'layers.1'" in message
    assert "missing 1 required positional argument: 'memory'" in message


THREADED = """\
lazyspec: 2
params: {d: 8}
blocks:
  Layer:                       # (x, bias) -> (x, bias); only the first copy makes the bias
    params: {d: 8, first: false}
    inputs: {x: , bias_in: }
    outputs: [y, bias]
    layers:
      - bias: Linear(d, d)
        in: bias_in
        when: first            # skipped: the bias from the copy before passes through
      - mix: Add
        in: [x, bias]
      - y: LazyLinear(d)
layers:
  - emb: LazyLinear(d)
  - layers: Layer(d, first=k == 0)
    repeat: 3
    index: k
    names: encoder_layer_{i}
    in: [emb, emb]
  - out: Add
    in: [layers.0, layers.1]
"""


def test_a_block_returning_several_values_threads_them_and_the_index_is_usable(
        write_spec) -> None:
    outcome = run(write_spec(THREADED), "2,5,3")
    names = params(outcome)
    assert "layers.encoder_layer_0.bias.weight" in names
    assert not any(n.startswith(("layers.encoder_layer_1.bias", "layers.encoder_layer_2.bias"))
                   for n in names)
    assert {n.split(".")[1] for n in names if n.startswith("layers.")} == \
        {"encoder_layer_0", "encoder_layer_1", "encoder_layer_2"}
    assert outcome.result is not None and outcome.result.outputs == [(2, 5, 8)]


def test_names_templates_take_expressions(write_spec) -> None:
    spec = write_spec("params: {start: 1}\nlayers:\n  - dense: LazyLinear(4)\n"
                      "    repeat: 3\n    names: denselayer{i + start}\n")
    assert list(params(run(spec, "2,4"))) == [
        f"dense.denselayer{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")]


@pytest.mark.parametrize(("spec", "expected"), [
    ("layers:\n  - x: ReLU\n    repeat: 2\n    names: same\n",
     "LS115 4: `names:` gives several copies the name 'same'"),
    ("layers:\n  - x: ReLU\n    repeat: 2\n    names: '{i}x'\n",
     "LS115 4: `names:` gives copy 0 the name '0x'"),
    ("layers:\n  - x: ReLU\n    repeat: 2\n    names: l{j}\n", "LS124 4: undefined name 'j'"),
    ("layers:\n  - x: ReLU\n    names: l{i}\n", "LS114 3: `names:` belongs to a node with"),
    ("layers:\n  - op: ReLU\n    repeat: 2\n    names: l{i}\n",
     "LS114 4: `names:` names the copies of a named node"),
    ("layers:\n  - x: ReLU\n    index: k\n", "LS114 3: `index:` belongs to a node with"),
    ("layers:\n  - x: ReLU\n    trainable: maybe\n", "undefined name 'maybe'"),
    ("layers:\n  - x: ReLU\n    trainable: 3\n", "LS111 3: `trainable` must be true or false"),
])
def test_bad_copy_keys_are_located(write_spec, spec: str, expected: str) -> None:
    assert expected in error(write_spec(spec), "2,3")


# --- export keeps all of it -----------------------------------------------------------------------

EVERYTHING = THREADED.replace("  - out: Add\n    in: [layers.0, layers.1]\n", """\
  - out: Add
    in: [layers.0, layers.1]
  - cls: Parameter(1, 1, 4, init='normal:0.02')
  - scale: Parameter(None, init='constant:0.5', trainable=false)
    in: out
  - index: Buffer('relative_position_index', [2, 2])
  - head: LazyLinear(4)
    in: out
    trainable: false
  - mix: Add
    in: [head, cls]
""")


def exported_module(code: str) -> nn.Module:
    namespace: dict[str, Any] = {}
    exec(compile(code, "exported.py", "exec"), namespace)
    module = namespace["Model"]()
    assert isinstance(module, nn.Module)
    return module


def test_export_writes_every_v2_construct(write_spec, tmp_path: Path) -> None:
    outcome = run(write_spec(EVERYTHING), "2,5,3", device="cpu")
    assert outcome.built is not None and outcome.result is not None
    model = outcome.built.module.eval()
    text = export.explicit_spec(outcome.built, outcome.result)
    assert "lazyspec: 2\n" in text and "Parameter(1, 1, 4, init='normal:0.02')" in text
    assert "Buffer('relative_position_index', [2, 2])" in text and "trainable: false" in text
    again = tmp_path / "explicit.yaml"
    again.write_text(text, encoding="utf-8")
    rerun = run(again, device="cpu")
    assert rerun.result is not None
    assert [(p.path, p.shape, p.trainable) for p in rerun.result.params] == \
        [(p.path, p.shape, p.trainable) for p in outcome.result.params]
    code = export.pytorch_code(outcome.built, outcome.result)
    module = exported_module(code)
    assert list(module.state_dict()) == list(model.state_dict())
    module.load_state_dict(model.state_dict())
    x = torch.randn(2, 5, 3)
    assert torch.allclose(module.eval()(x), model(x))
    assert [n for n, p in module.named_parameters() if not p.requires_grad] == \
        [n for n, p in model.named_parameters() if not p.requires_grad]


def test_state_dict_export_uses_each_parameters_own_init(write_spec) -> None:
    spec = write_spec("layers:\n  - fc: LazyLinear(3)\n  - g: Parameter(3, init='constant:0.25')\n")
    module = run(spec, "2,4", device="cpu").built.module  # type: ignore[union-attr]
    state = export.init_state_dict(module, "xavier_uniform", seed=0)
    assert torch.equal(state["g"], torch.full((3,), 0.25))
    assert math.isclose(float(state["fc.bias"].abs().sum()), 0.0)


def test_show_marks_sizes_a_parameter_takes_from_the_input(write_spec, cli) -> None:
    spec = write_spec("layers:\n  - p: Parameter(1, None, 4)\n")
    r = cli("show", spec)
    assert r.code == 0 and "[1, ?, 4]" in r.stdout


def test_a_node_named_like_a_new_key_keeps_its_name(write_spec) -> None:
    spec = write_spec("layers:\n  - index: LazyLinear(3)\n  - trainable: ReLU\n"
                      "  - names: LazyLinear(2)\n    in: index\n")
    assert list(params(run(spec, "2,4"))) == ["index.weight", "index.bias", "names.weight",
                                              "names.bias"]


def test_spec_errors_in_v2_keys_are_spec_errors(write_spec) -> None:
    with pytest.raises(SpecError, match="belongs to a node with `repeat:`"):
        run(write_spec("layers:\n  - x: ReLU\n    names: a{i}\n"), "2,3")


# --- small things --------------------------------------------------------------------------------


def test_the_tie_marker_names_every_partner(write_spec) -> None:
    spec = write_spec("layers:\n  - a: Embedding(10, 4)\n  - b: Embedding(10, 4)\n    in: input\n"
                      "  - c: Linear(4, 10, bias=false)\n"
                      "tie:\n  - [b.weight, a.weight]\n  - [c.weight, a.weight]\n")
    outcome = run(spec, "2,3:int64")
    assert outcome.result is not None
    (row,) = outcome.result.params[:1]
    assert (row.path, row.shared) == ("a.weight", "tied to b.weight, c.weight")
    assert outcome.result.totals.params == 40


@pytest.mark.parametrize("inputs", ["[q, q, q]", "[q, k, k]"])  # self-attention: fused on CPU
def test_multihead_attention_flops_are_the_same_on_meta_and_cpu(write_spec, inputs) -> None:
    spec = write_spec("inputs: {q: [2, 10, 64], k: [2, 7, 64]}\nlayers:\n"
                      f"  - a: MultiheadAttention(64, 4, batch_first=true)\n    in: {inputs}\n"
                      "  - op: Add\n    in: [a.0, k]\n    when: false\n")
    meta, cpu = run(spec).result, run(spec, device="cpu").result
    assert meta is not None and cpu is not None
    assert cpu.totals.unknown_ops == [] and cpu.totals.flops == meta.totals.flops > 0


def test_the_lock_records_frozen_parameters_and_check_sees_a_change(cli, tmp_path: Path,
                                                                     monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "m.yaml"
    spec.write_text("layers:\n  - fc: LazyLinear(4)\n    trainable: false\n  - LazyLinear(2)\n")
    assert cli("lock", "m.yaml", "--input", "2,3", "--lock", "l.lock").code == 0
    assert "      total: 26\n      trainable: 10\n" in (tmp_path / "l.lock").read_text()
    assert cli("check", "m.yaml", "--lock", "l.lock").code == 0
    spec.write_text("layers:\n  - fc: LazyLinear(4)\n  - LazyLinear(2)\n")
    r = cli("check", "m.yaml", "--lock", "l.lock")
    assert r.code == 1 and "frozen 16 -> 0 parameters" in r.stdout


@pytest.mark.parametrize(("spec", "given", "title", "says"), [
    ("layers:\n  - LazyConv2d(4, 3)\n", "1,3,8,8:int64", "dtype mismatch in node '0'",
     "computes in floating point, but its input is int64"),
    ("layers:\n  - LazyLinear(4)\n", "1,3:int64", "dtype mismatch in node '0'",
     "computes in floating point, but its input is int64"),
    ("layers:\n  - Embedding(10, 4)\n", "1,3", "dtype mismatch in node '0'",
     "looks rows up by integer index, but its input is float32"),
    ("params: {vocab: 100}\ninputs:\n  idx: {shape: [B, T], dtype: int64, range: [0, vocab]}\n"
     "layers:\n  - Embedding(50, 4)\n", "2,5", "index out of range in node '0'",
     "has 50 rows (0..49), but its input holds indices from 0 to 99"),
    ("blocks:\n  Head:\n    params: {d: 8}\n    inputs: {x: [B, d]}\n    layers:\n"
     "      - LazyLinear(d)\nlayers:\n  - LazyLinear(4)\n  - h: Head(8)\n", "2,3",
     "input does not match the block's declaration in node 'h'",
     "block 'Head': input 'x' is declared [B, 8] but got [2, 4]"),
])
@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_checks_torch_misses_on_meta_hold_on_every_device(write_spec, spec, given, title, says,
                                                          device) -> None:
    outcome = engine.run(engine.Request(write_spec(spec), inputs=(parse_input(given),),
                                        options=BuildOptions(device=device)))
    assert isinstance(outcome.error, DryRunError)
    (d,) = outcome.error.diagnostics
    assert title in d.message and any(says in note for note in d.notes)


def test_unused_inputs_and_dead_nodes_are_warnings(write_spec, cli) -> None:
    spec = write_spec("inputs: {a: [B, 3], b: [B, 3]}\nlayers:\n  - x: LazyLinear(4)\n    in: a\n"
                      "  - dead: ReLU\n  - y: LazyLinear(2)\n    in: x\n")
    r = cli("infer", spec)
    assert r.code == 0
    assert "warning[LS150]: input 'b' is never used" in r.stderr
    assert "warning[LS151]: node 'dead' (ReLU) is computed but its output is never used" in r.stderr
    document = cli("infer", spec, "--format", "json")
    assert document.code == 0 and '"severity": "warning"' in document.stdout


@pytest.mark.parametrize("name", sorted(p.name for p in
                                        (Path(__file__).parent.parent / "specs").glob("*.yaml")))
def test_bundled_specs_have_no_warnings(name: str) -> None:
    spec = Path(__file__).parent.parent / "specs" / name
    outcome = engine.run(engine.Request(spec, stage="compile"))
    assert outcome.error is None
    assert [(d.code, d.message) for d in outcome.findings] == []


def test_a_node_kept_for_its_tied_parameters_is_not_dead(write_spec) -> None:
    """Hugging Face's T5 holds `shared` without running it (each stack looks up its own tied
    copy): its output is unused, its weight is not."""
    spec = write_spec("layers:\n  - shared: Embedding(10, 4)\n  - emb: Embedding(10, 4)\n"
                      "    in: input\n  - dead: ReLU\n  - out: LazyLinear(3)\n    in: emb\n"
                      "tie:\n  - [emb.weight, shared.weight]\n")
    outcome = engine.run(engine.Request(spec, stage="compile"))
    assert [d.message for d in outcome.findings] == [
        "node 'dead' (ReLU) is computed but its output is never used"]


def test_positions_past_the_context_fail_on_meta_as_on_cpu() -> None:
    gpt2 = Path(__file__).parent.parent / "specs" / "gpt2.yaml"
    outcome = engine.run(engine.Request(gpt2, inputs=(parse_input("1,2048:int64"),),
                                        options=BuildOptions(scale="tiny")))
    assert isinstance(outcome.error, DryRunError)
    (d,) = outcome.error.diagnostics
    assert d.message == "index out of range in node 'wpe' (Embedding)"
    assert any("has 64 rows (0..63), but its input holds indices from 0 to 2,047" in n
               for n in d.notes)
