"""Compilation rules: naming, scoping, repeat, when, share, params and includes."""

from __future__ import annotations

import pytest

import lazyspec
from lazyspec.errors import DryRunError, SpecError


def names(spec_path, *inputs, **options):
    return [(p.path, p.shape) for p in lazyspec.infer(spec_path, *inputs, **options).params]


def test_named_repeat_keeps_its_container_even_for_one_copy(write_spec):
    spec = write_spec("params: {n: 1}\nlayers:\n  - h: LazyLinear(4)\n    repeat: n\n")
    assert names(spec, "2,3") == [("h.0.weight", (4, 3)), ("h.0.bias", (4,))]
    assert names(spec, "2,3", params={"n": 2})[2:] == [("h.1.weight", (4, 4)), ("h.1.bias", (4,))]


def test_unnamed_repeat_splices_indices(write_spec):
    spec = write_spec("layers:\n  - LazyLinear(4)\n  - op: LazyLinear(4)\n    repeat: 2\n"
                      "  - LazyLinear(2)\n")
    assert [p for p, _ in names(spec, "2,3")] == [
        "0.weight", "0.bias", "1.weight", "1.bias", "2.weight", "2.bias", "3.weight", "3.bias"]


def test_unnamed_repeat_zero_takes_no_index(write_spec):
    spec = write_spec("layers:\n  - LazyLinear(4)\n  - op: LazyLinear(9)\n    repeat: 0\n"
                      "  - LazyLinear(2)\n")
    result = lazyspec.infer(spec, "2,3")
    assert [p.path for p in result.params] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    paths = [n.path for n in result.nodes]
    assert len(paths) == len(set(paths))  # the skipped node does not take the next node's name
    skipped = next(n for n in result.nodes if n.skipped)
    assert skipped.skipped == "repeat: 0" and skipped.params == 0


def test_when_false_passes_the_input_through(write_spec):
    spec = write_spec("params: {proj: false}\nlayers:\n  - LazyLinear(4)\n"
                      "  - p: LazyLinear(8)\n    when: proj\n  - ReLU\n")
    assert lazyspec.infer(spec, "2,3").outputs == [(2, 4)]
    assert lazyspec.infer(spec, "2,3", params={"proj": True}).outputs == [(2, 8)]


def test_blocks_see_their_params_and_the_specs_not_their_callers(write_spec):
    spec = write_spec(
        "params: {width: 4}\n"
        "blocks:\n"
        "  Inner:\n"
        "    layers:\n"
        "      - LazyLinear(width + hidden)\n"
        "  Outer:\n"
        "    params: {hidden: 3}\n"
        "    layers:\n"
        "      - Inner\n"
        "layers:\n"
        "  - Outer\n")
    with pytest.raises(SpecError, match="undefined name 'hidden'"):
        lazyspec.infer(spec, "2,3")


def test_block_params_bind_by_position_and_keyword(write_spec):
    spec = write_spec("blocks:\n  B:\n    params: {a: 1, b: 2}\n    layers:\n"
                      "      - LazyLinear(a * 10 + b)\nlayers:\n  - B(3)\n  - B(b=5)\n")
    result = lazyspec.infer(spec, "2,3")
    assert [n.output for n in result.nodes if n.depth == 0] == [(2, 32), (2, 15)]


def test_share_reuses_the_module(write_spec):
    spec = write_spec("inputs: {a: [B, 3], b: [B, 3]}\nlayers:\n  - enc: LazyLinear(4)\n"
                      "    in: a\n  - enc2:\n    share: enc\n    in: b\n  - op: Add\n"
                      "    in: [enc, enc2]\n")
    result = lazyspec.infer(spec, "a=2,3", "b=2,3")
    assert [p.path for p in result.params] == ["enc.weight", "enc.bias"]
    assert all(p.shared == "shared by enc2" for p in result.params)
    assert result.totals.params == 16


def test_tie_counts_once_and_checks_shapes(write_spec):
    ok = write_spec("layers:\n  - a: Linear(4, 4)\n  - b: Linear(4, 4)\n"
                    "tie: [[b.weight, a.weight]]\n", "ok.yaml")
    result = lazyspec.infer(ok, "2,4")
    assert result.totals.params == 16 + 4 + 4
    assert "tied to b.weight" in (result.params[0].shared or "")
    bad = write_spec("layers:\n  - a: Linear(4, 4)\n  - b: Linear(4, 3)\n"
                     "tie: [[b.weight, a.weight]]\n", "bad.yaml")
    with pytest.raises(SpecError, match="different shapes") as exc:
        lazyspec.infer(bad, "2,4")
    assert exc.value.diagnostics[0].location.line == 4


def test_set_accepts_an_expression(cli, write_spec):
    spec = write_spec("params: {base: 4, d: 8}\nlayers:\n  - LazyLinear(d)\n")
    r = cli("infer", spec, "--input", "2,3", "--set", "d=${base * 3}")
    assert r.code == 0 and "output: [2, 12]" in r.stdout
    r = cli("infer", spec, "--input", "2,3", "--set", "d=${nope}")
    assert r.code == 2 and "undefined name 'nope'" in r.stderr


