"""The bad-input catalogue, continued: hostile files, locks, devices and limits (issue 9).

Each case is a `Bad` from tests/test_bad_inputs.py, run by the same runner (in-process, in a fresh
folder with only the case's files); `prepare` makes what a dict of file texts cannot: symlinks,
FIFOs, sockets, device nodes and files of many megabytes. Device nodes are created with mknod
inside the test's folder (root, as in CI); nothing outside it is ever written.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_bad_inputs import ENTRY, GOOD_LOCK, MLP, PYPROJECT, RUN, Bad, run_case

from lazyspec.config import MAX_PYPROJECT_BYTES, MAX_RUN_INPUTS, MAX_RUNS_PER_SPEC
from lazyspec.lock import MAX_EDITED_LOCK_BYTES, MAX_LOCK_BYTES

BROKEN = "layers:\n  - LazyLinear(width)\n"
OTHER = ('  o.yaml:\n    "input=2,20":\n      inputs: ["2,20"]\n      outputs: [[2, 10]]\n'
         "      total: 1\n")


@dataclass(frozen=True)
class Hostile(Bad):
    prepare: Callable[[Path], object] | None = None


def link(name: str, target: str) -> Callable[[Path], object]:
    return lambda folder: os.symlink(target, folder / name)


def fifo(name: str) -> Callable[[Path], object]:
    return lambda folder: os.mkfifo(folder / name)


def device(name: str, minor: int) -> Callable[[Path], object]:
    """A character device node in the test's folder: 1,3 behaves as /dev/null, 1,7 as /dev/full."""
    def make(folder: Path) -> None:
        if os.geteuid() != 0:
            pytest.skip("mknod needs root (CI runs as root)")
        os.mknod(folder / name, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    return make


def unix_socket(name: str) -> Callable[[Path], object]:
    def make(folder: Path) -> None:
        with socket.socket(socket.AF_UNIX) as s:  # the socket file outlives the socket
            s.bind(str(folder / name))
    return make


def big(name: str, size: int, head: str = "") -> Callable[[Path], object]:
    def make(folder: Path) -> None:
        with open(folder / name, "w", encoding="utf-8") as f:
            f.write(head)
            line = "# " + "x" * 97 + "\n"  # YAML comments: valid, but not what `lock` writes
            f.write(line * ((size - len(head)) // len(line) + 1))
    return make


def lock_run(*args: str, lock: str | bytes | None = None, **files: str | bytes
             ) -> dict[str, object]:
    """`lazyspec lock m.yaml --input 2,20 --lock l.lock ARGS` with l.lock holding `lock`."""
    held = {} if lock is None else {"l.lock": lock}
    return {"args": ["lock", "m.yaml", "--input", "2,20", "--lock", "l.lock", *args],
            "files": {"m.yaml": MLP, **held, **files}}


def check_run(lock: str | bytes | None = None, *args: str) -> dict[str, object]:
    held = {} if lock is None else {"l.lock": lock}
    return {"args": ["check", "m.yaml", "--input", "2,20", "--lock", "l.lock", *args],
            "files": {"m.yaml": MLP, **held}}


def conflicted(entry_line: str, ours: str, theirs: str, lock: str = GOOD_LOCK + OTHER) -> str:
    """`lock` with a git merge conflict on its line `entry_line` (ours and theirs versions)."""
    assert entry_line in lock
    return lock.replace(entry_line, f"<<<<<<< HEAD\n{ours}=======\n{theirs}>>>>>>> other\n")


def many_entries(n: int) -> str:
    runs = "".join(f'    "input={i},20":\n      inputs: ["{i},20"]\n      outputs: [[{i}, 10]]\n'
                   f"      total: 7946\n" for i in range(1, n + 1))
    return f"version: 1\nspecs:\n  m.yaml:\n{runs}"


CONFLICT = conflicted("      total: 1\n", "      total: 1\n", "      total: 2\n")

CASES: list[Hostile] = [
    # --- reading: what a path names -------------------------------------------------------------
    Hostile("spec_missing_says_no_such_file", ["infer", "nope.yaml", "--input", "2,20"],
            code="LS100", text="cannot read spec 'nope.yaml': no such file"),
    Hostile("spec_is_a_fifo", ["infer", "f.yaml", "--input", "2,20"], code="LS100",
            text="cannot read spec 'f.yaml': not a regular file", prepare=fifo("f.yaml")),
    Hostile("spec_links_to_dev_zero", ["infer", "z.yaml", "--input", "2,20"], code="LS100",
            text="cannot read spec 'z.yaml': not a regular file",
            prepare=link("z.yaml", "/dev/zero")),
    Hostile("check_lock_links_to_dev_zero", **check_run(), code="LS305",
            text="lock file l.lock: cannot read it: not a regular file",
            prepare=link("l.lock", "/dev/zero")),
    Hostile("check_lock_is_a_fifo", **check_run(), code="LS305",
            text="lock file l.lock: cannot read it: not a regular file", prepare=fifo("l.lock")),
    Hostile("config_links_to_dev_zero", ["infer", "m.yaml", "--input", "2,20", "--config",
                                         "z.toml"], {"m.yaml": MLP}, code="LS304",
            text="cannot read z.toml: not a regular file", prepare=link("z.toml", "/dev/zero")),
    # --- writing: what a path names -------------------------------------------------------------
    Hostile("output_file_is_a_folder", ["infer", "m.yaml", "--input", "2,20", "-o", "out"],
            {"m.yaml": MLP, "out/keep.txt": "x"}, code="LS100",
            text="cannot write the report out: it is a folder"),
    Hostile("output_file_is_a_socket", ["infer", "m.yaml", "--input", "2,20", "-o", "s.sock"],
            {"m.yaml": MLP}, code="LS100", text="cannot write the report s.sock: it is a socket",
            prepare=unix_socket("s.sock")),
    Hostile("output_file_full_device", ["infer", "m.yaml", "--input", "2,20", "-o", "full"],
            {"m.yaml": MLP}, code="LS100",
            text="cannot write the report full: No space left on device\n"
            "  hint: the disk (or device) is full", prepare=device("full", 7)),
    Hostile("output_file_dangling_link", ["infer", "m.yaml", "--input", "2,20", "-o", "out"],
            {"m.yaml": MLP}, code="LS100", text="cannot write the report out: No such file",
            prepare=link("out", "nowhere/report.txt")),
    Hostile("export_output_is_a_folder", ["export", "m.yaml", "--input", "2,20", "--output",
                                          "out"], {"m.yaml": MLP, "out/keep.txt": "x"},
            code="LS100", text="it is a folder"),
    Hostile("state_dict_to_full_device", ["export", "m.yaml", "--input", "2,20", "--to",
                                          "state-dict", "--output", "full"], {"m.yaml": MLP},
            code="LS100", text="cannot write the state dict full: No space left on device",
            prepare=device("full", 7)),
    Hostile("lock_path_is_a_folder", **lock_run(**{"l.lock/keep.txt": "x"}), code="LS100",
            text="cannot write the lock file l.lock: it is a folder"),
    Hostile("lock_to_full_device", **lock_run(), code="LS100",
            text="cannot write the lock file l.lock: No space left on device",
            prepare=device("l.lock", 7)),
    # --- lock never overwrites what is not a lock, never silently drops entries ----------------
    Hostile("lock_over_a_spec", **lock_run(lock=MLP), code="LS305",
            text="lock file l.lock: not a lazyspec lock file (expected `version: 1` at the top); "
            "`lazyspec lock` will not replace it"),
    Hostile("lock_over_plain_text", **lock_run(lock="meeting notes: tuesday\n"), code="LS305",
            text="not a lazyspec lock file"),
    Hostile("lock_over_binary", **lock_run(lock=b"\x89PNG\r\n\x1a\n\x00\xff"), code="LS305",
            text="lock file l.lock: cannot read it: 'utf-8' codec can't decode"),
    Hostile("lock_over_a_damaged_lock", **lock_run(lock=ENTRY.replace("7946", "many")),
            code="LS305", text="`total` must be a whole number); `lazyspec lock` will not "
            "replace it, which would drop its entries"),
    Hostile("lock_over_a_newer_lock", **lock_run(lock="version: 2\nspecs: {}\n"),
            code="LS305", text="expected `version: 1` at the top; `lazyspec lock` will not "
            "replace it, which would drop its entries"),
    Hostile("lock_conflict_in_a_spec_not_run", **lock_run(lock=CONFLICT), code="LS305",
            text="l.lock:17:1: error[LS305]: lock file l.lock: merge conflict at lines 17, 19, 21 "
            "in the entries of o.yaml, which this run does not lock"),
    Hostile("lock_conflict_markers_out_of_order",
            **lock_run(lock=GOOD_LOCK + "=======\n" + OTHER + "<<<<<<< HEAD\n"), code="LS305",
            text="merge conflict at lines 13, 19, with markers out of order"),
    Hostile("lock_conflict_side_unreadable",
            **lock_run(lock=conflicted("      total: 1\n", "      total: 1\n",
                                       "      total: [\n")),
            code="LS305", text="merge conflict at lines 17, 19, 21, and a side cannot be read"),
    Hostile("check_conflict_names_its_lines", **check_run(CONFLICT), code="LS305",
            text="l.lock:17:1: error[LS305]: lock file l.lock: unresolved merge conflict (markers "
            "at lines 17, 19, 21)"),
    # --- every read bounded -----------------------------------------------------------------------
    Hostile("check_lock_over_the_size_limit", **check_run(), code="LS305",
            text=f"cannot read it: larger than {MAX_LOCK_BYTES:,} bytes (limit)",
            prepare=big("l.lock", MAX_LOCK_BYTES + 1, "version: 1\nspecs: {}\n")),
    Hostile("check_edited_lock_over_its_limit", **check_run(), code="LS305",
            text=f"larger than {MAX_EDITED_LOCK_BYTES:,} bytes and not in the form "
            "`lazyspec lock` writes", prepare=big("l.lock", MAX_EDITED_LOCK_BYTES + 1,
                                                  GOOD_LOCK)),
    Hostile("check_lock_entry_with_3000_inputs",
            **check_run(ENTRY.replace('["2,20"]', "[" + ", ".join(['"2,20"'] * 3000) + "]")),
            code="LS305", text=f"`inputs` must be a list of at most {MAX_RUN_INPUTS} input "
            "strings (limit)"),
    Hostile("check_lock_spec_with_too_many_entries",
            **{"args": ["check", "m.yaml", "--lock", "l.lock"],
               "files": {"m.yaml": MLP, "l.lock": many_entries(MAX_RUNS_PER_SPEC + 1)}},
            code="LS305", text=f"m.yaml has {MAX_RUNS_PER_SPEC + 1} entries, more than "
            f"{MAX_RUNS_PER_SPEC} (limit)"),
    Hostile("toml_run_with_too_many_inputs",
            **{"args": ["check"], "files": {"m.yaml": MLP, "pyproject.toml": PYPROJECT + RUN
                                            .replace("['2,20']", str(["2,20"] * 40))}},
            code="LS304", text=f"40 input strings, more than {MAX_RUN_INPUTS} (limit)"),
    Hostile("toml_too_many_runs_of_one_spec",
            **{"args": ["check"], "files": {"m.yaml": MLP, "pyproject.toml": PYPROJECT
                                            + RUN * (MAX_RUNS_PER_SPEC + 1)}},
            code="LS304", text=f"[[tool.lazyspec.run]] #{MAX_RUNS_PER_SPEC + 1}: more than "
            f"{MAX_RUNS_PER_SPEC} runs of 'm.yaml' (limit)"),
    Hostile("toml_over_the_size_limit", ["check"], {"m.yaml": MLP}, code="LS304",
            text=f"larger than {MAX_PYPROJECT_BYTES:,} bytes (limit)",
            prepare=big("pyproject.toml", MAX_PYPROJECT_BYTES + 1, PYPROJECT)),
    # --- plain messages ---------------------------------------------------------------------------
    Hostile("lock_failing_spec_writes_nothing_and_says_so",
            ["lock", "m.yaml", "b.yaml", "--input", "2,20", "--lock", "l.lock"],
            {"m.yaml": MLP, "b.yaml": BROKEN}, exit=1, code="LS124", stdout=True,
            text="ok (not written)"),
]


def test_the_catalogue_holds_at_least_15_cases() -> None:
    assert len(CASES) >= 15
    assert len({c.id for c in CASES}) == len(CASES), "two cases share an id"


@pytest.mark.skipif(os.name != "posix", reason="symlinks, FIFOs and device nodes: POSIX")
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_file(case: Hostile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture[str]) -> None:
    before: dict[str, object] = {}

    def prepare(folder: Path) -> None:
        if case.prepare is not None:
            case.prepare(folder)
        before.update(_snapshot(folder))

    run_case(case, tmp_path, monkeypatch, capsys, prepare)
    if case.exit == 2:  # lazyspec could not do its job: it changed nothing it was given
        assert _snapshot(tmp_path) == before


def _snapshot(folder: Path) -> dict[str, object]:
    """Every name in the folder, with its kind, its link target or its bytes."""
    out: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        mode = path.lstat().st_mode
        name = str(path.relative_to(folder))
        if stat.S_ISLNK(mode):
            out[name] = ("link", os.readlink(path))
        elif stat.S_ISREG(mode):
            out[name] = path.read_bytes()
        else:
            out[name] = stat.S_IFMT(mode)
    return out


def test_diagnostics_show_source_lines_only_from_bounded_regular_files(tmp_path: Path) -> None:
    """A diagnostic located in a lock file or pyproject.toml shows its line: read like any
    other file (a FIFO would block, a link to /dev/zero would never end, 1 GB would be read)."""
    from conftest import hang_guard

    from lazyspec.report import diagnostics

    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "zero").symlink_to("/dev/zero")
    big("large", diagnostics.SOURCE_LIMIT + 1)(tmp_path)
    (tmp_path / "small").write_text("version: 1\n", encoding="utf-8")
    lines = diagnostics.source_reader()
    with hang_guard("source lines of a FIFO"):
        assert lines(str(tmp_path / "pipe")) is None
    assert lines(str(tmp_path / "zero")) is None
    assert lines(str(tmp_path / "large")) is None
    assert lines(str(tmp_path / "small")) == ["version: 1"]
