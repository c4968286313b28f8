"""What `pip install lazyspec` gives, tested from a built wheel in a fresh venv (not the
checkout): the sdist and wheel build and pass `twine check`, the wheel carries every bundled
spec, `lazyspec --version`, `examples`, `infer mlp` and `init` work there. And the documented
pre-commit hook (`language: system`) runs through `pre-commit try-repo` without installing
anything.

These take about a minute; they run in CI (.ci/run installs build, twine and pre-commit through
the dev extras). Where those tools are missing they are skipped, but never in CI.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT, SPECS

pytestmark = pytest.mark.packaging

TIMEOUT = 300  # seconds for one build or install step: a guard against a hang, not a target


def _need(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install {', '.join(missing)} (.ci/run: the dev extras)")
        pytest.skip(f"needs {', '.join(missing)} (pip install -e '.[dev]')")


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without the checkout on PYTHONPATH: the venv's lazyspec must be the
    wheel's."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GITHUB_STEP_SUMMARY")}
    env.update(COLUMNS="80", NO_COLOR="1", **extra)
    return env


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None,
         code: int = 0) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([str(a) for a in args], cwd=cwd, env=env or _clean_env(),
                       capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    assert p.returncode == code, f"{args}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and, built from it, the wheel (as `python -m build` does), with the
    setuptools already installed: no download."""
    _need("build", "twine")
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT, cwd=out)
    return out


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv that sees this interpreter's packages (torch, typer, ...) and has the wheel
    installed in it: its lazyspec is the wheel's, never the checkout's."""
    where = tmp_path_factory.mktemp("venv")
    _run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", where,
         cwd=where)
    python = where / "bin" / "python"
    wheel = next(dist.glob("*.whl"))
    _run(sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps",
         "--no-index", "--ignore-installed", wheel, cwd=where)
    return where


def test_sdist_and_wheel_carry_the_bundled_specs(dist: Path) -> None:
    specs = sorted(p.name for p in SPECS.glob("*.yaml"))
    wheel = zipfile.ZipFile(next(dist.glob("*.whl")))
    bundled = sorted(Path(n).name for n in wheel.namelist() if "/bundled_specs/" in n)
    assert bundled == specs
    assert "lazyspec/report/schema.json" in wheel.namelist()
    with tarfile.open(next(dist.glob("*.tar.gz"))) as sdist:
        names = sdist.getnames()
    assert sorted(Path(n).name for n in names if "/specs/" in n) == specs


def test_twine_check_passes(dist: Path) -> None:
    p = _run(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir()),
             cwd=dist)
    assert p.stdout.count("PASSED") == 2, p.stdout


def test_the_wheel_runs_in_a_fresh_venv(venv: Path, tmp_path: Path) -> None:
    bin_ = venv / "bin"
    where = _run(bin_ / "python", "-c", "import lazyspec; print(lazyspec.__file__)", cwd=tmp_path)
    assert where.stdout.startswith(str(venv)), where.stdout  # not the checkout's
    from lazyspec import __version__

    assert _run(bin_ / "lazyspec", "--version", cwd=tmp_path).stdout == f"lazyspec {__version__}\n"
    listed = _run(bin_ / "lazyspec", "examples", cwd=tmp_path).stdout
    assert "resnet18" in listed and "11,689,512" in listed
    infer = _run(bin_ / "lazyspec", "infer", "mlp", "--input", "2,20", cwd=tmp_path).stdout
    assert "bundled_specs" in infer and "parameters: 7,946 (non-trainable 0)" in infer


def test_init_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    lazyspec = venv / "bin" / "lazyspec"
    empty = tmp_path / "empty"
    empty.mkdir()
    out = _run(lazyspec, "init", cwd=empty).stdout
    assert out.count("wrote") == 4, out
    kept = tmp_path / "kept"
    kept.mkdir()
    before = '# mine\n[project]\nname = "mine"  # a comment\n\n[tool.ruff]\nline-length = 99\n'
    (kept / "pyproject.toml").write_text(before)
    _run(lazyspec, "init", cwd=kept)
    after = (kept / "pyproject.toml").read_text()
    assert after.startswith(before) and "[tool.lazyspec]" in after[len(before):]
    for project in (empty, kept):  # what init wrote works: lock, then check
        _run(lazyspec, "lock", cwd=project)
        assert "1 ok, 0 failed" in _run(lazyspec, "check", cwd=project).stdout


def _git(*args: str, cwd: Path) -> None:
    env = _clean_env(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
                     GIT_COMMITTER_EMAIL="t@t", GIT_CONFIG_GLOBAL=os.devnull)
    _run("git", *args, cwd=cwd, env=env)


def test_the_system_hook_runs_through_pre_commit_try_repo(tmp_path: Path) -> None:
    """`pre-commit try-repo REPO lazyspec-check` as the README documents it: the system hook
    runs the environment's lazyspec (here the checkout's, through a `lazyspec` on PATH) and
    pre-commit installs nothing (no index to download from: PIP_NO_INDEX)."""
    _need("pre_commit")
    hooks = tmp_path / "hooks"  # try-repo needs a commit: the hook definitions, committed
    hooks.mkdir()
    (hooks / ".pre-commit-hooks.yaml").write_text((ROOT / ".pre-commit-hooks.yaml").read_text())
    _git("init", "-q", cwd=hooks)
    _git("add", "-A", cwd=hooks)
    _git("commit", "-qm", "hooks", cwd=hooks)
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "lazyspec").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m lazyspec "$@"\n')
    (shim / "lazyspec").chmod(0o755)
    project = tmp_path / "project"
    (project / "specs").mkdir(parents=True)
    (project / "specs" / "mlp.yaml").write_text((SPECS / "mlp.yaml").read_text())
    (project / "pyproject.toml").write_text('[tool.lazyspec]\nspecs = ["specs"]\n'
                                            '[[tool.lazyspec.run]]\nspec = "specs/mlp.yaml"\n'
                                            'inputs = ["2,20"]\n')
    env = _clean_env(PYTHONPATH=str(ROOT), PATH=f"{shim}{os.pathsep}{os.environ['PATH']}",
                     PRE_COMMIT_HOME=str(tmp_path / "cache"), PIP_NO_INDEX="1")
    _run(shim / "lazyspec", "lock", cwd=project, env=env)
    _git("init", "-q", cwd=project)
    _git("add", "-A", cwd=project)
    p = _run(sys.executable, "-m", "pre_commit", "try-repo", hooks, "lazyspec-check",
             "--all-files", cwd=project, env=env)
    assert "Passed" in p.stdout and "Installing environment" not in p.stdout + p.stderr, p.stdout
    (project / "specs" / "mlp.yaml").write_text((SPECS / "mlp.yaml").read_text()
                                                 .replace("256", "128"))
    p = _run(sys.executable, "-m", "pre_commit", "try-repo", hooks, "lazyspec-check",
             "--all-files", cwd=project, env=env, code=1)
    assert "Failed" in p.stdout and "[256, 20] -> [128, 20]" in p.stdout, p.stdout
