"""`lazyspec check` and `lazyspec lock`: lock drift, budgets, configuration and exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SPECS

MLP = "layers:\n  - LazyLinear(256)\n  - ReLU\n  - LazyLinear(10)\n"
CONV_NO_FLATTEN = "layers:\n  - LazyConv2d(4, 3)\n  - ReLU\n  - AdaptiveAvgPool2d(1)\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with a pyproject.toml and a specs/ folder holding the MLP; the working folder."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "mlp.yaml").write_text(MLP)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.lazyspec]\nspecs = ["specs"]\n\n'
        '[[tool.lazyspec.run]]\nspec = "specs/mlp.yaml"\ninputs = ["2,20"]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "100")
    return tmp_path


def test_lock_then_check_passes(cli, project):
    r = cli("lock")
    assert r.code == 0, r.stderr
    lock = (project / "lazyspec.lock").read_text()
    assert '"0.weight": [256, 20]' in lock and "total: 7946" in lock
    assert cli("check").code == 0


def test_lock_file_is_deterministic(cli, project):
    cli("lock")
    first = (project / "lazyspec.lock").read_text()
    (project / "lazyspec.lock").unlink()
    cli("lock")
    assert (project / "lazyspec.lock").read_text() == first
    assert "time" not in first.lower()


def test_changed_width_fails_with_a_readable_diff(cli, project):
    cli("lock")
    (project / "specs" / "mlp.yaml").write_text(MLP.replace("256", "128"))
    r = cli("check")
    assert r.code == 1
    assert "0.weight [256, 20] -> [128, 20]" in r.stdout
    assert "2.weight [10, 256] -> [10, 128]" in r.stdout
    assert "FAIL (changed)" in r.stdout


def test_check_never_writes(cli, project):
    cli("lock")
    before = (project / "lazyspec.lock").read_text()
    (project / "specs" / "mlp.yaml").write_text(MLP.replace("256", "128"))
    assert cli("check").code == 1
    assert (project / "lazyspec.lock").read_text() == before
    assert cli("check", "--update").code == 0
    assert '"0.weight": [128, 20]' in (project / "lazyspec.lock").read_text()
    assert cli("check").code == 0


def test_missing_and_unused_entries_fail(cli, project):
    cli("lock")
    (project / "specs" / "other.yaml").write_text(MLP)
    (project / "pyproject.toml").write_text(
        (project / "pyproject.toml").read_text()
        + '\n[[tool.lazyspec.run]]\nspec = "specs/other.yaml"\ninputs = ["3,20"]\n')
    r = cli("check")
    assert r.code == 1 and "FAIL (missing)" in r.stdout
    cli("lock")
    (project / "pyproject.toml").write_text(
        (project / "pyproject.toml").read_text().replace('inputs = ["3,20"]', 'inputs = ["4,20"]'))
    r = cli("check")
    assert r.code == 1
    assert "unused lock entry: specs/other.yaml [input=3,20]" in r.stdout


def test_check_without_config_reuses_the_lock_inputs(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.yaml").write_text(MLP)
    assert cli("lock", "m.yaml", "--input", "2,20").code == 0
    assert cli("check", "m.yaml").code == 0  # inputs come from the lock entry
    r = cli("check", "m.yaml", "--input", "5,20")
    assert r.code == 1 and "missing" in r.stdout


def test_lock_refuses_to_write_from_a_failing_spec(cli, project):
    cli("lock")
    before = (project / "lazyspec.lock").read_text()
    (project / "specs" / "mlp.yaml").write_text("layers:\n  - Linear(30, 4)\n")
    r = cli("lock")
    assert r.code == 1
    assert (project / "lazyspec.lock").read_text() == before


def test_check_reports_every_spec_and_exits_with_the_worst(cli, project):
    (project / "specs" / "broken.yaml").write_text("layers:\n  - NoSuchOp\n")
    (project / "specs" / "fine.yaml").write_text(MLP)
    cli("lock", "specs/mlp.yaml")
    r = cli("check", "--input", "2,20")
    assert r.code == 1
    assert "broken.yaml" in r.stdout and "fine.yaml" in r.stdout and "mlp.yaml" in r.stdout
    assert "error[LS120]" in r.stderr


def test_expect_output(cli, write_spec):
    assert cli("infer", SPECS / "mlp.yaml", "--input", "2,20", "--expect-output", "2,10").code == 0
    spec = write_spec(CONV_NO_FLATTEN)
    r = cli("infer", spec, "--input", "2,3,8,8", "--expect-output", "2,4")
    assert r.code == 1
    assert "error[LS210]: output shape [2, 4, 1, 1] differs from the expected [2, 4]" in r.stderr
    assert "Flatten" in r.stderr


def test_max_params_budget_on_resnet(cli):
    r = cli("infer", SPECS / "resnet18.yaml", "--input", "1,3,64,64", "--max-params", "1M")
    assert r.code == 1
    assert "11,689,512 parameters exceed the budget of 1,000,000" in r.stderr
    ok = cli("infer", SPECS / "resnet18.yaml", "--input", "1,3,64,64", "--max-params", "12M")
    assert ok.code == 0


def test_max_bytes_budget(cli):
    r = cli("infer", SPECS / "mlp.yaml", "--input", "2,20", "--max-bytes", "10KB")
    assert r.code == 1 and "error[LS212]" in r.stderr
    r = cli("infer", SPECS / "mlp.yaml", "--input", "2,20", "--max-bytes", "10KB",
            "--dtype", "float16")
    assert r.code == 1
    assert cli("infer", SPECS / "mlp.yaml", "--input", "2,20", "--max-bytes", "32KB").code == 0


@pytest.mark.parametrize(("flag", "value"), [
    ("--max-params", "lots"), ("--max-bytes", "3 parsecs"), ("--expect-output", "2,x")])
def test_bad_budget_values_exit_2(cli, flag, value):
    r = cli("infer", SPECS / "mlp.yaml", "--input", "2,20", flag, value)
    assert r.code == 2 and "error[LS301]" in r.stderr


def test_exit_codes(cli, project):
    cli("lock")
    assert cli("check").code == 0  # 0: everything holds
    (project / "specs" / "mlp.yaml").write_text(MLP.replace("256", "64"))
    assert cli("check").code == 1  # 1: a finding
    assert cli("check", "--format", "yaml").code == 2  # 2: usage
    assert cli("check", "no/such/dir.yaml").code == 2  # 2: IO
    (project / "lazyspec.lock").write_text("version: 99\n")
    r = cli("check")
    assert r.code == 2 and "error[LS305]" in r.stderr  # 2: a broken lock file
    (project / "pyproject.toml").write_text('[tool.lazyspec]\nspecz = ["specs"]\n')
    r = cli("check")
    assert r.code == 2 and "error[LS304]" in r.stderr and "did you mean 'specs'" in r.stderr


def test_unknown_config_key_in_a_run_exits_2(cli, project):
    (project / "pyproject.toml").write_text(
        '[[tool.lazyspec.run]]\nspec = "specs/mlp.yaml"\ninput = ["2,20"]\n')
    r = cli("check")
    assert r.code == 2 and "unknown key 'input'" in r.stderr and "did you mean 'inputs'" in r.stderr


def test_allow_from_pyproject_reaches_infer(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.lazyspec]\nallow = ["torch.nn.modules"]\n')
    spec = tmp_path / "s.yaml"
    spec.write_text("layers:\n  - torch.nn.modules.linear.LazyLinear(3)\n")
    assert cli("infer", spec, "--input", "2,4").code == 0
    (tmp_path / "pyproject.toml").write_text("[tool.other]\n")
    assert cli("infer", spec, "--input", "2,4").code == 1


def test_github_annotation_points_at_the_broken_line(cli, write_spec):
    spec = write_spec("layers:\n  - LazyLinear(8)\n  - Linear(3, 4)\n")
    r = cli("infer", spec, "--input", "2,5", "--format", "github")
    assert r.code == 1
    line = next(x for x in r.stdout.splitlines() if x.startswith("::error"))
    props, message = line[len("::error "):].split("::", 1)
    fields = dict(p.split("=", 1) for p in props.split(","))
    assert fields["file"] == str(spec).replace(":", "%3A").replace(",", "%2C")
    assert (fields["line"], fields["col"]) == ("3", "5")
    assert fields["title"] == "lazyspec LS201"
    assert "%0A" in message and "\n" not in message


def test_github_escaping_and_cap():
    from lazyspec.errors import Diagnostic, Location
    from lazyspec.report.github import MAX_ANNOTATIONS, capped, diagnostic_annotation, escape_data

    assert escape_data("50% a\r\nb") == "50%25 a%0D%0Ab"
    d = Diagnostic("LS120", "bad: x, y", Location("a,b:c.yaml", 2, 3))
    assert diagnostic_annotation(d) == (
        "::error file=a%2Cb%3Ac.yaml,line=2,col=3,title=lazyspec LS120::bad: x, y")
    lines = capped([f"::error::{i}" for i in range(MAX_ANNOTATIONS + 5)])
    assert len(lines) == MAX_ANNOTATIONS + 1
    assert lines[-1].startswith("::notice") and "5 more" in lines[-1]


def test_github_step_summary_is_appended(cli, project, monkeypatch):
    summary = project / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    cli("lock")
    r = cli("check", "--format", "github")
    assert r.code == 0
    text = summary.read_text()
    assert text.startswith("earlier step\n")
    assert "### lazyspec check: passed" in text and "`specs/mlp.yaml`" in text


def test_output_file(cli, project):
    cli("lock")
    r = cli("check", "--format", "json", "--output-file", "report.json")
    assert r.code == 0 and r.stdout == ""
    assert json.loads((project / "report.json").read_text())["ok"] is True


def _validator():
    import jsonschema

    schema = json.loads((Path(__file__).parent.parent / "lazyspec" / "report" /
                         "schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_json_outputs_validate_against_the_schema(cli, project, write_spec):
    validator = _validator()
    docs = [cli("infer", SPECS / "two_input.yaml", "--input", "a=2,32", "--input", "b=2,32",
                "-f", "json").stdout,
            cli("infer", write_spec("layers:\n  - Linear(3, 4)\n"), "--input", "2,5",
                "-f", "json").stdout,
            cli("infer", write_spec("layers:\n  - Nope\n"), "--input", "2,5", "-f", "json").stdout,
            cli("lock", "-f", "json").stdout,
            cli("check", "-f", "json").stdout]
    (project / "specs" / "mlp.yaml").write_text(MLP.replace("256", "7"))
    docs.append(cli("check", "-f", "json").stdout)
    for doc in docs:
        validator.validate(json.loads(doc))
    bad = json.loads(docs[0])
    bad["params"][0]["shape"] = "256x20"
    assert list(validator.iter_errors(bad))  # the schema can fail


def test_check_on_20_specs_imports_torch_once(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(20):
        (folder / f"m{i:02}.yaml").write_text(MLP.replace("256", str(8 + i)))
    code = ("import sys, builtins\n"
            "count = [0]\n"
            "real = builtins.__import__\n"
            "def counting(name, *a, **k):\n"
            "    if name == 'torch' and 'torch' not in sys.modules: count[0] += 1\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = counting\n"
            "from lazyspec.cli import main\n"
            "try:\n"
            f"    main(['lock', {str(folder)!r}, '--input', '2,20', '--lock', "
            f"{str(tmp_path / 'l.lock')!r}])\n"
            "except SystemExit as e:\n"
            "    print('EXIT', e.code, 'TORCH_IMPORTS', count[0])\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path, env={**os.environ, "COLUMNS": "120"})
    assert "EXIT 0 TORCH_IMPORTS 1" in p.stdout, p.stdout + p.stderr
    assert sum(f"many/m{i:02}.yaml" in p.stdout for i in range(20)) == 20
    assert "20 run(s): 20 ok" in p.stdout


def test_lock_write_failure_keeps_the_old_file(cli, project, monkeypatch):
    cli("lock")
    before = (project / "lazyspec.lock").read_text()
    (project / "specs" / "mlp.yaml").write_text(MLP.replace("256", "64"))

    def fail(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    r = cli("lock")
    assert r.code == 2 and "No space left on device" in r.stderr
    assert (project / "lazyspec.lock").read_text() == before
    assert [p.name for p in project.iterdir() if p.name.endswith(".tmp")] == []


def test_pre_commit_hook_definition():
    import yaml

    hooks = yaml.safe_load((Path(__file__).parent.parent / ".pre-commit-hooks.yaml").read_text())
    ids = {h["id"]: h for h in hooks}
    assert ids["lazyspec-check"]["entry"].startswith("lazyspec check")
    assert shutil.which("lazyspec") or True  # the entry point is declared in pyproject


def test_lock_writes_nothing_when_a_budget_fails(cli, project):
    cli("lock")
    before = (project / "lazyspec.lock").read_text()
    (project / "specs" / "mlp.yaml").write_text(MLP.replace("256", "512"))
    (project / "pyproject.toml").write_text(
        (project / "pyproject.toml").read_text().replace(
            'inputs = ["2,20"]', 'inputs = ["2,20"]\nmax-params = "1K"'))
    r = cli("lock")
    assert r.code == 1 and "error[LS211]" in r.stderr
    assert (project / "lazyspec.lock").read_text() == before


def test_lock_keys_do_not_depend_on_how_the_input_is_written(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.yaml").write_text(MLP)
    assert cli("lock", "m.yaml", "--input", "[2, 20]").code == 0
    r = cli("check", "m.yaml", "--input", "2,20")
    assert r.code == 0, r.stdout + r.stderr


def test_a_deleted_spec_leaves_an_unused_entry_that_lock_drops(cli, project):
    (project / "specs" / "other.yaml").write_text(MLP)
    (project / "pyproject.toml").write_text(
        (project / "pyproject.toml").read_text()
        + '\n[[tool.lazyspec.run]]\nspec = "specs/other.yaml"\ninputs = ["3,20"]\n')
    assert cli("lock").code == 0
    (project / "specs" / "other.yaml").unlink()
    config = (project / "pyproject.toml").read_text()
    (project / "pyproject.toml").write_text(
        config.split('\n[[tool.lazyspec.run]]\nspec = "specs/o')[0])
    r = cli("check")
    assert r.code == 1 and "unused lock entry: specs/other.yaml" in r.stdout
    assert cli("lock").code == 0
    assert "other.yaml" not in (project / "lazyspec.lock").read_text()
    assert cli("check").code == 0


def test_scale_on_check_keeps_the_configured_inputs(cli, project):
    (project / "specs" / "mlp.yaml").write_text(
        "params: {h: 256}\nscales: {small: {h: 8}}\nlayers:\n  - LazyLinear(h)\n  - ReLU\n"
        "  - LazyLinear(10)\n")
    r = cli("lock", "--scale", "small")
    assert r.code == 0, r.stderr
    assert "input=2,20 scale=small" in (project / "lazyspec.lock").read_text()


def test_lock_replaces_a_lock_file_it_cannot_read_only_with_force(cli, project):
    broken = "<<<<<<< HEAD\nversion: 1\n=======\n"
    (project / "lazyspec.lock").write_text(broken)
    assert cli("check").code == 2
    r = cli("lock")
    assert r.code == 2 and "merge conflict at lines 1, 3, with markers out of order" in r.stderr
    assert (project / "lazyspec.lock").read_text() == broken
    r = cli("lock", "--force")
    assert r.code == 0 and "--force: the old lock file's entries are dropped" in r.stdout
    assert cli("check").code == 0


def test_config_run_for_a_missing_spec_is_a_config_error(cli, project):
    (project / "pyproject.toml").write_text(
        '[[tool.lazyspec.run]]\nspec = "specs/mpl.yaml"\ninputs = ["2,20"]\n')
    r = cli("check")
    assert r.code == 2 and "error[LS304]" in r.stderr and "specs/mpl.yaml" in r.stderr


def test_specs_outside_the_lock_folder_get_relative_keys(cli, tmp_path, monkeypatch):
    (tmp_path / "proj").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "m.yaml").write_text(MLP)
    monkeypatch.chdir(tmp_path / "proj")
    assert cli("lock", "../elsewhere/m.yaml", "--input", "2,20").code == 0
    assert '"../elsewhere/m.yaml":' in (tmp_path / "proj" / "lazyspec.lock").read_text()


def test_usage_problems_in_a_gate_name_the_spec(cli, project):
    (project / "specs" / "decl.yaml").write_text("layers:\n  - LazyLinear(3)\n")
    r = cli("check", "specs/decl.yaml")
    assert r.code == 2
    assert "lazyspec: error[LS301]: specs/decl.yaml: no shape for input 'input'" in r.stderr
