"""lazyspec export: the explicit spec and the PyTorch code give the lazy spec's parameters (and
compute what it computes), and initialised state dicts are reproducible from their seed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from test_bundled_specs import SMALL
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

import lazyspec
from lazyspec import dryrun, export
from lazyspec.builtin_ops import BUILTIN_OPS
from lazyspec.compile import Built, build
from lazyspec.errors import UsageError
from lazyspec.inputs import to_input
from lazyspec.result import InferResult

SPECS = Path(__file__).resolve().parent.parent / "specs"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# A small input (and scale) for every bundled spec, shared with the bundled-spec tests.
CASES = SMALL
BUNDLED = sorted(p.name for p in SPECS.glob("*.yaml"))

# Language features the bundled specs do not use, each with the inputs it runs at.
FEATURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "positions-and-gaps": ("""
params: {use: false}
inputs:
  a: [B, 8]
  self: [B, 8]                 # a name the generated forward must rename
blocks:
  Residual:                    # two inputs, two outputs
    params: {c: 8}
    inputs:
      x:
      skip:
    layers:
      - fc: LazyLinear(c)
        in: x
      - sum: Add
        in: [fc, skip]
    outputs: [sum, fc]
  Sigmoid:                     # hides torch.nn.Sigmoid: the export must rename it
    layers:
      - LazyLinear(4)
      - Tanh
layers:
  - r: Residual(8)
    in: [a, self]
  - op: Concat(-1)             # 1: [B, 16]
    in: [r.0, r.1]
  - op: LazyLinear(8)          # 2, 3: spliced copies, Linear(16, 8) then Linear(8, 8)
    repeat: 2
  - wide: LazyLinear(8)        # wide.0, wide.1: the copies are the same
    repeat: 2
  - grow: LazyLinear(12)       # grow.0 Linear(8, 12), grow.1 Linear(12, 12): they differ
    repeat: 2
  - op: LazyLinear(4)          # skipped, but takes the indices 7, 8, 9
    repeat: 3
    when: use
  - ReLU                       # 10
  - op: ReLU                   # takes no index
    repeat: 0
  - gone: LazyLinear(3)        # named repeat 0: identity
    repeat: 0
  - class: Identity            # Python keywords as node names
  - lambda: Chunk(2, -1)
  - op: Mul
    in: ["-1.0", "-1.1"]       # both halves of the previous node, by position
  - again:                     # shares a repeat container
    share: wide
    in: r.1
  - s: Sigmoid
  - twice: Transpose(0, 1)     # a built-in op repeated: inline twice in the code
    repeat: 2
  - op: Add
    in: [-1, -2]
    when: use
outputs: [-1, again, lambda.1]
""", ("a=2,8", "self=2,8")),
    "conv1d-norms": ("""
inputs:
  x: [B, 3, 16]
layers:
  - LazyConv1d(4, 3, padding=1)
  - LazyInstanceNorm1d                  # the lazy defaults differ from InstanceNorm1d's
  - LazyConvTranspose1d(4, 2, stride=2)
  - LazyBatchNorm1d(momentum=0.2)
  - norm: LazyInstanceNorm1d(affine=false)
  - op: LazyBatchNorm1d(eps=0.001)
    in: -2
""", ("2,3,16",)),
    "builtin-ops": ("""
params: {d: 16, heads: 2}
inputs:
  x: [2, 5, 16]
  idx: {shape: [2, 5], dtype: int64}
