"""Names and buffers a hostile spec could grow without bound (issue 16): a name's length (written,
or made by a `names:` template), a `names:` template's length, a node's dotted path, and the
elements of all a model's buffers together. Each limit fails before the work, located.

The command-line cases reuse tests/test_bad_inputs.py's `Bad` and its runner (in-process, in a
fresh folder, under a hang guard: without these limits each of them runs for minutes or more and
the guard fails it). The invalid specs of this area are tests/cases/invalid/h16_*.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import test_bad_inputs as catalogue
import torch
from conftest import hang_guard
from test_bad_inputs import Bad

from lazyspec import compile as compiler
from lazyspec import tensors
from lazyspec.compile import MAX_PATH_CHARS, BuildOptions, build
from lazyspec.errors import Diagnostic, SpecError
from lazyspec.report.diagnostics import render
from lazyspec.spec.parse import MAX_NAME_CHARS, MAX_TEMPLATE_CHARS, parse_file
from lazyspec.tensors import MAX_BUFFER_ELEMENTS, MAX_MODEL_BUFFER_ELEMENTS, TensorDecl

# The reports' two specs: a 100 KB template of `{2**255}` fields (each name about 1 MB; 1.2 GB
# and still running after 120 s), and a 200,000-character name in a block repeated 2,000 times
# (34 s, 2.7 GB).
HUGE_TEMPLATE = ("lazyspec: 2\ninputs: {x: [2, 4]}\nlayers:\n  - blk: Identity\n    repeat: 3000\n"
                 '    names: "l{i}x' + "{2**255}" * 12500 + '"\n')
HUGE_NAME = ("lazyspec: 2\ninputs: {x: [2, 4]}\nblocks:\n  B:\n    inputs: {x: }\n    layers:\n"
             f"      - ? {'a' * 200_000}\n        : Linear(4, 4)\n"
             "layers:\n  - blk: B\n    repeat: 2000\n")
# 6,000 copies of a block whose buffer is the largest one allowed: about 85 minutes before.
MANY_BUFFERS = """inputs: {x: [2, 4]}
blocks:
  B:
    inputs: {x: }
    layers:
      - r: Buffer('relative_position_index', [64, 64])
      - y: Identity
        in: x
layers:
  - fc: LazyLinear(4)
  - blk: B
    repeat: 6000
