"""What building a spec may do: nothing placed or allocated by the spec, and work bounded by
what the spec asks for (lazyspec.construction, the limits in lazyspec.compile).

The catalogue cases reuse tests/test_bad_inputs.py's `Bad` and its runner (in-process, in a
fresh folder, under a hang guard: a construction bound that stopped working makes its case run
for minutes, and the guard fails it after 20 s). The invalid specs of this area are
tests/cases/invalid/build_*.yaml.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import pytest
import test_bad_inputs as catalogue
import torch
from test_bad_inputs import Bad
from torch import nn
from torch.nn.modules import module as torch_module

from lazyspec import construction
from lazyspec.compile import BuildOptions, build
from lazyspec.construction import ConstructionLimit, bounded, count_created, responsible_argument
from lazyspec.errors import SpecError
from lazyspec.options import MAX_NODES
from lazyspec.spec.parse import parse_file

RNN_HUGE = "layers:\n  - RNN(8, 8, num_layers=200000)\n"
TRANSFORMER_HUGE = ("layers:\n  - Transformer(d_model=64, nhead=4, num_encoder_layers=20000, "
                    "num_decoder_layers=2, dim_feedforward=128)\n")
LSTM_POSITIONAL = "layers:\n  - LSTM(8, 8, 100000)\n"
RNN_30 = "layers:\n  - RNN(8, 8, num_layers=30)\n"
CUTOFFS = ("layers:\n  - op: AdaptiveLogSoftmaxWithLoss\n    args: [8, 3000]\n"
           "    kwargs: {div_value: 1.0, cutoffs: [" + ", ".join(str(i) for i in range(1, 2501))
           + "]}\n")
# 2,000 encoder layers of 22 modules and tensors each: every op is small, the model is not.
MANY_LAYERS = ("layers:\n  - op: TransformerEncoderLayer(16, 2, 32, batch_first=true)\n"
               "    repeat: 2000\n")


def run(command: str, spec: str, *args: str) -> dict[str, object]:
    return {"args": [command, "m.yaml", *args], "files": {"m.yaml": spec}}


CASES: list[Bad] = [
    # --- one op that asks for an unbounded model: refused, the argument named --------------------
    Bad("op_rnn_layers_infer", **run("infer", RNN_HUGE, "--input", "2,4,8"), exit=1,
        code="LS126", text="m.yaml:2:26: error[LS126]: RNN(8, 8, num_layers=200000) creates more "
        "than 10,000 modules and tensors (limit per op)"),
    Bad("op_rnn_layers_show", **run("show", RNN_HUGE), exit=1, code="LS126",
        text="hint: `num_layers` sets how many it creates: lower it, or raise the limit with "
        "--max-op-tensors N"),
    Bad("op_transformer_layers_infer", **run("infer", TRANSFORMER_HUGE, "--input", "2,4,64"),
        exit=1, code="LS126", text="m.yaml:2:57: error[LS126]: Transformer(d_model=64, nhead=4, "
        "num_encoder_layers=20000"),
    Bad("op_transformer_layers_show", **run("show", TRANSFORMER_HUGE), exit=1, code="LS126",
        text="`num_encoder_layers` sets how many it creates"),
    Bad("op_lstm_positional_layers", **run("infer", LSTM_POSITIONAL, "--input", "2,4,8"),
        exit=1, code="LS126", text="m.yaml:2:16: error[LS126]: LSTM(8, 8, 100000) creates more "
        "than 10,000"),
    Bad("op_gru_positional_unnamed", **run("show", "layers:\n  - GRU(8, 8, 100000)\n"), exit=1,
        code="LS126", text="hint: argument 3 sets how many it creates"),
    Bad("op_cutoffs_list", **run("show", CUTOFFS), exit=1, code="LS126",
        text="`cutoffs` sets how many it creates"),
    Bad("op_rnn_layers_graph", **run("graph", RNN_HUGE), exit=1, code="LS126",
        text="creates more than 10,000 modules and tensors (limit per op)"),
    Bad("op_rnn_layers_export", **run("export", RNN_HUGE, "--input", "2,4,8"), exit=1,
        code="LS126", text="creates more than 10,000 modules and tensors (limit per op)"),
    Bad("op_rnn_layers_check", **run("check", RNN_HUGE, "--input", "2,4,8", "--lock", "l.lock"),
        exit=1, code="LS126", text="creates more than 10,000 modules and tensors (limit per op)"),
    # --- the limit is the user's to set -----------------------------------------------------------
    Bad("max_op_tensors_lower", **run("infer", RNN_30, "--input", "2,4,8",
                                      "--max-op-tensors", "100"),
        exit=1, code="LS126", text="RNN(8, 8, num_layers=30) creates more than 100 modules"),
    Bad("max_op_tensors_lock", **run("lock", RNN_30, "--input", "2,4,8", "--lock", "l.lock",
                                     "--max-op-tensors", "100"),
        exit=1, code="LS126", text="creates more than 100 modules"),
    Bad("max_op_tensors_zero", **run("infer", RNN_30, "--input", "2,4,8",
                                     "--max-op-tensors", "0"),
        code=None, text="Invalid value for '--max-op-tensors'"),
    Bad("max_op_tensors_not_a_number", **run("show", RNN_30, "--max-op-tensors", "many"),
        code=None, text="Invalid value for '--max-op-tensors'"),
    # --- the model as a whole ---------------------------------------------------------------------
    Bad("model_tensors", **run("infer", MANY_LAYERS, "--input", "2,4,16"), exit=1, code="LS126",
        text="the model's ops create more than 20,000 modules and tensors (limit)"),
    Bad("model_nodes", **run("infer", "layers:\n  - op: ReLU\n    repeat: 20001\n",
                             "--input", "2,4"),
        exit=1, code="LS126", text="`repeat: 20001` would make more than 20,000 nodes"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_build(case: Bad, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    catalogue.test_bad_input(case, tmp_path, monkeypatch, capsys)


def test_this_catalogue_holds_its_cases() -> None:
    specs = list((Path(__file__).parent / "cases" / "invalid").glob("build_*.yaml"))
    assert len(CASES) + len(specs) >= 20
    assert not {c.id for c in CASES} & {c.id for c in catalogue.CASES}, "an id is used twice"


# --- the construction bound itself ---------------------------------------------------------------


def test_registrations_are_counted_and_stop_the_build() -> None:
    with pytest.raises(ConstructionLimit), bounded(50) as budget, torch.device("meta"):
        nn.RNN(8, 8, num_layers=100)  # 4 parameters a layer, registered one by one
    assert budget.count == 51


def test_deep_copies_are_counted() -> None:
    """nn.Transformer deep-copies its layer N times before registering any copy: the copies
    count as they are made (nn.Module.__setstate__), not at the end."""
    with torch.device("meta"):
        layer = nn.TransformerEncoderLayer(16, 2, 32)
    with pytest.raises(ConstructionLimit), bounded(100) as budget:
        for _ in range(100):
            copy.deepcopy(layer)
    assert budget.count == 101


def test_nothing_is_left_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    before = (dict(torch_module._global_parameter_registration_hooks),
              dict(torch_module._global_module_registration_hooks),
              dict(torch_module._global_buffer_registration_hooks), nn.Module.__setstate__)
    with pytest.raises(ConstructionLimit), bounded(3), torch.device("meta"):
        nn.Linear(2, 2), nn.Linear(2, 2)
    with bounded(100), torch.device("meta"):
        copy.deepcopy(nn.Linear(2, 2))
    after = (dict(torch_module._global_parameter_registration_hooks),
             dict(torch_module._global_module_registration_hooks),
             dict(torch_module._global_buffer_registration_hooks), nn.Module.__setstate__)
    assert after == before


def test_other_threads_are_not_counted() -> None:
    """A budget counts its own thread's construction: another thread building at the same time
    is neither counted nor stopped."""
    started, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def other() -> None:
        started.wait(10)
        try:
            with torch.device("meta"):
                nn.RNN(4, 4, num_layers=20)
                copy.deepcopy(nn.Linear(2, 2))
        except BaseException as e:  # reported in the main thread
            errors.append(e)
        finally:
            done.set()

    thread = threading.Thread(target=other)
    thread.start()
    with bounded(1) as budget:
        started.set()
        assert done.wait(20)
    thread.join(10)
    assert errors == [] and budget.count == 0


def test_count_created_is_exact_and_quiet() -> None:
    with torch.device("meta"):
        assert count_created(lambda: nn.Linear(2, 2), 10) == 2  # weight, bias
        assert count_created(lambda: nn.RNN(2, 2, num_layers=3), 1000) == 12
        assert count_created(lambda: nn.RNN(2, 2, num_layers=3), 5) is None  # over the limit
        assert count_created(lambda: nn.Dropout(2.0), 5) is None  # the op fails
        # a construction warning is no failure (pytest turns warnings into errors)
        assert count_created(lambda: nn.Transformer(16, 2, 1, 1, 32), 1000) is not None


def test_the_responsible_argument_is_named() -> None:
    def rnn(args: list[object], kwargs: dict[str, object]) -> nn.Module:
        with torch.device("meta"):
            return nn.RNN(*args, **kwargs)  # type: ignore[arg-type]

    assert responsible_argument(rnn, [8, 8], {"num_layers": 5000}, 100) == "num_layers"
    assert responsible_argument(rnn, [8, 8, 5000], {}, 100) == 2
    # a large size that does not change the count is not blamed; the count is
    assert responsible_argument(rnn, [4096, 8, 5000], {}, 100) == 2
    assert responsible_argument(rnn, [4096, 8], {}, 100) is None


def test_a_real_large_layer_is_far_under_the_limit() -> None:
    """The default is for hostile specs only: nn.Transformer-base and a 96-layer encoder build."""
    with torch.device("meta"):
        base = count_created(lambda: nn.Transformer(), construction.MAX_OP_TENSORS)
        deep = count_created(lambda: nn.TransformerEncoder(
            nn.TransformerEncoderLayer(512, 8), 96, enable_nested_tensor=False),
            construction.MAX_OP_TENSORS)
    assert base is not None and base < 1_000
    assert deep is not None and deep < construction.MAX_OP_TENSORS // 4


def spec_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_model_limit_counts_every_op(tmp_path: Path) -> None:
    spec = parse_file(spec_file(tmp_path, "layers:\n  - op: Linear(4, 4)\n    repeat: 50\n"))
    assert len(list(build(spec, BuildOptions(max_model_tensors=100)).module.parameters())) == 100
    with pytest.raises(SpecError) as info:
        build(spec, BuildOptions(max_model_tensors=99))
    (d,) = info.value.diagnostics
    assert d.code == "LS126" and "more than 99 modules and tensors" in d.message
    assert d.location is not None and d.location.line == 2


def test_the_op_limit_is_an_option(tmp_path: Path) -> None:
    spec = parse_file(spec_file(tmp_path, RNN_30))
    build(spec, BuildOptions(max_op_tensors=120))  # 30 layers x 4 parameters
    with pytest.raises(SpecError, match="creates more than 119 modules"):
        build(spec, BuildOptions(max_op_tensors=119))


def test_the_node_limit_is_the_documented_one() -> None:
    docs = (Path(__file__).resolve().parent.parent / "docs" / "spec-language.md").read_text(
        encoding="utf-8")
    assert f"| nodes in the model, after repeats, blocks included | {MAX_NODES:,} |" in docs


# --- a spec places and allocates nothing ----------------------------------------------------------


@pytest.mark.parametrize("line", [
    "Linear(16000, 16000, device='cpu')",
    "Linear(16000, 16000, True, 'cpu')",
    "LazyLinear(16000, dtype='float64')",
    "Embedding(10, 4, _weight=[[1.0, 2.0, 3.0, 4.0]])",
    "Bilinear(4, 4, 4, factory_kwargs=5)",
])
def test_placement_arguments_are_refused_before_anything_is_built(
        line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    original = construction.bounded

    def spy(limit: int):  # type: ignore[no-untyped-def]
        built.append(line)
        return original(limit)

    monkeypatch.setattr("lazyspec.compile.bounded", spy)
    spec = parse_file(spec_file(tmp_path, f"layers:\n  - {line}\n"))
    with pytest.raises(SpecError) as info:
        build(spec, BuildOptions())
    assert [d.code for d in info.value.diagnostics] == ["LS129"]
    assert built == []  # refused statically: no constructor ran


# --- the symbolic pass ----------------------------------------------------------------------------


def test_the_symbolic_pass_records_no_source_locations(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """torch would walk the stack for every symbol and guard (and import torch.export and
    inductor the first time) to record where it was made; lazyspec names the node itself."""
    from torch.fx.experimental import symbolic_shapes

    import lazyspec

    if getattr(symbolic_shapes, "SLoc", None) is None:
        pytest.skip("this torch records source locations differently")
    walks: list[object] = []
    original = symbolic_shapes.ShapeEnv._get_stack_summary

    def counted(self: object, *args: object, **kwargs: object) -> object:
        walks.append(args)
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(symbolic_shapes.ShapeEnv, "_get_stack_summary", counted)
    spec = spec_file(tmp_path, "layers:\n  - LazyConv2d(4, 3, stride=2, padding=1)\n"
                     "  - BatchNorm2d(4)\n  - ReLU\n  - MaxPool2d(2)\n")
    result = lazyspec.load(spec).infer("B,3,H,W")
    assert result.nodes[-1].symbolic == ("[B, 4, ((((H - 1)//2) - 1)//2) + 1, "
                                         "((((W - 1)//2) - 1)//2) + 1]")
    assert walks == []