layers:
  - qkv: LazyLinear(3 * d)
  - parts: Chunk(3, -1)
  - q: Reshape(2, 5, heads, d // heads)
    in: parts.0
  - qh: Transpose(1, 2)
  - kh: Permute(0, 2, 1, 3)
    in: q
  - attn: ScaledDotProductAttention(is_causal=true, dropout=0.1, scale=0.5)
    in: [qh, kh, kh]
  - kt: Transpose(-2, -1)
    in: kh
  - scores: MatMul
    in: [qh, kt]
  - pooled: Mean([-1, -2], keepdim=true)
  - halves: Split([6, 10], -1)
    in: parts.1
  - cat: Concat(-1)
    in: [halves.1, halves.0]
  - gated: Mul
    in: [cat, parts.2, x]
  - pos: Positions
    in: idx
  - wpe: Embedding(5, 16)
  - out: Add
    in: [gated, x, wpe]
outputs: [out, attn, pooled, scores]
""", ("x=2,5,16", "idx=2,5:int64")),
    "long-arguments": ("""
inputs:
  x: [2, 600]
layers:
  - parts: Split([1] * 600, -1)      # too long for the op-call syntax: the long form
  - first: LazyLinear(3)
    in: parts.599
""", ("2,600",)),
}


def records(result: InferResult) -> list[tuple[str, tuple[int, ...]]]:
    return [(p.path, tuple(p.shape)) for p in result.params]


def param_shapes(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(n, tuple(p.shape)) for n, p in model.named_parameters()]


def state_shapes(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


def table(result: InferResult) -> list[tuple[Any, ...]]:
    """The node table without the op column (lazy ops become their non-lazy classes)."""
    return [(n.path, n.output, n.skipped, n.shared_from, n.params, n.flops)
            for n in result.nodes]


def dry_run(path: Path, inputs: tuple[str, ...], scale: str | None = None,
            device: str = "meta", allow: tuple[str, ...] = ()) -> tuple[Built, InferResult]:
    loaded = lazyspec.load(path)
    built = build(loaded.spec, loaded.options(device=device, scale=scale, allow=allow))
    return built, dryrun.run(built, [to_input(i) for i in inputs])


@pytest.fixture(params=[*BUNDLED, *FEATURES])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, tuple[str, ...],
                                                                    str | None]:
    name = request.param
    if name in FEATURES:
        text, inputs = FEATURES[name]
        path = tmp_path / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        return path, inputs, None
    inputs, scale = CASES[name]
    return SPECS / name, inputs, scale


def load_code(code: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(code, "<exported>", "exec"), namespace)  # the code under test, from the test
    return namespace


def test_every_bundled_spec_is_covered() -> None:
    assert set(BUNDLED) == set(CASES), "give each bundled spec a small input in CASES"


# --- the explicit spec -------------------------------------------------------------------------


def test_explicit_spec_round_trip(case: tuple[Path, tuple[str, ...], str | None],
                                  tmp_path: Path) -> None:
    path, inputs, scale = case
    built, lazy = dry_run(path, inputs, scale)
    text = export.explicit_spec(built, lazy)
    assert "Lazy" not in text
    out = tmp_path / "explicit.yaml"
    out.write_text(text, encoding="utf-8")
    explicit = lazyspec.load(out)
    # Nothing is lazy: every parameter and buffer has its shape before any input.
    model = explicit.build()
    assert not any(isinstance(m, LazyModuleMixin) for m in model.modules())
    assert state_shapes(model) == state_shapes(built.module)
    # The same table, with the inputs declared in the spec or given again.
    for again in (explicit.infer(), explicit.infer(*inputs)):
        assert records(again) == records(lazy)
        assert [p.shared for p in again.params] == [p.shared for p in lazy.params]
        assert again.outputs == lazy.outputs
        assert table(again) == table(lazy)
        assert again.totals == lazy.totals
        assert [(i.name, i.shape, i.dtype) for i in again.inputs] == \
            [(i.name, i.shape, i.dtype) for i in lazy.inputs]


def test_explicit_spec_is_plain_yaml(case: tuple[Path, tuple[str, ...], str | None]) -> None:
    path, inputs, scale = case
    text = export.explicit_spec(*dry_run(path, inputs, scale))
    assert isinstance(yaml.safe_load(text), dict)
    for event in yaml.parse(text):
        assert not isinstance(event, yaml.AliasEvent)
        assert getattr(event, "anchor", None) is None
        assert getattr(event, "tag", None) is None
    jsonschema = pytest.importorskip("jsonschema")
    schema = pytest.importorskip("lazyspec.spec.schema")
    jsonschema.Draft202012Validator(schema.spec_schema()).validate(yaml.safe_load(text))


def test_mlp_explicit_spec_text() -> None:
    text = export.explicit_spec(*dry_run(SPECS / "mlp.yaml", ("2,20",)))
    assert text == (
        "# Exported by `lazyspec export` from " + str(SPECS / "mlp.yaml") +
        " (--input input=2,20:float32).\n"
        "# Every size the dry run inferred is written out; parameter names are the spec's.\n"
        "lazyspec: 1\n"
        "name: D2L MLP\n"
        "inputs:\n"
        "  input: [2, 20]\n"
        "\n"
        "layers:\n"
        "  - Linear(20, 256)\n"
        "  - ReLU\n"
        "  - Linear(256, 10)\n")


def test_lazy_layers_become_their_non_lazy_classes(tmp_path: Path) -> None:
    path = tmp_path / "convs.yaml"
    path.write_text(FEATURES["conv1d-norms"][0], encoding="utf-8")
    text = export.explicit_spec(*dry_run(path, ("2,3,16",)))
    layers = yaml.safe_load(text)["layers"]
    assert layers[:4] == [
        "Conv1d(3, 4, 3, padding=1)",
        "InstanceNorm1d(4, affine=true, track_running_stats=true)",  # LazyInstanceNorm's defaults
        "ConvTranspose1d(4, 4, 2, stride=2)",
        "BatchNorm1d(4, momentum=0.2)"]
    assert layers[4] == {"norm": "InstanceNorm1d(4, affine=false, track_running_stats=true)"}


def test_positions_and_gaps_keep_their_names(tmp_path: Path) -> None:
    path = tmp_path / "gaps.yaml"
    path.write_text(FEATURES["positions-and-gaps"][0], encoding="utf-8")
    doc = yaml.safe_load(export.explicit_spec(*dry_run(path, ("a=2,8", "self=2,8"))))
    layers = doc["layers"]
    assert layers[2] == "Linear(16, 8)" and layers[3] == "Linear(8, 8)"
    assert layers[4] == {"wide": "Linear(8, 8)", "repeat": 2}
    assert layers[5] == {"grow": "Linear_x2"}
    assert doc["blocks"]["Linear_x2"]["layers"] == ["Linear(8, 12)", "Linear(12, 12)"]
    assert layers[6] == {"op": "Linear", "repeat": 3, "when": False}  # indices 7, 8, 9
    assert layers[8] == {"op": "ReLU", "repeat": 0}
    assert layers[9] == {"gone": "Linear", "repeat": 0}
    assert "Sigmoid" not in doc["blocks"] and layers[14] == {"s": "Sigmoid_2"}
    assert doc["outputs"] == [-1, "again", "lambda.1"]


def test_long_arguments_use_the_long_form(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    path.write_text(FEATURES["long-arguments"][0], encoding="utf-8")
    layers = yaml.safe_load(export.explicit_spec(*dry_run(path, ("2,600",))))["layers"]
    assert layers[0] == {"op": "Split", "name": "parts", "args": [[1] * 600, -1], "kwargs": {}}


# --- PyTorch code ------------------------------------------------------------------------------


def test_pytorch_code_round_trip(case: tuple[Path, tuple[str, ...], str | None]) -> None:
    path, inputs, scale = case
    built, lazy = dry_run(path, inputs, scale)
    code = export.pytorch_code(built, lazy)
    assert "Lazy" not in code and not re.search(r"^\s*(import|from) lazyspec", code, re.M)
    with torch.device("meta"):
        model = load_code(code)["Model"]()
    assert param_shapes(model) == records(lazy)
    assert state_shapes(model) == state_shapes(built.module)


def test_pytorch_code_computes_what_the_spec_computes(
        case: tuple[Path, tuple[str, ...], str | None]) -> None:
    """Same state dict (strict), same inputs: the same outputs, so the data flow is the spec's."""
    path, inputs, scale = case
    built, result = dry_run(path, inputs, scale, device="cpu")
    state = export.init_state_dict(built.module, "xavier_normal", seed=0)
    model = load_code(export.pytorch_code(built, result, class_name="Exported"))["Exported"]()
    model.load_state_dict(state)
    torch.manual_seed(0)
    xs = [torch.randint(0, 5, i.shape) if i.dtype == "int64" else torch.randn(i.shape)
          for i in result.inputs]
    model.eval()
    built.module.eval()
    with torch.no_grad():
        got, want = model(*xs), built.module(*xs)
    torch.testing.assert_close(got, want)
    outs = got if isinstance(got, tuple) else (got,)
    assert [tuple(o.shape) for o in outs] == result.outputs


def test_layers_from_an_allowed_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FIXTURES))
    path = tmp_path / "allowed.yaml"
    path.write_text("layers:\n  - LazyLinear(4)\n  - allowpkg.Scale(0.5)\n"
                    "  - aff: allowpkg.layers.Affine(4)\n", encoding="utf-8")
    built, lazy = dry_run(path, ("2,8",), allow=("allowpkg",))
    text = export.explicit_spec(built, lazy)
    assert "  - aff: allowpkg.layers.Affine(4)\n" in text
    (tmp_path / "explicit.yaml").write_text(text, encoding="utf-8")
    again = lazyspec.load(tmp_path / "explicit.yaml").infer(allow=["allowpkg"])
    assert records(again) == records(lazy) == [("0.weight", (4, 8)), ("0.bias", (4,)),
                                               ("aff.weight", (4,)), ("aff.bias", (4,))]
    code = export.pytorch_code(built, lazy)
    assert "import allowpkg.layers\n" in code
    assert param_shapes(load_code(code)["Model"]()) == records(lazy)


