"""`lazyspec lock` merges into the lock file and never silently drops what it holds (issue 9,
items 2, 3 and 9): merge conflicts, files that are not locks, --force, the OS lock's wait, the
rows of a lock that wrote nothing, and the two lock readers agreeing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import ROOT

from lazyspec import lock as lockfile
from lazyspec.cli import main

A = "layers:\n  - LazyLinear(10)\n"
B = "layers:\n  - LazyLinear(5)\n"


def run(folder: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    before = Path.cwd()
    os.chdir(folder)
    capsys.readouterr()
    try:
        with pytest.raises(SystemExit) as info:
            main(list(args))
    finally:
        os.chdir(before)
    out = capsys.readouterr()
    return int(info.value.code or 0), out.out, out.err


@pytest.fixture
def locked(tmp_path: Path, capsys: pytest.CaptureFixture[str],
           monkeypatch: pytest.MonkeyPatch) -> Path:
    """a.yaml and b.yaml, locked at 2,3 in l.lock."""
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    (tmp_path / "a.yaml").write_text(A, encoding="utf-8")
    (tmp_path / "b.yaml").write_text(B, encoding="utf-8")
    code, _, err = run(tmp_path, "lock", "a.yaml", "b.yaml", "--input", "2,3", "--lock",
                       "l.lock", capsys=capsys)
    assert code == 0, err
    return tmp_path


def conflict(path: Path, old: str, theirs: str, diff3: bool = False) -> str:
    """Turn the line `old` of the lock into a merge conflict between it and `theirs`."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1
    base = f"||||||| base\n{old}" if diff3 else ""
    text = text.replace(old, f"<<<<<<< HEAD\n{old}{base}=======\n{theirs}>>>>>>> branch\n")
    path.write_text(text, encoding="utf-8")
    return text


def entries(path: Path) -> dict[tuple[str, str], int]:
    return {e.ident: e.total for e in lockfile.read(path)}


@pytest.mark.parametrize("diff3", [False, True], ids=["merge", "diff3"])
def test_a_conflict_in_a_spec_not_run_is_refused_and_one_in_it_resolved(
        locked: Path, capsys: pytest.CaptureFixture[str], diff3: bool) -> None:
    text = conflict(locked / "l.lock", "      total: 20\n", "      total: 21\n", diff3)
    code, _, err = run(locked, "lock", "a.yaml", "--input", "2,3", "--lock", "l.lock",
                       capsys=capsys)
    assert code == 2 and "in the entries of b.yaml, which this run does not lock" in err
    assert (locked / "l.lock").read_text(encoding="utf-8") == text  # nothing written
    code, out, err = run(locked, "lock", "b.yaml", "--input", "2,3", "--lock", "l.lock",
                         capsys=capsys)
    assert code == 0, err
    assert "the entries of b.yaml differed between its sides and are re-run" in out
    assert entries(locked / "l.lock") == {("a.yaml", "input=2,3"): 40,
                                          ("b.yaml", "input=2,3"): 20}


