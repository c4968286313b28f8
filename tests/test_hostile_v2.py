"""A second hostile pass, over the newer commands (`weights`, `init`, `import`, progress, export).

Each test names the root it guards and fails when that protection is taken out:
- `report/github.GithubReporter.weights` sends its verdict line through `_text` (a newline in a
  file name no longer starts a workflow command);
- `fileio.resolved` replaces `Path.resolve()`, whose RuntimeError on a symlink loop became an
  internal error (LS303) in every command that resolves a path; a test keeps `.resolve()` out;
- `scaffold._existing` reads a project file bounded and regular-only, and `_has_aliases`
  refuses a YAML alias bomb before its data is compared;
- `progress._plain` shows a path as text, never as rich markup;
- `export --to spec` writes its file in ASCII (invisible and bidi characters as escapes);
- a lock file with a top-level key of its own is not a lock `lazyspec lock` may replace.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from test_bad_inputs import MLP, Bad, run_case
from test_hostile_text import RAW, assert_safe

from lazyspec.cli import main

ROOT = Path(__file__).resolve().parent.parent


def safetensors_bytes(shapes: dict[str, list[int]]) -> bytes:
    """A float32 safetensors file holding zeros of these shapes."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 4
        for n in shape:
            size *= n
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


MLP_WEIGHTS = {"0.weight": [256, 20], "0.bias": [256], "2.weight": [10, 256], "2.bias": [10]}


# --- weights --format github: names on their own lines -------------------------------------------


def test_weights_github_verdict_cannot_inject_commands(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    spec = "sp\n::error::pwned-specname\n.yaml"
    checkpoint = "ck\n  ::error title=INJ::pwned\n##[error]x.safetensors"
    shapes = dict(MLP_WEIGHTS, **{"0.weight": [128, 20]})  # one mismatch: exit 1
    case = Bad("weights-github-names", ["weights", spec, checkpoint, "--input", "2,20",
                                        "--format", "github"],
               {spec: MLP, checkpoint: safetensors_bytes(shapes)}, exit=1, code=None,
               text="does not fit", stdout=True)
    out, err = run_case(case, tmp_path, monkeypatch, capsys)
    assert_safe(out + err, commands=True)
    assert "sp\\n::error::pwned-specname\\n.yaml" in out  # the name kept, its breaks shown


# --- symlink loops: a clear OSError, never an internal error --------------------------------------


def loop(folder: Path) -> None:
    (folder / "loopa").symlink_to("loopb")
    (folder / "loopb").symlink_to("loopa")


LOOPED = "Too many levels of symbolic links"
HF = json.dumps({"model_type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2,
                 "vocab_size": 10, "n_positions": 64})
LOOP_CASES = [
    Bad("loop-infer", ["infer", "loopa", "--input", "2,20"], code="LS100", text=LOOPED),
    Bad("loop-show", ["show", "loopa"], code="LS100", text=LOOPED),
    Bad("loop-graph", ["graph", "loopa"], code="LS100", text=LOOPED),
    Bad("loop-export", ["export", "loopa", "--input", "2,20"], code="LS100", text=LOOPED),
    Bad("loop-include", ["infer", "m.yaml", "--input", "2,3"],
        {"m.yaml": "include: [loopa]\nlayers:\n  - LazyLinear(4)\n"}, exit=1, code="LS140",
        text=LOOPED),
    Bad("loop-check-spec", ["check", "loopa", "--input", "2,20"], code="LS100", text=LOOPED),
    Bad("loop-lock-file", ["lock", "m.yaml", "--input", "2,20", "--lock", "loopa"],
        {"m.yaml": MLP}, code="LS100", text=LOOPED),
    Bad("loop-check-lock", ["check", "m.yaml", "--input", "2,20", "--lock", "loopa"],
        {"m.yaml": MLP}, code="LS305", text=LOOPED),
    Bad("loop-pyproject-lock", ["check", "m.yaml", "--input", "2,20"],
        {"m.yaml": MLP, "pyproject.toml": "[tool.lazyspec]\nlock = 'loopa'\n"}, code="LS305",
        text=LOOPED),
    Bad("loop-import-output", ["import", "hf", "c.json", "--output", "loopa"],
        {"c.json": HF}, code="LS100", text=LOOPED),
]


@pytest.mark.parametrize("case", LOOP_CASES, ids=[c.id for c in LOOP_CASES])
def test_a_symlink_loop_is_a_clear_error(case: Bad, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    run_case(case, tmp_path, monkeypatch, capsys, prepare=loop)


def test_lazyspec_never_calls_path_resolve() -> None:
    """`Path.resolve()` raises RuntimeError on a loop in Python 3.11: `fileio.resolved` only."""
    found = [f"{p.relative_to(ROOT)}:{n}" for p in (ROOT / "lazyspec").rglob("*.py")
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if re.search(r"(?<!ops)\.resolve\(", line) and "`Path.resolve()`" not in line]
    assert found == []


# --- init: project files read bounded, aliases refused --------------------------------------------


def fifo(name: str):  # type: ignore[no-untyped-def]
    def make(folder: Path) -> None:
        os.mkfifo(folder / name)
    return make


def zero_link(name: str):  # type: ignore[no-untyped-def]
    def make(folder: Path) -> None:
        (folder / name).symlink_to("/dev/zero")
    return make


ALIAS_BOMB = "\n".join(["a0: &a0 [x, x, x, x, x, x, x, x, x, x]",
                        *(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]"
                          for i in range(1, 20)),
                        "repos:", "  - repo: local", "    hooks: []", ""])


def limited() -> None:  # in the child: a bug that reads /dev/zero or builds a bomb stops here
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))


