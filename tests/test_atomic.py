"""Nothing lost: lock, report, export and state-dict files are written atomically.

A temporary file beside the target, fsync, then a rename: a run killed at any moment leaves the old
file or the new one, never a mix. A run killed between creating its temporary file and the rename
leaves that file behind (`.lazyspec.lock.PID.XXXX.tmp`); lazyspec's choice is that the next write
of the same file removes it once the process that wrote it is gone (or, where that cannot be told,
once it is an hour old), so a killed CI step leaves nothing for a later `git add` to pick up.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import conftest
import pytest
from conftest import SPECS, hang_guard

import lazyspec
from lazyspec.cli import main
from lazyspec.fileio import STALE_SECONDS, atomic_write, remove_stale_temporaries
from lazyspec.lock import read as read_lock

PACKAGE_ROOT = Path(lazyspec.__file__).resolve().parent.parent  # the lazyspec under test
MLP = "layers:\n  - LazyLinear(256)\n  - ReLU\n  - LazyLinear(10)\n"

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and process ids: POSIX")


def lazyspec_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT), env.get("PYTHONPATH", "")])
    env.pop("GITHUB_STEP_SUMMARY", None)
    env["NO_COLOR"] = "1"
    return env


def temporaries(folder: Path, name: str = "lazyspec.lock") -> list[Path]:
    return sorted(folder.glob(f".{name}.*.tmp"))


def run(folder: Path, *args: str) -> int:
    """`lazyspec ARGS` in-process in `folder`."""
    before = Path.cwd()
    os.chdir(folder)
    try:
        with pytest.raises(SystemExit) as info:
            main(list(args))
    finally:
        os.chdir(before)
    return int(info.value.code or 0)


def dead_pid() -> int:
    """The process id of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --- a lock killed at varied moments ------------------------------------------------------------

LOCK_ARGS = ["lock", "specs", "--input", "2,64", "--lock", "lazyspec.lock"]


@pytest.fixture
def big_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """specs/synthetic-1000.yaml, with an old lock of its `tiny` scale (40 lines; the full lock
    has about 3,000)."""
    (tmp_path / "specs").mkdir()
    shutil.copy(SPECS / "synthetic-1000.yaml", tmp_path / "specs")
    assert run(tmp_path, *LOCK_ARGS, "--scale", "tiny") == 0
    capsys.readouterr()
    return tmp_path