def test_a_conflict_in_a_spec_not_run_is_dropped_with_force(
        locked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conflict(locked / "l.lock", "      total: 20\n", "      total: 21\n")
    code, out, err = run(locked, "lock", "a.yaml", "--input", "2,4", "--lock", "l.lock",
                         "--force", capsys=capsys)
    assert code == 0, err
    assert "--force: the conflicting entries of b.yaml are dropped" in out
    assert entries(locked / "l.lock") == {("a.yaml", "input=2,4"): 50}


def test_a_run_over_some_specs_keeps_every_other_entry(
        locked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (locked / "a.yaml").write_text("layers:\n  - LazyLinear(11)\n", encoding="utf-8")
    code, _, err = run(locked, "lock", "a.yaml", "--lock", "l.lock", capsys=capsys)
    assert code == 0, err
    assert entries(locked / "l.lock") == {("a.yaml", "input=2,3"): 44,
                                          ("b.yaml", "input=2,3"): 20}


@pytest.mark.parametrize("held", ["", "\n\n"], ids=["empty", "blank"])
def test_an_empty_lock_file_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       held: str) -> None:
    (tmp_path / "a.yaml").write_text(A, encoding="utf-8")
    (tmp_path / "l.lock").write_text(held, encoding="utf-8")
    code, _, err = run(tmp_path, "lock", "a.yaml", "--input", "2,3", "--lock", "l.lock",
                       capsys=capsys)
    assert code == 0, err
    assert entries(tmp_path / "l.lock") == {("a.yaml", "input=2,3"): 40}


def test_force_replaces_a_file_that_is_not_a_lock(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.yaml").write_text(A, encoding="utf-8")
    (tmp_path / "other.yaml").write_text(B, encoding="utf-8")
    args = ("lock", "a.yaml", "--input", "2,3", "--lock", "other.yaml")
    code, _, err = run(tmp_path, *args, capsys=capsys)
    assert code == 2 and "not a lazyspec lock file" in err
    assert (tmp_path / "other.yaml").read_text(encoding="utf-8") == B
    code, out, _ = run(tmp_path, *args, "--force", capsys=capsys)
    assert code == 0 and "--force: the old lock file's entries are dropped" in out
    assert entries(tmp_path / "other.yaml") == {("a.yaml", "input=2,3"): 40}


def test_a_failing_lock_says_nothing_was_written(
        locked: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = (locked / "l.lock").read_bytes()
    (locked / "bad.yaml").write_text("layers:\n  - LazyLinear(x)\n", encoding="utf-8")
    code, out, _ = run(locked, "lock", "a.yaml", "b.yaml", "bad.yaml", "--input", "2,7",
                       "--lock", "l.lock", capsys=capsys)
    assert code == 1
    assert "updated" not in out and out.count("ok (not written)") == 2
    assert "nothing written: 1 run(s) failed" in out
    code, out, _ = run(locked, "lock", "a.yaml", "bad.yaml", "--input", "2,3", "--lock",
                       "l.lock", "--format", "json", capsys=capsys)
    report = json.loads(out)
    assert code == 1 and report["wrote_lock"] is False
    assert [r["lock_status"] for r in report["runs"]] == ["ok", "not-checked"]  # unchanged: ok
    assert (locked / "l.lock").read_bytes() == before


def test_a_held_lock_is_waited_for_then_named(locked: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fcntl = pytest.importorskip("fcntl")
    monkeypatch.setenv("LAZYSPEC_LOCK_TIMEOUT", "0.2")
    before = (locked / "l.lock").read_bytes()
    holder = os.open(locked, os.O_RDONLY)  # as another `lazyspec lock` run would hold it
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        code, _, err = run(locked, "lock", "a.yaml", "--input", "2,9", "--lock", "l.lock",
                           capsys=capsys)
    finally:
        os.close(holder)
    assert code == 2 and "error[LS305]: the lock file l.lock is being written by" in err
    assert "gave up after waiting 0.2 s for its lock" in err
    if Path("/proc/locks").exists():
        assert f"process {os.getpid()} (" in err
    assert (locked / "l.lock").read_bytes() == before
    code, _, err = run(locked, "lock", "a.yaml", "--input", "2,9", "--lock", "l.lock",
                       capsys=capsys)
    assert code == 0, err


def test_a_lock_timeout_that_is_not_a_number_is_a_usage_error(
        locked: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAZYSPEC_LOCK_TIMEOUT", "soon")
    code, _, err = run(locked, "lock", "a.yaml", "--lock", "l.lock", capsys=capsys)
    assert code == 2 and "LAZYSPEC_LOCK_TIMEOUT='soon' is not a number of seconds" in err


def test_the_two_lock_readers_agree() -> None:
    """The line reader takes only text `render` writes; anything else goes to the strict YAML
    reader, and both give the same entries (this repository's lock, reordered, with CRLF)."""
    path = ROOT / "lazyspec.lock"
    text = path.read_text(encoding="utf-8")
    by_yaml = lockfile._entries(lockfile._yaml(text, path), path)
    assert lockfile._as_written(text, path) == by_yaml
    shuffled = text.replace(lockfile.HEADER, "# edited by hand\n")
    assert lockfile._as_written(shuffled, path) is None
    assert lockfile.parse(shuffled, path) == by_yaml
    assert lockfile.parse(text.replace("\n", "\r\n"), path) == by_yaml
