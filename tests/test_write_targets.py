"""Writing never destroys what is not lazyspec's (issue 9, item 1).

Atomic replace (a temporary file renamed over the path) is for regular files and new paths. A
character device such as /dev/null, a FIFO, or /dev/stdout is written through; a symlink is
followed and its target replaced; a folder is an error. Every command's writes go through
`lazyspec.fileio`, so each is tried here against a device node. Device nodes are made with mknod
inside tmp_path (the tests run as root, in CI too): the real /dev/null is never written.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from conftest import hang_guard

from lazyspec.cli import main
from lazyspec.fileio import atomic_write

MLP = "layers:\n  - LazyLinear(256)\n  - ReLU\n  - LazyLinear(10)\n"

pytestmark = pytest.mark.skipif(os.name != "posix", reason="device nodes, FIFOs: POSIX")


def run(folder: Path, *args: str) -> int:
    before = Path.cwd()
    os.chdir(folder)
    try:
        with pytest.raises(SystemExit) as info:
            main(list(args))
    finally:
        os.chdir(before)
    return int(info.value.code or 0)


def null_device(path: Path) -> Path:
    """A node that behaves as /dev/null (character device 1,3)."""
    if os.geteuid() != 0:
        pytest.skip("mknod needs root (CI runs as root)")
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return path


def is_char_device(path: Path) -> bool:
    return stat.S_ISCHR(os.lstat(path).st_mode)


WRITES = {
    "infer --output-file": ["infer", "m.yaml", "--input", "2,20", "--output-file", "null"],
    "show --output-file": ["show", "m.yaml", "--output-file", "null"],
    "graph --output-file": ["graph", "m.yaml", "--output-file", "null"],
    "check --output-file": ["check", "m.yaml", "--input", "2,20", "--lock", "l.lock",
                            "--output-file", "null"],
    "lock --lock": ["lock", "m.yaml", "--input", "2,20", "--lock", "null"],
    "lock --output-file": ["lock", "m.yaml", "--input", "2,20", "--lock", "l.lock",
                           "--output-file", "null"],
    "export --output (spec)": ["export", "m.yaml", "--input", "2,20", "--output", "null"],
    "export --output (pytorch)": ["export", "m.yaml", "--input", "2,20", "--to", "pytorch",
                                  "--output", "null"],
    "export --output (state dict)": ["export", "m.yaml", "--input", "2,20", "--to",
                                     "state-dict", "--output", "null"],
}


@pytest.mark.parametrize("args", list(WRITES.values()), ids=list(WRITES))
def test_a_device_node_stays_a_device(args: list[str], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "m.yaml").write_text(MLP, encoding="utf-8")
    null_device(tmp_path / "null")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    if args[0] == "check":
        assert run(tmp_path, "lock", "m.yaml", "--input", "2,20", "--lock", "l.lock") == 0
    assert run(tmp_path, *args) == 0
    assert is_char_device(tmp_path / "null")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["m.yaml", "null"] + (["l.lock"] if "l.lock" in args else []))  # no temporaries


def test_a_link_to_a_device_stays_a_link_to_a_device(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(MLP, encoding="utf-8")
    null_device(tmp_path / "null")
    (tmp_path / "out").symlink_to("null")
    assert run(tmp_path, "lock", "m.yaml", "--input", "2,20", "--lock", "out") == 0
    assert (tmp_path / "out").is_symlink() and is_char_device(tmp_path / "null")


def test_the_real_dev_null_is_still_a_character_device() -> None:
    """Read only: the tests above write to nodes like it, never to it."""
    assert is_char_device(Path("/dev/null"))


def test_a_fifo_is_written_through(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(MLP, encoding="utf-8")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    try:
        with hang_guard("a report written into a FIFO"):
            assert run(tmp_path, "infer", "m.yaml", "--input", "2,20", "-o", "pipe") == 0
            reader.join()
    finally:
        if reader.is_alive():  # lazyspec never opened it: let the reader go
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            reader.join(timeout=5)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert b"parameters: 7,946" in received[0]


def test_a_symlink_is_followed_and_its_target_replaced(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(MLP, encoding="utf-8")
    (tmp_path / "reports").mkdir()
    target = tmp_path / "reports" / "shapes.txt"
    target.write_text("old\n", encoding="utf-8")
    target.chmod(0o640)
    (tmp_path / "latest.txt").symlink_to("reports/shapes.txt")
    assert run(tmp_path, "infer", "m.yaml", "--input", "2,20", "-o", "latest.txt") == 0
    assert (tmp_path / "latest.txt").is_symlink()
    assert "parameters: 7,946" in target.read_text(encoding="utf-8")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["shapes.txt"]


def test_a_dangling_symlink_gets_its_target_created(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(MLP, encoding="utf-8")
    (tmp_path / "l.lock").symlink_to("locks/shapes.lock")
    (tmp_path / "locks").mkdir()
    assert run(tmp_path, "lock", "m.yaml", "--input", "2,20", "--lock", "l.lock") == 0
    assert (tmp_path / "l.lock").is_symlink()
    assert "version: 1" in (tmp_path / "locks" / "shapes.lock").read_text(encoding="utf-8")


def test_a_link_to_dev_stdout_is_written_through(tmp_path: Path,
                                                 capfd: pytest.CaptureFixture[str]) -> None:
    link = tmp_path / "out"
    link.symlink_to("/dev/stdout")
    atomic_write(link, "through the link\n", "report")
    assert link.is_symlink() and os.readlink(link) == "/dev/stdout"
    assert "through the link" in capfd.readouterr().out


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="/proc/self/fd: Linux")
def test_a_descriptor_path_is_appended_to_never_replaced(tmp_path: Path) -> None:
    """`lazyspec ... -o /dev/stdout >> log` keeps what the log held: a descriptor's file is
    appended to, not replaced by a new file (which would also cut it off from its writers)."""
    log = tmp_path / "log.txt"
    log.write_text("earlier line\n", encoding="utf-8")
    with open(log, "a", encoding="utf-8") as held:
        atomic_write(Path(f"/proc/self/fd/{held.fileno()}"), "report\n", "report")
        inode = os.fstat(held.fileno()).st_ino
    assert log.read_text(encoding="utf-8") == "earlier line\nreport\n"
    assert log.stat().st_ino == inode