def test_a_layer_with_lazy_layers_inside_is_noted(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(FIXTURES))
    path = tmp_path / "inside.yaml"
    path.write_text("layers:\n  - proj: allowpkg.layers.CpuOnly(3)\n", encoding="utf-8")
    built, lazy = dry_run(path, ("2,8",), allow=("allowpkg",))
    note = "Note: allowpkg.layers.CpuOnly builds lazy layers of its own"
    assert note in export.explicit_spec(built, lazy)
    assert note in export.pytorch_code(built, lazy)


def test_pytorch_code_for_the_mlp() -> None:
    code = export.pytorch_code(*dry_run(SPECS / "mlp.yaml", ("2,20",)))
    assert '        self.add_module("0", nn.Linear(20, 256))\n' in code
    assert '        self.add_module("2", nn.Linear(256, 10))\n' in code
    assert "    def forward(self, input):\n" in code


def test_every_builtin_op_has_a_torch_form() -> None:
    from lazyspec.export.pytorch import INLINE_OPS, MODULE_OPS

    assert set(INLINE_OPS) | MODULE_OPS == set(BUILTIN_OPS)  # an expression, or a module
    assert not set(INLINE_OPS) & MODULE_OPS


def test_pytorch_code_rejects_a_bad_class_name() -> None:
    built, result = dry_run(SPECS / "mlp.yaml", ("2,20",))
    with pytest.raises(ValueError, match="not a Python identifier"):
        export.pytorch_code(built, result, class_name="class")


