"""`check -j N` and `lock -j N`: runs in warm worker processes, with the output, exit code and
lock file of `-j 1` (lazyspec/parallel.py, gate._run_planned).

The suite runs with LAZYSPEC_JOBS=1 (conftest.py): starting workers costs an import of torch
each, and most tests check one or two specs. These tests ask for workers explicitly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, hang_guard
from test_bad_inputs import MLP, Bad, run_case

from lazyspec import parallel

SPECS = {
    "specs/a.yaml": MLP,
    "specs/b.yaml": "layers:\n  - Linear(30, 4)\n",  # a shape mismatch at 2,20
    "specs/c.yaml": "inputs: {x: [2, 8], y: [2, 8]}\nlayers:\n  - op: LazyLinear(4)\n    in: x\n",
    "specs/d.yaml": "layers:\n  - ReLUU\n",  # an unknown op
    "specs/lib/e.yaml": "params: {d: 3}\nlayers:\n  - LazyLinear(d)\n",
}
PYPROJECT = ("[tool.lazyspec]\nspecs = ['specs']\n"
             "[[tool.lazyspec.run]]\nspec = 'specs/a.yaml'\ninputs = ['2,20']\n"
             "[[tool.lazyspec.run]]\nspec = 'specs/a.yaml'\ninputs = ['4,20']\n"
             "[[tool.lazyspec.run]]\nspec = 'specs/b.yaml'\ninputs = ['2,20']\n"
             "[[tool.lazyspec.run]]\nspec = 'specs/lib/e.yaml'\ninputs = ['2,5']\n")


@pytest.fixture
def gated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, text in {**SPECS, "pyproject.toml": PYPROJECT}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "160")
    return tmp_path


def test_check_in_workers_prints_and_exits_as_one_process(gated: Path, cli) -> None:
    with hang_guard("lock -j 1", 120):
        assert cli("lock", "specs/a.yaml", "specs/lib", "-j", "1").code == 0
    with hang_guard("check -j 1", 120):
        one = cli("check", "-j", "1")
    with hang_guard("check -j 2", 240):
        two = cli("check", "-j", "2")
    assert one.code == 1  # b fails, c warns, d is invalid, a and e are locked and ok
    assert (two.code, two.stdout, two.stderr) == (one.code, one.stdout, one.stderr)
    for expected in ("error[LS201]", "error[LS120]", "warning[LS150]"):
        assert expected in one.stderr
    assert one.stdout.index("specs/a.yaml") < one.stdout.index("specs/d.yaml")


def test_lock_in_workers_writes_the_same_lock(gated: Path, cli) -> None:
    good = ["specs/a.yaml", "specs/c.yaml", "specs/lib"]
    with hang_guard("lock -j 1", 120):
        assert cli("lock", *good, "-j", "1", "--lock", "one.lock").code == 0
    with hang_guard("lock -j 3", 240):
        three = cli("lock", *good, "-j", "3", "--lock", "three.lock")
    assert three.code == 0, three.stderr
    assert (gated / "one.lock").read_text() == (gated / "three.lock").read_text()


def test_a_worker_that_dies_is_an_error_naming_the_runs(gated: Path, cli,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (gated / "killer.py").write_text(
        "import os, signal\nfrom torch import nn\n"
        "class Boom(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n")
    (gated / "specs" / "k.yaml").write_text("layers:\n  - killer.Boom\n")
    monkeypatch.syspath_prepend(str(gated))  # the spawned workers start with this sys.path
    with hang_guard("check -j 2 with a worker killed", 240):
        r = cli("check", "specs/k.yaml", "specs/a.yaml", "--allow", "killer", "--input",
                "2,20", "-j", "2")
    assert r.code == 2, r.stderr
    assert "error[LS303]: a worker process ended abruptly while running one of:" in r.stderr
    assert "specs/k.yaml" in r.stderr and "Traceback" not in r.stderr


def test_ctrl_c_stops_the_workers_without_a_traceback(gated: Path) -> None:
    slow = ("blocks:\n  B:\n    layers:\n" + "      - LazyLinear(8)\n" * 8
            + "layers:\n  - op: B\n    repeat: 2000\n")
    for i in range(4):
        (gated / "slow" / f"s{i}.yaml").parent.mkdir(exist_ok=True)
        (gated / "slow" / f"s{i}.yaml").write_text(slow)
    process = subprocess.Popen(
        [sys.executable, "-m", "lazyspec", "check", "slow", "--input", "2,8", "-j", "2"],
        cwd=gated, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        with hang_guard("the workers start", 240):
            while len(_children(process.pid)) < 2:  # a worker (and the resource tracker)
                time.sleep(0.01)
        workers = _children(process.pid)  # still importing torch: Ctrl-C must not reach them
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
        _out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    with hang_guard("the workers end", 60):
        while any(_alive(pid) for pid in workers):
            time.sleep(0.05)


def test_a_worker_is_born_deaf_to_ctrl_c() -> None:
    """A worker never takes Ctrl-C (SIGINT goes to the whole process group): blocked from its
    start, so not even torch's import can be interrupted, and the parent decides."""
    with hang_guard("a pool of one worker", 240), parallel.Pool(1) as pool:
        [worker] = pool.map(os.getpid, [()])
        status = Path(f"/proc/{worker}/status").read_text()
        blocked = int(status.split("SigBlk:")[1].split()[0], 16)
        assert blocked & (1 << (signal.SIGINT - 1)), status
        os.kill(worker, signal.SIGINT)
        assert pool.map(os.getpid, [()]) == [worker]  # still there, still working