"""


def run(command: str, spec: str, *args: str) -> dict[str, object]:
    return {"args": [command, "m.yaml", *args], "files": {"m.yaml": spec}}


CASES: list[Bad] = [
    Bad("template_of_huge_fields", **run("infer", HUGE_TEMPLATE), exit=1, code="LS126",
        text="m.yaml:6:12: error[LS126]: `names:` template of 100,005 characters (limit: 1,024 "
        "characters)"),
    Bad("huge_name_repeated", **run("infer", HUGE_NAME), exit=1, code="LS126",
        text="m.yaml:7:11: error[LS126]: node name of 200,000 characters (limit: 256 "
        "characters)"),
    Bad("huge_name_show", **run("show", HUGE_NAME), exit=1, code="LS126",
        text="node name of 200,000 characters"),
    Bad("many_buffers_infer", **run("infer", MANY_BUFFERS), exit=1, code="LS126",
        text="m.yaml:6:12: error[LS126]: Buffer('relative_position_index', ...) of 16,777,216 "
        "elements would take the model's buffers past 67,108,864 elements together (limit)"),
    Bad("many_buffers_real_device", **run("infer", MANY_BUFFERS, "--device", "cpu"), exit=1,
        code="LS126", text="in: blk > 4 > B > r"),
    Bad("many_buffers_graph", **run("graph", MANY_BUFFERS), exit=1, code="LS126",
        text="would take the model's buffers past 67,108,864 elements"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_limits(case: Bad, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    catalogue.test_bad_input(case, tmp_path, monkeypatch, capsys)


def test_this_catalogue_holds_its_cases() -> None:
    specs = list((Path(__file__).parent / "cases" / "invalid").glob("h16_*.yaml"))
    assert len(specs) >= 6
    assert not {c.id for c in CASES} & {c.id for c in catalogue.CASES}, "an id is used twice"


def built(tmp_path: Path, text: str) -> Any:
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    return build(parse_file(path), BuildOptions())


def failure(tmp_path: Path, text: str) -> Diagnostic:
    """The first diagnostic of a spec that must fail (the guard fails a limit that stopped
    working: the work it bounds takes minutes)."""
    with hang_guard(text[:60]), pytest.raises(SpecError) as info:
        built(tmp_path, text)
    return info.value.diagnostics[0]


# --- names ---------------------------------------------------------------------------------------


def test_a_name_at_the_limit_builds_and_one_more_character_fails(tmp_path: Path) -> None:
    name = "n" * MAX_NAME_CHARS
    result = built(tmp_path, f"layers:\n  - {name}: Linear(4, 4)\n")
    assert f"{name}.weight" in dict(result.module.named_parameters())
    d = failure(tmp_path, f"layers:\n  - {name}x: Linear(4, 4)\n")
    assert (d.code, d.location.line, d.location.col) == ("LS126", 2, 5)  # type: ignore[union-attr]
    assert "257 characters (limit: 256 characters)" in d.message


@pytest.mark.parametrize("where", ["block", "param", "input", "index"])
def test_every_kind_of_name_is_capped(where: str, tmp_path: Path) -> None:
    long = "q" * (MAX_NAME_CHARS + 1)
    text = {
        "block": f"blocks:\n  {long}:\n    layers:\n      - ReLU\nlayers:\n  - ReLU\n",
        "param": f"params:\n  {long}: 3\nlayers:\n  - ReLU\n",
        "input": f"inputs:\n  {long}: [2, 4]\nlayers:\n  - ReLU\n",
        "index": f"lazyspec: 2\nlayers:\n  - r: ReLU\n    repeat: 2\n    index: {long}\n",
    }[where]
    d = failure(tmp_path, text)
    assert d.code == "LS126" and f"{where} name of 257 characters" in d.message


def test_a_template_is_evaluated_piece_by_piece_and_stops_at_the_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`{2**255}` is 77 digits: the fourth field passes 256 characters, and nothing after it,
    nor any later copy, is evaluated."""
    fields = "{2**255}" * 100  # 800 characters, under the template's limit
    evaluated: list[object] = []
    original = compiler._Builder.evaluate

    def spy(self: Any, value: Any, env: Any, trail: Any) -> Any:
        evaluated.append(value)
        return original(self, value, env, trail)

    monkeypatch.setattr(compiler._Builder, "evaluate", spy)
    d = failure(tmp_path, f'lazyspec: 2\nlayers:\n  - r: ReLU\n    repeat: 1000\n'
                          f'    names: "l{{i}}{fields}"\n')
    assert d.code == "LS126" and "gives copy 0 a name longer than 256 characters" in d.message
    assert (d.location.line, d.location.col) == (5, 12)  # type: ignore[union-attr]
    assert len(evaluated) <= 1 + 1 + 4  # `repeat`, `{i}`, four fields


