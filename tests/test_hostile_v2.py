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


# --- a second round: patterns that backtracked, quadratic quoting, NULs, deep locks -------------


def in_child(code: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `code` in a child process: a regular expression that backtracks holds the GIL and
    ignores signals, so only a timeout on another process can stop it (a hang guard, not a
    timing: each of these returns in milliseconds)."""
    return subprocess.run([sys.executable, "-c", code], env=dict(os.environ,
                          PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize(("code", "expect"), [
    # an input set of spaces ended by `=` (a lock's or a config's inputs, any --input)
    ("from lazyspec.inputs import parse_input as p\n"
     "try:\n p(' ' * 3000 + '=')\nexcept Exception as e: print(e.diagnostics[0].message[:14])",
     "cannot read --"),
    ("from lazyspec.inputs import parse_input as p\n"
     "try:\n p(' ' * 300 + '=2')\nexcept Exception as e: print(e.diagnostics[0].message[:14])",
     "cannot read --"),
    # a budget in pyproject.toml with 200,000 spaces
    ("from lazyspec.config import parse_count as p\n"
     "try:\n p('1' + ' ' * 200000 + '!')\nexcept Exception as e: print('refused')", "refused"),
    # the YAML hint for `- op` followed by a key, on a line of 200,000 spaces
    ("from lazyspec.spec.yamlload import load_yaml\n"
     "text = 'layers:\\n  - a' + ' ' * 200000 + ':b\\n    in: x\\n'\n"
     "try:\n load_yaml(text, 's.yaml')\nexcept Exception as e: print(e.diagnostics[0].code)",
     "LS101"),
])
def test_no_pattern_backtracks_on_long_runs_of_spaces(code: str, expect: str) -> None:
    done = in_child(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expect


def test_the_input_form_still_reads_as_before() -> None:
    from lazyspec.inputs import parse_input

    assert str(parse_input(" x = 2 , 3 : float16 ")) == "x=2,3:float16"
    assert str(parse_input("[2, 20]")) == "2,20" and str(parse_input("B 3 H W")) == "B,3,H,W"
    for bad in ("=2", "x=y=2", "2:int:3", "2,3:", "1x=2"):
        with pytest.raises(Exception, match="cannot read --input"):
            parse_input(bad)


def test_a_long_line_is_quoted_from_a_window_around_the_caret(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Quoting a 1 MB line escaped all of it for each diagnostic on it (minutes for 10,000)."""
    from lazyspec.report import diagnostics

    seen = []
    real = diagnostics.visible

    def counting(text: str) -> str:
        seen.append(len(text))
        return real(text)

    monkeypatch.setattr(diagnostics, "visible", counting)
    line = "layers: [" + "X, " * 300_000 + "X]"
    text, caret = diagnostics.quoted(line, 450_000)
    assert text.startswith("...") and text.endswith("...") and text[caret] == line[449_999]
    assert sum(seen) <= 8 * diagnostics.QUOTE_WIDTH


def test_stderr_shows_the_first_hundred_diagnostics_and_counts_the_rest() -> None:
    from lazyspec.errors import Diagnostic, Location
    from lazyspec.report.diagnostics import render_all

    many = [Diagnostic("LS120", f"unknown op 'X{i}'", Location("m.yaml", 1, i + 1))
            for i in range(250)]
    text = render_all(many, lambda path: ["layers: [" + "X, " * 250 + "]"])
    assert text.count("error[LS120]") == 100
    assert "... and 150 more diagnostics" in text and text.endswith("250 errors")


def test_an_unknown_op_repeated_is_looked_up_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from lazyspec import errors, ops

    calls = []
    real = errors.did_you_mean
    monkeypatch.setattr(errors, "did_you_mean", lambda *a: calls.append(a) or real(*a))
    ops._suggestion.cache_clear()
    for _ in range(50):
        with pytest.raises(ops.OpLookupError, match="unknown op 'Lineer'"):
            ops.resolve("Lineer", ())
    assert len(calls) == 1


@pytest.mark.parametrize("table", [
    'specs = ["specs\\u0000"]', '[[tool.lazyspec.run]]\nspec = "m\\u0000.yaml"',
    'lock = "x\\u0000.lock"',
    '[[tool.lazyspec.run]]\nspec = "m.yaml"\ncheckpoint = "w\\u0000.safetensors"'])
def test_a_nul_in_pyproject_is_a_clear_error(table: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    case = Bad("pyproject-nul", ["check", "--input", "2,20"],
               {"m.yaml": MLP, "pyproject.toml": "[tool.lazyspec]\n" + table + "\n"},
               code="LS304", text="NUL character")
    run_case(case, tmp_path, monkeypatch, capsys)


def test_a_nul_in_a_path_is_an_oserror() -> None:
    from lazyspec.fileio import resolved

    with pytest.raises(OSError, match="NUL"):
        resolved("a\x00b.yaml")


def written_lock(outputs: str, total: str = "7946") -> str:
    return ("# lazyspec.lock: written by `lazyspec lock`. Review changes like code; do not "
            "edit by hand.\nversion: 1\nspecs:\n  \"m.yaml\":\n    \"input=2,20\":\n"
            f"      inputs: [\"2,20\"]\n      outputs: {outputs}\n      total: {total}\n"
            "      params: {}\n")


def test_the_written_lock_form_bounds_nesting_and_integers(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    from lazyspec import lock

    assert lock.HEADER.startswith("# lazyspec.lock: written by `lazyspec lock`")
    deep = written_lock("[" * 700 + "2" + "]" * 700)
    huge = written_lock("[[2, 10]]", total="9" * 4000)
    for text in (deep, huge):
        case = Bad("lock-written-form", ["check", "m.yaml", "--input", "2,20", "--lock",
                                         "l.lock"], {"m.yaml": MLP, "l.lock": text},
                   code="LS305")
        run_case(case, tmp_path, monkeypatch, capsys)


def test_a_lock_reached_through_a_link_keys_specs_from_its_own_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "m.yaml").write_text(MLP, encoding="utf-8")
    (tmp_path / "alt").mkdir()
    (tmp_path / "alt" / "link.lock").symlink_to("../lazyspec.lock")
    monkeypatch.chdir(tmp_path)
    for args in (["lock", "specs/m.yaml", "--input", "2,20"],
                 ["lock", "specs/m.yaml", "--input", "2,20", "--lock", "alt/link.lock"]):
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 0
    text = (tmp_path / "lazyspec.lock").read_text(encoding="utf-8")
    assert '"specs/m.yaml"' in text and "../specs" not in text
    assert (tmp_path / "alt" / "link.lock").is_symlink()
    with pytest.raises(SystemExit) as info:
        main(["check", "specs/m.yaml", "--input", "2,20"])
    assert info.value.code == 0