# --- initialised state dicts ---------------------------------------------------------------------


def cpu_model(name: str) -> nn.Module:
    inputs, scale = CASES[name]
    return dry_run(SPECS / name, inputs, scale, device="cpu")[0].module


@pytest.mark.parametrize("name", BUNDLED)
def test_same_seed_gives_identical_tensors(name: str) -> None:
    rng = torch.get_rng_state()
    a = export.init_state_dict(cpu_model(name), "kaiming_normal", seed=7)
    b = export.init_state_dict(cpu_model(name), "kaiming_normal", seed=7)
    model = cpu_model(name)
    c = export.init_state_dict(model, "kaiming_normal", seed=8)
    assert list(a) == list(b) == list(model.state_dict())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert all(v.device.type == "cpu" for v in a.values())
    torch.set_rng_state(rng)


@pytest.mark.parametrize("init", ["default", "xavier_uniform", "normal:0.02", "uniform"])
def test_every_scheme_is_reproducible(init: str) -> None:
    a = export.init_state_dict(cpu_model("lenet.yaml"), init, seed=1)
    b = export.init_state_dict(cpu_model("lenet.yaml"), init, seed=1)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_seed_leaves_the_global_rng_alone() -> None:
    model = cpu_model("mlp.yaml")
    before = torch.get_rng_state()
    export.init_state_dict(model, "xavier_uniform", seed=3)
    assert torch.equal(torch.get_rng_state(), before)


def test_zeros_gives_zero_weights_and_biases() -> None:
    state = export.init_state_dict(cpu_model("resnet18.yaml"), "zeros", seed=0)
    assert all(not state[k].any() for k in state if k.endswith((".weight", ".bias"))
               and (state[k].dim() >= 2 or k.endswith(".bias")))
    assert torch.equal(state["bn1.weight"], torch.ones(64))  # norm scales stay one
    assert torch.equal(state["bn1.running_var"], torch.ones(64))


@pytest.mark.parametrize(("init", "check"), [
    ("ones", lambda w: bool((w == 1).all())),
    ("normal:0.5", lambda w: abs(float(w.std()) - 0.5) < 0.05),
    ("uniform:0.1", lambda w: bool((w.abs() <= 0.1).all()) and float(w.abs().max()) > 0.09),
    ("xavier_uniform", lambda w: bool((w.abs() <= (6 / (20 + 256)) ** 0.5).all())),
    ("kaiming_normal", lambda w: abs(float(w.std()) - (2 / 20) ** 0.5) < 0.03),
])
def test_schemes_set_the_weights(init: str, check: Any) -> None:
    state = export.init_state_dict(cpu_model("mlp.yaml"), init, seed=0)
    assert check(state["0.weight"])  # [256, 20]
    assert not state["0.bias"].any()


def test_default_is_pytorchs_own_initialisation() -> None:
    state = export.init_state_dict(cpu_model("mlp.yaml"), "default", seed=0)
    bound = 1 / 20 ** 0.5  # nn.Linear: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias
    assert bool((state["0.weight"].abs() <= bound).all()) and state["0.bias"].any()