def _children(pid: int) -> list[int]:
    """Processes started by `pid` (the workers; the resource tracker is one too)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_jobs_default_to_the_cores_and_to_lazyspec_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(parallel.JOBS_ENV, raising=False)
    assert parallel.jobs_from(None) == parallel.cores() == len(os.sched_getaffinity(0))
    monkeypatch.setenv(parallel.JOBS_ENV, "3")
    assert parallel.jobs_from(None) == 3
    assert parallel.jobs_from(5) == 5  # the flag wins


# --- bad flags: the catalogue's form (tests/test_bad_inputs.py) -----------------------------

CASES = [
    Bad("jobs-zero", ["check", "m.yaml", "-j", "0"], {"m.yaml": MLP}, code=None,
        text="greater than or equal to 1"),
    Bad("jobs-too-many", ["check", "m.yaml", "-j", "65"], {"m.yaml": MLP},
        text="-j 65: more than 64 worker processes (limit)"),
    Bad("jobs-not-a-number", ["lock", "m.yaml", "-j", "two"], {"m.yaml": MLP}, code=None,
        text="Invalid value for '--jobs' / '-j'"),
    Bad("watch-with-update", ["check", "m.yaml", "--watch", "--update"], {"m.yaml": MLP},
        text="--watch cannot be combined with --update"),
    Bad("watch-on-lock", ["lock", "m.yaml", "--watch"], {"m.yaml": MLP}, code=None,
        text="No such option: --watch"),
]
ENV_CASES = [("abc", "must be a whole number of processes"), ("0", "1 or more"),
             ("-3", "1 or more"), ("99", "$LAZYSPEC_JOBS 99: more than 64")]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_flag(case: Bad, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  capsys: pytest.CaptureFixture[str]) -> None:
    run_case(case, tmp_path, monkeypatch, capsys)


@pytest.mark.parametrize(("value", "text"), ENV_CASES, ids=[v for v, _ in ENV_CASES])
def test_bad_lazyspec_jobs(value: str, text: str, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(parallel.JOBS_ENV, value)
    run_case(Bad(f"env-{value}", ["check", "m.yaml"], {"m.yaml": MLP}, text=text), tmp_path,
             monkeypatch, capsys)