@pytest.mark.parametrize(("prepare", "files", "text"), [
    (fifo("pyproject.toml"), {}, "pyproject.toml: it cannot be read"),
    (fifo(".pre-commit-config.yaml"), {}, ".pre-commit-config.yaml: it cannot be read"),
    (zero_link("pyproject.toml"), {}, "not a regular file"),
    (None, {"pyproject.toml": "# x\n" * 300_000}, "(limit)"),
    (None, {"pyproject.toml": "a = " + "[" * 5000 + "]" * 5000 + "\n"}, "not valid TOML"),
    (None, {".pre-commit-config.yaml": ALIAS_BOMB}, "YAML aliases"),
], ids=["pyproject-fifo", "pre-commit-fifo", "pyproject-dev-zero", "pyproject-large",
        "pyproject-deep", "pre-commit-alias-bomb"])
def test_init_reads_project_files_bounded(prepare, files: dict[str, str], text: str,  # type: ignore[no-untyped-def]
                                          tmp_path: Path) -> None:
    """In a child process with a memory limit and a timeout: without the protection these hang,
    fill memory or run for minutes, and the test fails instead of taking the suite down."""
    for name, content in files.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    if prepare is not None:
        prepare(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    done = subprocess.run([sys.executable, "-m", "lazyspec", "init", "."], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60,
                          preexec_fn=limited)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "LS303" not in done.stderr, done.stderr
    assert text in done.stdout and "refused" in done.stdout, done.stdout
    for name, content in files.items():  # nothing written to what was refused
        assert (tmp_path / name).read_text(encoding="utf-8") == content


# --- progress: a path is text, not markup ---------------------------------------------------------


@pytest.mark.parametrize("path", ["[/x].yaml", "[link=file:/evil]CLICK[/link].yaml", "[bold]x"])
def test_progress_shows_a_path_with_brackets_as_it_is(path: str) -> None:
    from lazyspec import progress

    stream = io.StringIO()
    session = progress._Session(stream, f"lazyspec infer {path}", delay=3600)
    session._start()  # what the timer does after a second (rich parses markup here)
    assert session.status.renderable.text.plain == f"lazyspec infer {path}"
    session.note(f"{path}: reading")
    assert session.status.renderable.text.plain == f"{path}: reading"
    session.close()


# --- export --to spec: the file holds no invisible or bidi character ------------------------------


def test_export_spec_file_escapes_invisible_characters(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    spec = ('name: "A\\u202eB\\u2066C\\u200bD\\u00adE\\ufeffF\\u2028G"\n'
            "layers:\n  - LazyLinear(3)\n")
    case = Bad("export-spec-bidi", ["export", "m.yaml", "--input", "2,4", "--to", "spec",
                                    "--output", "out.yaml"], {"m.yaml": spec}, exit=0,
               code=None, stdout=True)
    run_case(case, tmp_path, monkeypatch, capsys)
    written = (tmp_path / "out.yaml").read_text(encoding="utf-8")
    assert written.isascii() and not RAW.search(written)
    import yaml  # the escapes are YAML's own: the name reads back as it was

    assert yaml.safe_load(written)["name"] == "A\u202eB\u2066C\u200bD\u00adE\ufeffF\u2028G"


# --- lock: a top-level key of its own makes a file not a lock ----------------------------------


@pytest.mark.parametrize("command", ["lock", "check"])
def test_a_lock_with_an_unknown_top_level_key_is_refused(command: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    lock = "version: 1\nspecs: {}\nextra: important data\n"
    case = Bad(f"lock-extra-{command}", [command, "m.yaml", "--input", "2,20", "--lock",
                                         "l.lock"], {"m.yaml": MLP, "l.lock": lock},
               code="LS305", text="unknown top-level key 'extra'")
    run_case(case, tmp_path, monkeypatch, capsys)
    assert (tmp_path / "l.lock").read_text(encoding="utf-8") == lock


def test_a_lock_written_by_lazyspec_is_still_read(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "m.yaml").write_text(MLP, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    for command in ("lock", "check"):
        with pytest.raises(SystemExit) as info:
            main([command, "m.yaml", "--input", "2,20", "--lock", "l.lock"])
        assert info.value.code == 0
