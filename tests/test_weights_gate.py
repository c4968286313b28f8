"""A `[[tool.lazyspec.run]]` that names a checkpoint: `check` compares it with the run's
materialised model and reports a mismatch like lock drift, in every format (issue 13)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from checkpoint_files import state_shapes, write_safetensors
from conftest import ROOT, SPECS

import lazyspec

MLP_RUN = ("[tool.lazyspec]\nspecs = ['specs']\n[[tool.lazyspec.run]]\n"
           "spec = 'specs/mlp.yaml'\ninputs = ['2,20']\ncheckpoint = '{checkpoint}'\n{extra}")


def mlp_state(prefix: str = "") -> dict[str, tuple[str, tuple[int, ...]]]:
    model = lazyspec.load(SPECS / "mlp.yaml").materialize("2,20")
    return {prefix + k: v for k, v in state_shapes(model.state_dict()).items()}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli):
    """specs/mlp.yaml, its checkpoint, a pyproject.toml whose run names it, and a lock."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "mlp.yaml").write_text((SPECS / "mlp.yaml").read_text())
    (tmp_path / "weights").mkdir()
    write_safetensors(tmp_path / "weights" / "mlp.safetensors", mlp_state())
    (tmp_path / "pyproject.toml").write_text(
        MLP_RUN.format(checkpoint="weights/mlp.safetensors", extra=""))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert cli("lock").code == 0
    return tmp_path


def break_checkpoint(project: Path) -> None:
    state = mlp_state()
    state["0.weight"] = ("F32", (128, 20))
    del state["2.bias"]
    write_safetensors(project / "weights" / "mlp.safetensors", state)


def test_a_fitting_checkpoint_passes(cli, project: Path) -> None:
    r = cli("check")
    assert r.code == 0, r.stdout + r.stderr
    assert "ok (checkpoint ok)" in r.stdout


def test_a_mismatch_fails_the_run_like_lock_drift(cli, project: Path) -> None:
    break_checkpoint(project)
    r = cli("check")
    assert r.code == 1
    assert "FAIL (checkpoint)" in r.stdout
    assert ("specs/mlp.yaml [input=2,20]: checkpoint weights/mlp.safetensors does not fit:\n"
            "  0.weight: spec [256, 20], checkpoint [128, 20]\n"
            "  missing 2.bias [10] float32\n") in r.stdout


def test_check_json_markdown_github(cli, project: Path) -> None:
    import jsonschema

    break_checkpoint(project)
    doc = json.loads(cli("check", "-f", "json").stdout)
    schema = json.loads((ROOT / "lazyspec" / "report" / "schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)
    fit = doc["runs"][0]["checkpoint"]
    assert doc["runs"][0]["status"] == "fail" and doc["runs"][0]["lock_status"] == "ok"
    assert fit["fits"] is False and fit["counts"]["mismatch"] == 1
    md = cli("check", "-f", "markdown").stdout
    assert "Checkpoint `weights/mlp.safetensors` does not fit:" in md
    assert "- `missing 2.bias [10] float32`" in md
    gh = cli("check", "-f", "github").stdout
    assert ("::error file=specs/mlp.yaml,line=4,col=5,title=lazyspec checkpoint mismatch::"
            "checkpoint weights/mlp.safetensors does not fit specs/mlp.yaml [input=2,20]:%0A"
            "0.weight: spec [256, 20], checkpoint [128, 20]%0Amissing 2.bias [10] float32") in gh


def test_a_passing_run_in_json_carries_its_checkpoint(cli, project: Path) -> None:
    doc = json.loads(cli("check", "-f", "json").stdout)
    assert doc["ok"] and doc["runs"][0]["checkpoint"]["fits"] is True


def test_the_layout_in_the_config(cli, project: Path) -> None:
    write_safetensors(project / "weights" / "mlp.safetensors", mlp_state("model."))
    assert cli("check").code == 1
    (project / "pyproject.toml").write_text(MLP_RUN.format(
        checkpoint="weights/mlp.safetensors",
        extra="[tool.lazyspec.run.checkpoint-layout]\nstrip-prefix = 'model.'\n"))
    r = cli("check")
    assert r.code == 0, r.stdout + r.stderr


def test_a_glob_of_shards_in_the_config(cli, project: Path) -> None:
    state = mlp_state()
    (project / "weights" / "mlp.safetensors").unlink()
    write_safetensors(project / "weights" / "part-1.safetensors",
                      {k: v for k, v in state.items() if k.startswith("0.")})
    write_safetensors(project / "weights" / "part-2.safetensors",
                      {k: v for k, v in state.items() if k.startswith("2.")})
    (project / "pyproject.toml").write_text(
        MLP_RUN.format(checkpoint="weights/part-*.safetensors", extra=""))
    r = cli("check", "-f", "json")
    assert r.code == 0, r.stdout + r.stderr
    assert len(json.loads(r.stdout)["runs"][0]["checkpoint"]["files"]) == 2


def test_lock_does_not_read_checkpoints(cli, project: Path) -> None:
    """`lock` records shapes; a checkpoint is `check`'s business (a broken one does not stop a
    lock from being written)."""
    (project / "weights" / "mlp.safetensors").write_bytes(b"")
    r = cli("lock")
    assert r.code == 0 and "LS308" not in r.stderr
    assert cli("check").code == 2


def test_an_unreadable_checkpoint_is_that_runs_error(cli, project: Path) -> None:
    """Exit 2 for the run whose checkpoint cannot be read; the other runs are still checked."""
    (project / "specs" / "lenet.yaml").write_text((SPECS / "lenet.yaml").read_text())
    (project / "weights" / "mlp.safetensors").write_bytes(b"")
    assert cli("lock").code == 0
    r = cli("check", "-f", "json")
    doc = json.loads(r.stdout)
    assert r.code == 2
    statuses = {run["spec"]: run["status"] for run in doc["runs"]}
    assert statuses == {"specs/mlp.yaml": "error", "specs/lenet.yaml": "ok"}
    assert "is empty (0 bytes)" in r.stderr