def test_a_template_at_its_limit_is_read_and_one_longer_is_not(tmp_path: Path) -> None:
    pad = "{i - i}" * ((MAX_TEMPLATE_CHARS - 7) // 7)
    template = "layer" + pad + "x" * (MAX_TEMPLATE_CHARS - 5 - len(pad) - 3) + "{i}"
    assert len(template) == MAX_TEMPLATE_CHARS
    text = f'lazyspec: 2\nlayers:\n  - r: ReLU\n    repeat: 2\n    names: "{template}"\n'
    names = [n for n, _ in built(tmp_path, text).module.named_modules()]
    assert len([n for n in names if n.startswith("r.layer")]) == 2
    d = failure(tmp_path, text.replace(template, template + "y"))
    assert d.code == "LS126" and "template of 1,025 characters" in d.message


def test_repeated_names_are_still_found(tmp_path: Path) -> None:
    d = failure(tmp_path, 'lazyspec: 2\nparams: {n: 5}\nlayers:\n  - r: ReLU\n    repeat: 20\n'
                          '    names: "l{i % n}"\n')
    assert d.code == "LS115" and "several copies the name 'l0'" in d.message


# --- paths ---------------------------------------------------------------------------------------


def nested(lengths: list[int]) -> str:
    """Blocks nested len(lengths) deep, the node at level d named with lengths[d] characters."""
    lines = ["blocks:"]
    for d, n in enumerate(lengths):
        inner = f"B{d + 1}" if d + 1 < len(lengths) else "ReLU"
        lines += [f"  B{d}:", "    layers:", f"      - {'p' * (n - 1)}{d}: {inner}"]
    return "\n".join([*lines, "layers:", "  - B0", ""])


def test_a_path_at_the_limit_builds_and_one_longer_fails(tmp_path: Path) -> None:
    # "0", then four names each after a dot: 1 + 4 + 3 * 256 + 251 = 1,024 characters
    fits = built(tmp_path, nested([256, 256, 256, 251]))
    longest = max((n for n, _ in fits.module.named_modules()), key=len)
    assert len(longest) == MAX_PATH_CHARS
    d = failure(tmp_path, nested([256, 256, 256, 252]))
    assert d.code == "LS126" and "path is 1,025 characters long (limit: 1,024" in d.message
    assert d.location is not None and d.location.line == 13


def test_a_deep_trail_of_long_names_is_shown_on_one_short_line() -> None:
    trail = tuple(f"{'t' * 250}{d}" for d in range(32))
    text = render(Diagnostic("LS126", "too long", None, trail=trail), lambda path: None)
    (line,) = [x for x in text.splitlines() if x.startswith("  in: ")]
    assert len(line) < 800 and "... (23 more)" in line and line.endswith("t31")


# --- buffers -------------------------------------------------------------------------------------


def test_a_meta_run_computes_no_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    """On `meta` a scheme makes its tensor on `meta`: the same shape and dtype as on the CPU, and
    no element computed (a [4096, 4096] relative position index cost 0.85 s per copy)."""
    for scheme, args in [("relative_position_index", ([3, 5],)), ("arange", (7,)),
                         ("causal_mask", (6,)), ("zeros", ([2, 3],)), ("ones", ([4],))]:
        decl = TensorDecl("b", "buffer", (), scheme=scheme, args=args)
        real = tensors.make_tensor(decl, torch.device("cpu"), torch.float64)
        meta = tensors.make_tensor(decl, torch.device("meta"), torch.float64)
        assert meta.is_meta and (meta.shape, meta.dtype) == (real.shape, real.dtype), scheme
    where: list[str] = []
    original = tensors.BUFFER_SCHEMES["relative_position_index"]

    def spy(size: Any) -> torch.Tensor:
        where.append(torch.empty(0).device.type)  # where its tensors are made
        return original(size)

    monkeypatch.setitem(tensors.BUFFER_SCHEMES, "relative_position_index", spy)
    decl = TensorDecl("b", "buffer", (), scheme="relative_position_index", args=([64, 64],))
    assert tensors.make_tensor(decl, torch.device("meta"), torch.float32).shape == (2**24,)
    assert where == ["meta"]


def test_the_model_buffer_limit_counts_copies_and_refuses_before_computing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []
    original = tensors.BUFFER_SCHEMES["causal_mask"]

    def spy(n: int) -> torch.Tensor:
        made.append(n)
        return original(n)

    monkeypatch.setitem(tensors.BUFFER_SCHEMES, "causal_mask", spy)
    fit = MAX_MODEL_BUFFER_ELEMENTS // MAX_BUFFER_ELEMENTS  # copies of the largest buffer
    spec = ("blocks:\n  B:\n    inputs: {x: }\n    layers:\n"
            "      - m: Buffer('causal_mask', 4096)\n"
            "      - y: ReLU\n        in: x\nlayers:\n  - blk: B\n    repeat: REPEAT\n")
    result = built(tmp_path, spec.replace("REPEAT", str(fit)))
    assert sum(b.numel() for b in result.module.buffers()) == MAX_MODEL_BUFFER_ELEMENTS
    made.clear()
    d = failure(tmp_path, spec.replace("REPEAT", "6000"))
    assert d.code == "LS126" and d.location is not None
    assert (d.location.line, d.location.col) == (5, 12)  # the op, after `- m: `
    assert d.trail[-1] == "m" and f"blk > {fit} > B" in " > ".join(d.trail)
    assert made == [4096] * fit  # the copy over the limit, and those after it, never ran
