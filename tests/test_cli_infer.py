"""`lazyspec infer` end to end: the table, the mismatch report, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import SPECS


def test_mlp_table_lists_inferred_shapes(cli):
    r = cli("infer", SPECS / "mlp.yaml", "--input", "2,20")
    assert r.code == 0, r.stderr
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines() if line.strip()}
    assert rows["0.weight"][2:4] == ["[256,", "20]"]
    assert rows["0.bias"][2] == "[256]"
    assert rows["2.weight"][2:4] == ["[10,", "256]"]
    assert rows["2.bias"][2] == "[10]"
    assert "output: [2, 10]" in r.stdout
    assert "parameters: 7,946" in r.stdout


def test_table_fits_80_columns_without_colour(cli):
    r = cli("infer", SPECS / "resnet18.yaml", "--input", "1,3,64,64")
    assert r.code == 0, r.stderr
    assert max(len(line) for line in r.stdout.splitlines()) <= 80
    assert "\x1b[" not in r.stdout


def test_depth_collapses_nested_nodes(cli):
    full = cli("infer", SPECS / "resnet18.yaml", "--input", "1,3,64,64")
    shallow = cli("infer", SPECS / "resnet18.yaml", "--input", "1,3,64,64", "--depth", "1")
    assert shallow.code == 0
    assert "conv2" in full.stdout.split("Parameters")[0]
    assert "conv2" not in shallow.stdout.split("Parameters")[0]
    assert "layer4" in shallow.stdout


def test_json_output_is_parseable(cli):
    r = cli("infer", SPECS / "mlp.yaml", "--input", "2,20", "--format", "json")
    assert r.code == 0
    data = json.loads(r.stdout)
    assert data["totals"]["params"] == 7946
    assert [p["path"] for p in data["params"]] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert data["outputs"] == [[2, 10]]


def test_fixed_first_layer_mismatch_points_at_the_node(cli, write_spec):
    spec = write_spec("layers:\n  - Linear(30, 256)\n  - ReLU\n  - LazyLinear(10)\n")
    r = cli("infer", spec, "--input", "2,20")
    assert r.code == 1
    first = r.stderr.splitlines()[0]
    assert first.startswith(f"{spec}:2:5: error[LS201]: shape mismatch in node '0'")
    assert "30" in r.stderr and "20" in r.stderr
    assert "Linear(30, 256)" in r.stderr.splitlines()[1]  # the spec line
    assert r.stderr.splitlines()[2].endswith("^")


def test_conv_channel_mismatch_names_both_counts_on_meta(cli, write_spec):
    spec = write_spec("layers:\n  - Conv2d(3, 8, 3)\n  - Conv2d(16, 8, 3)\n")
    r = cli("infer", spec, "--input", "1,3,8,8")
    assert r.code == 1
    assert ":3:5: error[LS201]" in r.stderr
    assert "expects 16 input channels" in r.stderr and "has 8" in r.stderr
    assert "ran before it: 0" in r.stderr
    assert "parameters: weight [8, 16, 3, 3]" in r.stderr


def test_a_tuple_input_shows_its_shapes_and_how_to_pick_one(cli, write_spec):
    spec = write_spec("layers:\n  - lstm: LSTM(8, 16, batch_first=true)\n  - LazyLinear(4)\n")
    r = cli("infer", spec, "--input", "2,5,8")
    assert r.code == 1
    assert "inputs: tuple ([2, 5, 16] float32, tuple ([1, 2, 16] float32, [1, 2, 16] float32))" \
        in r.stderr
    assert "pick one with `in: NAME.0`" in r.stderr
    fixed = write_spec("layers:\n  - lstm: LSTM(8, 16, batch_first=true)\n"
                       "  - op: LazyLinear(4)\n    in: lstm.0\n")
    assert cli("infer", fixed, "--input", "2,5,8").code == 0


def test_failure_inside_a_block_shows_the_trail(cli, write_spec):
    spec = write_spec(
        "blocks:\n"
        "  NoProj:\n"
        "    params: {c: 8, stride: 1}\n"
        "    layers:\n"
        "      - y: LazyConv2d(c, 3, stride=stride, padding=1)\n"
        "      - sum: Add\n"
        "        in: [y, input]\n"
        "layers:\n"
        "  - stage1: NoProj(4)\n"
        "  - stage2: NoProj(16, 2)\n")
    r = cli("infer", spec, "--input", "1,4,8,8")
    assert r.code == 1
    assert f"{spec}:6:9: error[LS201]: shape mismatch in node 'stage2.sum' (Add)" in r.stderr
    assert "in: stage2 > NoProj > sum" in r.stderr
    assert "[1, 16, 4, 4]" in r.stderr and "[1, 4, 8, 8]" in r.stderr


def test_static_errors_are_reported_together(cli, write_spec):
    spec = write_spec("layers:\n  - LazyLinar(4)\n  - Dropout(q)\n  - x: ReLU\n    in: nowhere\n")
    r = cli("infer", spec, "--input", "2,20")
    assert r.code == 1
    heads = [line for line in r.stderr.splitlines() if "error[" in line]
    assert [h.split(": error[")[0].rsplit(":", 2)[1:] for h in heads] == [
        ["2", "5"], ["3", "13"], ["5", "9"]]
    assert [h.split("error[")[1][:5] for h in heads] == ["LS120", "LS124", "LS130"]
    assert "3 errors" in r.stderr
    assert "did you mean 'LazyLinear'?" in r.stderr


def test_missing_file_exits_2(cli, tmp_path):
    r = cli("infer", tmp_path / "nope.yaml", "--input", "2,20")
    assert r.code == 2
    assert "error[LS100]" in r.stderr and "nope.yaml" in r.stderr


def test_bad_flag_values_exit_2(cli):
    assert cli("infer", SPECS / "mlp.yaml", "--input", "2,2.5").code == 2
    assert cli("infer", SPECS / "mlp.yaml", "--input", "2,-3").code == 2
    assert cli("infer", SPECS / "mlp.yaml", "--input", "2,20", "--dtype", "float33").code == 2
    assert cli("infer", SPECS / "mlp.yaml", "--input", "2,20", "--device", "tpu").code == 2
    assert cli("infer", SPECS / "mlp.yaml", "--no-such-flag").code == 2
    r = cli("infer", SPECS / "resnet18.yaml", "--input", "1,3,32,32", "--scale", "r35")
    assert r.code == 2 and "did you mean 'r34'?" in r.stderr
    r = cli("infer", SPECS / "resnet18.yaml", "--input", "1,3,32,32", "--set", "num_clases=3")
    assert r.code == 2 and "num_classes" in r.stderr


def test_cuda_without_a_gpu_is_a_clear_exit_2(cli):
    import torch

    if torch.cuda.is_available():
        return  # nothing to prove on a machine that has one; the CUDA tests cover it
    r = cli("infer", SPECS / "mlp.yaml", "--input", "2,20", "--device", "cuda")
    assert r.code == 2
    assert "error[LS302]" in r.stderr and "Traceback" not in r.stderr


def test_set_and_scale_change_the_model(cli):
    r = cli("infer", SPECS / "resnet18.yaml", "--input", "1,3,32,32", "--set", "num_classes=7")
    assert r.code == 0 and "output: [1, 7]" in r.stdout
    r = cli("infer", SPECS / "resnet18.yaml", "--input", "2,3,224,224", "--scale", "r34")
    assert "parameters: 21,797,672" in r.stdout


def test_cpu_dry_run_matches_meta(cli):
    meta = cli("infer", SPECS / "mlp.yaml", "--input", "2,20", "--format", "json")
    cpu = cli("infer", SPECS / "mlp.yaml", "--input", "2,20", "--device", "cpu", "--format", "json")
    strip = lambda d: [(p["path"], p["shape"]) for p in json.loads(d)["params"]]  # noqa: E731
    assert strip(meta.stdout) == strip(cpu.stdout)


def test_internal_errors_exit_2_without_traceback(cli, monkeypatch):
    from lazyspec import dryrun

    def boom(*a, **k):
        raise ZeroDivisionError("simulated bug")

    monkeypatch.setattr(dryrun, "run", boom)
    r = cli("infer", SPECS / "mlp.yaml", "--input", "2,20")
    assert r.code == 2
    assert "error[LS303]: internal error: ZeroDivisionError: simulated bug" in r.stderr
    assert "Traceback" not in r.stderr
    r = cli("--traceback", "infer", SPECS / "mlp.yaml", "--input", "2,20")
    assert r.code == 2 and "Traceback" in r.stderr


def _run_without_torch(*args: str) -> subprocess.CompletedProcess[str]:
    # A child process whose torch import fails loudly: proves the command never imports it.
    code = ("import sys; sys.modules['torch'] = None\n"
            "from lazyspec.cli import main\n"
            f"main({list(args)!r})")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "NO_COLOR": "1"}, timeout=60)


def test_help_and_version_do_not_import_torch():
    for args in (["--help"], ["--version"], ["infer", "--help"], ["schema"]):
        p = _run_without_torch(*args)
        assert p.returncode == 0, p.stderr
        assert "lazyspec" in p.stdout or "Usage" in p.stdout


def test_version_matches_package():
    import lazyspec

    p = _run_without_torch("--version")
    assert p.stdout.strip() == f"lazyspec {lazyspec.__version__}"


def test_module_entry_point_runs():
    p = subprocess.run([sys.executable, "-m", "lazyspec", "--version"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0 and p.stdout.startswith("lazyspec ")


def test_tables_render_as_plain_columns(cli):
    r = cli("infer", SPECS / "mlp.yaml", "--input", "2,20")
    assert r.code == 0
    lines = r.stdout.splitlines()
    assert "0.weight   LazyLinear  [256, 20]  5,120     4" in lines
    assert any(set(line) == {"─"} for line in lines)


def test_lowercase_symbolic_names_are_not_read_as_markup(cli):
    r = cli("infer", SPECS / "mlp.yaml", "--input", "b,20")
    assert r.code == 0
    assert "[b, 256]" in r.stdout and "[b, 10]" in r.stdout
