"""Golden files for every output format, on passing and failing runs.

Regenerate with `python -m pytest tests/test_golden.py --update-golden` and review the diff.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import ROOT

FORMATS = ["table", "json", "markdown", "github"]
MLP = "layers:\n  - LazyLinear(256)\n  - ReLU\n  - LazyLinear(10)\n"


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


@pytest.mark.parametrize("fmt", FORMATS)
def test_infer_passing(cli, golden, in_repo, fmt):
    r = cli("infer", "specs/mlp.yaml", "--input", "2,20", "--format", fmt)
    assert r.code == 0
    golden(f"infer-pass.{fmt}.out", r.stdout)


@pytest.mark.parametrize("fmt", FORMATS)
def test_infer_failing(cli, golden, in_repo, fmt):
    r = cli("infer", "tests/cases/golden/mismatch.yaml", "--input", "2,20", "--format", fmt)
    assert r.code == 1
    golden(f"infer-fail.{fmt}.out", r.stdout + "--- stderr ---\n" + r.stderr)


@pytest.fixture
def locked_project(tmp_path: Path, monkeypatch, cli):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "mlp.yaml").write_text(MLP)
    shutil.copy(ROOT / "specs" / "lenet.yaml", tmp_path / "specs" / "lenet.yaml")
    (tmp_path / "pyproject.toml").write_text(
        '[tool.lazyspec]\nspecs = ["specs"]\n'
        '[[tool.lazyspec.run]]\nspec = "specs/mlp.yaml"\ninputs = ["2,20"]\n'
        '[[tool.lazyspec.run]]\nspec = "specs/lenet.yaml"\ninputs = ["1,1,28,28"]\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert cli("lock").code == 0
    return tmp_path


@pytest.mark.parametrize("fmt", FORMATS)
def test_check_passing(cli, golden, locked_project, fmt):
    r = cli("check", "--format", fmt)
    assert r.code == 0
    golden(f"check-pass.{fmt}.out", r.stdout)


@pytest.mark.parametrize("fmt", FORMATS)
def test_check_failing(cli, golden, locked_project, fmt):
    (locked_project / "specs" / "mlp.yaml").write_text(MLP.replace("256", "128"))
    r = cli("check", "--format", fmt)
    assert r.code == 1
    golden(f"check-fail.{fmt}.out", r.stdout)