def test_a_killed_lock_leaves_the_old_file_or_the_new_one(big_project: Path) -> None:
    lock = big_project / "lazyspec.lock"
    old = lock.read_bytes()
    command = [sys.executable, "-m", "lazyspec", *LOCK_ARGS]
    started = time.time()
    done = subprocess.run(command, cwd=big_project, env=lazyspec_env(), capture_output=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    written_at = lock.stat().st_mtime - started  # when, into a run, the lock is renamed
    new = lock.read_bytes()
    assert new != old and new.count(b"\n") > 2_000
    assert temporaries(big_project) == []

    # One kill lands during start-up, the others around the moment the lock is written.
    fractions = [0.3, 0.75, 0.85, 0.92, 1.0]
    if conftest.FUZZ_LONG:
        fractions += [random.uniform(0.6, 1.1) for _ in range(30)]
    outcomes = []
    for fraction in fractions:
        lock.write_bytes(old)
        child = subprocess.Popen(command, cwd=big_project, env=lazyspec_env(),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(fraction * written_at)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        now = lock.read_bytes()
        assert now in (old, new), f"killed after {fraction:.2f} of a run: the lock is a mix"
        assert read_lock(lock)  # and it parses
        left = temporaries(big_project)
        outcomes.append(("new" if now == new else "old", len(left)))
        # The kill may have hit between the temporary file and the rename: its writer is gone,
        # so the next write removes it (here called directly).
        assert all(p in remove_stale_temporaries(big_project, "lazyspec.lock") for p in left)
        assert temporaries(big_project) == []
    print(f"lock written {written_at:.2f} s into a run; kills (fraction of that, lock, "
          f"temporaries left): {list(zip(fractions, outcomes, strict=True))}")


# --- a kill during the write, on purpose --------------------------------------------------------

# Runs `lazyspec lock` with fsync slowed down: the temporary file is written and waits for its
# rename, so the parent can kill the run exactly there.
SLOW_FSYNC = """
import os, sys, time
real = os.fsync
def slow(fd):
    real(fd)
    time.sleep(60)
os.fsync = slow
from lazyspec.cli import main
main(sys.argv[1:])
"""


def test_a_run_killed_before_its_rename_leaves_a_temporary_that_the_next_run_removes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.yaml").write_text(MLP, encoding="utf-8")
    lock = tmp_path / "lazyspec.lock"
    assert run(tmp_path, "lock", "m.yaml", "--input", "2,20") == 0
    old = lock.read_bytes()
    child = subprocess.Popen([sys.executable, "-c", SLOW_FSYNC, "lock", "m.yaml", "--input",
                              "3,20"], cwd=tmp_path, env=lazyspec_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with hang_guard("waiting for the temporary lock file", 120):
            while not temporaries(tmp_path) and child.poll() is None:
                time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        _, err = child.communicate(timeout=60)
    left = temporaries(tmp_path)
    assert len(left) == 1, err.decode()
    assert lock.read_bytes() == old  # the old lock is intact
    assert f".lazyspec.lock.{child.pid}." in left[0].name

    assert run(tmp_path, "lock", "m.yaml", "--input", "3,20") == 0
    capsys.readouterr()
    assert temporaries(tmp_path) == []  # the killed run's file is gone
    assert "input=3,20" in lock.read_text(encoding="utf-8")


def test_stale_temporaries_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "lazyspec.lock"
    dead = tmp_path / f".lazyspec.lock.{dead_pid()}.ab12cd_x.tmp"
    live = tmp_path / f".lazyspec.lock.{os.getpid()}.ef34gh56.tmp"  # a write in progress
    ancient = tmp_path / f".lazyspec.lock.{os.getpid()}.mn78op90.tmp"  # over an hour old
    # not names lazyspec writes (mkstemp's: .NAME.PID.<8 of [a-z0-9_]>.tmp): never touched
    theirs = [tmp_path / ".lazyspec.lock.ij56kl.tmp", tmp_path / ".lazyspec.lock.backup.tmp",
              tmp_path / f".lazyspec.lock.{dead_pid()}.tmp",
              tmp_path / f".lazyspec.lock.{dead_pid()}.ABCDEFGH.tmp",
              tmp_path / f".report.txt.{dead_pid()}.qr90st12.tmp"]  # another file's
    for p in (dead, live, ancient, *theirs):
        p.write_text("partial", encoding="utf-8")
    hour_ago = time.time() - STALE_SECONDS - 60
    for p in (ancient, *theirs):
        os.utime(p, (hour_ago, hour_ago))

    atomic_write(target, "version: 1\nspecs: {}\n", "lock file")

    assert target.read_text(encoding="utf-8") == "version: 1\nspecs: {}\n"
    assert not dead.exists() and not ancient.exists()
    assert live.exists() and all(p.exists() for p in theirs)


# --- failures leave the old file, and say why --------------------------------------------------


def test_a_failed_rename_leaves_the_old_lock_and_no_temporary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.yaml").write_text(MLP, encoding="utf-8")
    assert run(tmp_path, "lock", "m.yaml", "--input", "2,20") == 0
    old = (tmp_path / "lazyspec.lock").read_bytes()

    def full_disk(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    capsys.readouterr()
    assert run(tmp_path, "lock", "m.yaml", "--input", "3,20") == 2
    err = capsys.readouterr().err
    assert "error[LS100]: cannot write the lock file" in err
    assert "lazyspec.lock: No space left on device" in err
    assert (tmp_path / "lazyspec.lock").read_bytes() == old
    assert temporaries(tmp_path) == []


def test_a_read_only_folder_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Simulated (root writes anywhere): the temporary file cannot be created."""
    (tmp_path / "m.yaml").write_text(MLP, encoding="utf-8")
    import tempfile

    def read_only(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert run(tmp_path, "lock", "m.yaml", "--input", "2,20") == 2
    assert run(tmp_path, "infer", "m.yaml", "--input", "2,20", "--output-file", "r.txt") == 2
    err = capsys.readouterr().err
    assert "error[LS100]: cannot write the lock file" in err
    assert "lazyspec.lock: Read-only file system" in err
    assert "error[LS100]: cannot write the report r.txt: Read-only file system" in err
    assert "hint: check that the folder exists and is writable" in err
    assert not (tmp_path / "lazyspec.lock").exists()


def test_a_folder_without_write_permission_is_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "m.yaml").write_text(MLP, encoding="utf-8")
    (folder / "lazyspec.lock").write_text("version: 1\nspecs: {}\n", encoding="utf-8")
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("this user can write to a read-only folder (root)")
        assert run(folder, "lock", "m.yaml", "--input", "2,20") == 2
        err = capsys.readouterr().err
        assert "error[LS100]: cannot write the lock file" in err
        assert "lazyspec.lock: Permission denied" in err
        assert (folder / "lazyspec.lock").read_text(encoding="utf-8") == \
            "version: 1\nspecs: {}\n"
    finally:
        folder.chmod(0o755)


def test_missing_folders_are_clear_errors(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.yaml").write_text(MLP, encoding="utf-8")
    assert run(tmp_path, "lock", "m.yaml", "--input", "2,20", "--lock", "no/l.lock") == 2
    assert run(tmp_path, "export", "m.yaml", "--input", "2,20", "--to", "state-dict",
               "--output", "no/m.pt") == 2
    err = capsys.readouterr().err
    assert "cannot write the lock file no/l.lock: No such file or directory" in err
    assert "cannot write the state dict no/m.pt: No such file or directory" in err
    assert not (tmp_path / "no").exists()


def test_written_files_keep_their_permissions(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The temporary file is created 0600; the file that replaces the old one must not be."""
    (tmp_path / "m.yaml").write_text(MLP, encoding="utf-8")
    lock = tmp_path / "lazyspec.lock"
    assert run(tmp_path, "lock", "m.yaml", "--input", "2,20") == 0
    umask = os.umask(0)
    os.umask(umask)
    assert lock.stat().st_mode & 0o777 == 0o666 & ~umask  # a new file: as `open` would make it
    lock.chmod(0o640)
    assert run(tmp_path, "lock", "m.yaml", "--input", "3,20") == 0
    assert lock.stat().st_mode & 0o777 == 0o640  # an old file: its own mode
    state = tmp_path / "m.pt"
    assert run(tmp_path, "export", "m.yaml", "--input", "2,20", "--to", "state-dict",
               "--output", "m.pt") == 0
    assert state.stat().st_mode & 0o777 == 0o666 & ~umask
    capsys.readouterr()