def test_scales_from_includes(write_spec):
    write_spec("params: {d: 4}\nscales:\n  big: {d: 16}\n", "lib/base.yaml")
    spec = write_spec("include: [lib/base.yaml]\nlayers:\n  - LazyLinear(d)\n")
    assert lazyspec.infer(spec, "2,3").outputs == [(2, 4)]
    assert lazyspec.infer(spec, "2,3", scale="big").outputs == [(2, 16)]


def test_dtype_mismatch_is_called_so(write_spec):
    spec = write_spec("layers:\n  - Linear(3, 4)\n")
    with pytest.raises(DryRunError, match="dtype mismatch in node '0'"):
        lazyspec.infer(spec, "2,3:float64", device="cpu")


def test_missing_input_is_a_usage_error_with_a_runnable_hint(cli, write_spec):
    r = cli("infer", write_spec("layers:\n  - LazyLinear(4)\n"))
    assert r.code == 2 and "no shape for input 'input'" in r.stderr and "--input 2,20" in r.stderr
    r = cli("infer", write_spec("inputs: {x: [B, 16]}\nlayers:\n  - LazyLinear(4)\n", "d.yaml"))
    assert r.code == 0 and "output: [B, 4]" in r.stdout  # declared names run symbolically


def test_several_input_shapes_share_the_first_runs_parameters(cli, write_spec):
    from conftest import SPECS

    result = lazyspec.infer(SPECS / "mlp.yaml", "2,20", "8,20")
    assert result.outputs == [(2, 10)]
    assert [m.outputs for m in result.more_runs] == [[(8, 10)]]
    r = cli("infer", SPECS / "mlp.yaml", "--input", "2,20", "--input", "8,30")
    assert r.code == 1
    assert ":4:5: error[LS201]: shape mismatch in node '0'" in r.stderr
    assert "fixed by the first input (input [2, 20])" in r.stderr
    assert "[8, 30]" in r.stderr


def test_several_input_sets_for_a_two_input_model():
    from conftest import SPECS

    result = lazyspec.infer(SPECS / "two_input.yaml", "a=2,32", "b=2,32", "a=5,32", "b=5,32")
    assert [i.shape for i in result.more_runs[0].inputs] == [(5, 32), (5, 32)]
    assert result.more_runs[0].outputs[0][0] == 5


def test_share_of_a_share_reuses_the_first_module(write_spec):
    spec = write_spec("inputs: {a: [B, 3], b: [B, 3]}\nlayers:\n  - enc_a: LazyLinear(4)\n"
                      "    in: a\n  - enc_b:\n    share: enc_a\n    in: b\n  - enc_c:\n"
                      "    share: enc_b\n    in: b\n  - op: Add\n    in: [enc_a, enc_c]\n")
    result = lazyspec.infer(spec, "a=2,3", "b=2,3")
    assert result.totals.params == 16
    assert result.params[0].shared == "shared by enc_b, enc_c"


def test_underscore_names_that_clash_with_module_internals_are_refused(write_spec):
    with pytest.raises(SpecError, match="name '_modules' clashes") as exc:
        lazyspec.infer(write_spec("layers:\n  - _modules: LazyLinear(4)\n"), "2,3")
    assert exc.value.diagnostics[0].code == "LS115"


def test_tie_errors_point_at_the_wrong_path(write_spec):
    spec = write_spec("layers:\n  - LazyLinear(4)\ntie: [[0.weight, nope.weight]]\n")
    with pytest.raises(SpecError, match=r"'nope\.weight' is not a parameter") as exc:
        lazyspec.infer(spec, "2,3")
    loc = exc.value.diagnostics[0].location
    assert (loc.line, loc.col) == (3, 18)


def test_integer_parameter_dtype_is_refused(cli):
    from conftest import SPECS

    r = cli("infer", SPECS / "mlp.yaml", "--input", "2,20", "--dtype", "int64")
    assert r.code == 2 and "floating dtype" in r.stderr


def test_build_on_missing_cuda_is_a_usage_error():
    import torch
    from conftest import SPECS

    from lazyspec.errors import UsageError

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UsageError, match="not available") as exc:
        lazyspec.load(SPECS / "mlp.yaml").build(device="cuda")
    assert exc.value.exit_code == 2


def test_include_fan_out_reads_each_file_once(write_spec):
    fan = 20
    write_spec("params: {z: 3}\n", "f3.yaml")
    for i in (2, 1, 0):
        write_spec("include: [" + ", ".join([f"f{i + 1}.yaml"] * fan) + "]\n", f"f{i}.yaml")
    spec = write_spec("include: [" + ", ".join(["f0.yaml"] * fan) + "]\nlayers:\n"
                      "  - LazyLinear(z)\n")
    assert lazyspec.infer(spec, "2,3").outputs == [(2, 3)]


def test_special_files_are_refused(cli):
    r = cli("infer", "/dev/zero", "--input", "2")
    assert r.code == 2 and "not a regular file" in r.stderr