def test_tied_parameters_stay_one_tensor() -> None:
    state = export.init_state_dict(cpu_model("gpt2.yaml"), "normal:0.02", seed=0)
    assert state["lm_head.weight"].data_ptr() == state["wte.weight"].data_ptr()


@pytest.mark.parametrize(("init", "message"), [
    ("xavier", "unknown init 'xavier'.*choose one of: default, xavier_uniform"),
    ("he_normal", "kaiming_normal"),
    ("zeros:1", "takes no value"),
    ("normal:abc", "must be a number"),
    ("uniform:-1", "must be a number >= 0"),
])
def test_a_bad_init_is_a_clear_value_error(init: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        export.parse_init(init)
    with pytest.raises(ValueError, match=message):
        export.init_state_dict(cpu_model("mlp.yaml"), init, seed=0)


def test_init_needs_real_values() -> None:
    built, _ = dry_run(SPECS / "mlp.yaml", ("2,20",))
    with pytest.raises(ValueError, match="build it on cpu"):
        export.init_state_dict(built.module, "default", seed=0)


def test_write_state_dict_round_trip(tmp_path: Path) -> None:
    state = export.init_state_dict(cpu_model("gpt2.yaml"), "xavier_uniform", seed=0)
    path = tmp_path / "model.pt"
    export.write_state_dict(path, state)
    loaded = torch.load(path, weights_only=True)
    assert list(loaded) == list(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left


def test_write_state_dict_failure_keeps_the_old_file(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"old")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        export.write_state_dict(path, {"w": torch.zeros(2)})
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_write_state_dict_to_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot write the state dict"):
        export.write_state_dict(tmp_path / "nope" / "model.pt", {"w": torch.zeros(2)})


def test_layers_without_a_reset_method_are_seeded_too() -> None:
    class Scale(nn.Module):  # a custom layer: no reset_parameters()
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(3, 4))
            self.gain = nn.Parameter(torch.randn(4))

    def fresh() -> nn.Module:
        return nn.Sequential(nn.Linear(4, 3), Scale(), nn.MultiheadAttention(4, 2))

    a = export.init_state_dict(fresh(), "default", seed=5)
    b = export.init_state_dict(fresh(), "default", seed=5)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(a["1.gain"], torch.ones(4))


def test_export_command_round_trip(cli, tmp_path) -> None:
    import json

    from conftest import SPECS

    explicit = tmp_path / "resnet.explicit.yaml"
    r = cli("export", SPECS / "resnet18.yaml", "--input", "1,3,64,64", "--to", "spec",
            "--output", explicit)
    assert r.code == 0, r.stderr
    lazy = cli("infer", SPECS / "resnet18.yaml", "--input", "1,3,64,64", "-f", "json")
    again = cli("infer", explicit, "-f", "json")

    def shapes(doc: str) -> list[tuple[str, list[int]]]:
        return [(p["path"], p["shape"]) for p in json.loads(doc)["params"]]

    assert shapes(again.stdout) == shapes(lazy.stdout)
    code = cli("export", SPECS / "mlp.yaml", "--input", "2,20", "--to", "pytorch")
    assert code.code == 0 and "class Model(nn.Module)" in code.stdout


def test_export_state_dict_command_is_reproducible(cli, tmp_path) -> None:
    from conftest import SPECS

    paths = [tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt"]
    for path, seed in zip(paths, ("3", "3", "4"), strict=True):
        r = cli("export", SPECS / "mlp.yaml", "--input", "2,20", "--to", "state-dict",
                "--init", "xavier_uniform", "--seed", seed, "--output", path)
        assert r.code == 0, r.stderr
    a, b, c = (torch.load(p) for p in paths)
    assert list(a) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["0.weight"], c["0.weight"])
    assert torch.count_nonzero(a["0.bias"]) == 0


def test_export_usage_errors(cli, tmp_path) -> None:
    from conftest import SPECS

    assert cli("export", SPECS / "mlp.yaml", "--input", "2,20", "--to", "onnx").code == 2
    assert cli("export", SPECS / "mlp.yaml", "--input", "2,20", "--to", "state-dict").code == 2
    r = cli("export", SPECS / "mlp.yaml", "--input", "2,20", "--to", "state-dict",
            "--output", tmp_path / "x.pt", "--init", "glorot")
    assert r.code == 2 and "unknown init 'glorot'" in r.stderr
    r = cli("export", SPECS / "mlp.yaml", "--input", "2,20", "--to", "state-dict",
            "--output", tmp_path / "missing" / "x.pt")
    assert r.code == 2 and "error[LS100]" in r.stderr
