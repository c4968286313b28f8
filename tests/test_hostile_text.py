"""Text from a spec, a lock file or a file name never reaches output raw (issue 9, item 7).

A name, a title, a key, a path or a quoted source line may hold anything YAML or a file system
lets through: line breaks, ESC sequences, NUL, lone surrogates, bidirectional overrides. Every
format shows them as visible escapes (`\\n`, `\\x1b`, `\\udc80`), and no output line is one that
GitHub's runner reads as a workflow command (`::cmd ...::` after leading whitespace, `##[cmd]`
anywhere) unless lazyspec wrote it in `--format github`. The root is lazyspec/textsafe.py; the
end-to-end tests below go through `lazyspec.cli.main` in every format, and each fails when the
protection it names is taken out (`visible` in a writer, `guard` in cli.write, the binary check in
spec/parse.read_text, `_doc` in export).

The catalogue cases are `Bad` cases (see tests/test_bad_inputs.py) and the invalid specs
tests/cases/invalid/text_*.yaml.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_bad_inputs import MLP, Bad, infer, run_case

from lazyspec.cli import main
from lazyspec.textsafe import command_like, guard, visible

HERE = Path(__file__).parent
INVALID = HERE / "cases" / "invalid"
FORMATS = ("table", "markdown", "github", "json")

# What a hostile name carries: a workflow command on a line of its own, the old `##[` form, a
# screen clear and a colour, a carriage return, NUL, a lone surrogate, a bidi override, U+2028.
HOSTILE = ("x\n::error file=README.md,line=1::spoofed\n  ::add-mask::s ##[warning]v1 "
           "\x1b[2J\x1b[31mred\r::notice::cr \x00nul \udc80 \u202eevil \u2028::warning::ls")
# The same, as a YAML double-quoted scalar (YAML allows control characters only as escapes).
HOSTILE_YAML = ('"x\\n::error file=README.md,line=1::spoofed\\n  ::add-mask::s ##[warning]v1 '
                '\\e[2J\\e[31mred\\r::notice::cr \\0nul \\udc80 \\u202eevil \\u2028::warning::ls"')
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029\u202a-\u202e]")


def assert_safe(text: str, *, commands: bool = False) -> None:
    """No raw control character, and no line the runner reads as a command (with `commands`,
    lines lazyspec wrote as `::error`/`::notice` annotations are its own)."""
    raw = RAW.search(text)
    assert raw is None, f"raw {raw.group()!r} in output:\n{text[:3000]!r}"
    for line in text.split("\n"):
        if commands and re.match(r"::(error|notice|warning) [^:]*title=lazyspec", line):
            continue
        assert not command_like(line), f"a workflow command in the output: {line!r}"


def run(args: list[str | Path], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback (most recent call last)" not in out + err
    assert "LS303" not in err, err
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "60")  # narrow: rich wraps long cells onto lines of their own
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return tmp_path


def spec_named(folder: Path, name: str = HOSTILE_YAML, file: str = "m.yaml") -> Path:
    path = folder / file
    path.write_text(f"name: {name}\nlayers:\n  - LazyLinear(4)\n", encoding="utf-8")
    return path


# --- textsafe itself ---------------------------------------------------------------------------


def test_visible_escapes_every_kind_of_control_character() -> None:
    assert visible(HOSTILE) == (
        "x\\n::error file=README.md,line=1::spoofed\\n  ::add-mask::s ##[warning]v1 "
        "\\x1b[2J\\x1b[31mred\\r::notice::cr \\x00nul \\udc80 \\u202eevil \\u2028::warning::ls")
    assert visible("\x85\x7f\t\u200b\ufeff\U000e0041") == \
        "\\x85\\x7f\\t\\u200b\\ufeff\\U000e0041"
    plain = "plain ünïcode 名前 → [2, 10] C:\\path"
    assert visible(plain) == plain


def test_guard_keeps_lines_and_breaks_commands() -> None:
    text = guard("ok\n::error::a\n \t\u3000::warning::b\nmid ##[error]c\n#[x] :: fine\n")
    assert text == ("ok\n\\x3a:error::a\n \t\u3000\\x3a:warning::b\nmid #\\x23[error]c\n"
                    "#[x] :: fine\n")
    assert_safe(text)
    # --format github keeps its own command lines, never the v1 form
    assert guard("::error title=t::m ##[x]\n", commands=True) == "::error title=t::m #\\x23[x]\n"


def test_guard_keeps_a_terminals_colours_but_no_other_escape() -> None:
    assert guard("\x1b[1mbold\x1b[0m \x1b[2J\x1b]0;title\x07", color=True) == \
        "\x1b[1mbold\x1b[0m \\x1b[2J\\x1b]0;title\\x07"
    assert guard("\x1b[1mbold\x1b[0m") == "\\x1b[1mbold\\x1b[0m"


@given(st.text())
def test_guarded_text_holds_no_control_and_no_command(text: str) -> None:
    assert_safe(guard(text))
    assert "\n" not in visible(text) and not RAW.search(visible(text))


@given(st.text(alphabet=st.sampled_from(list(" \t\u3000\u00a0:#[]\nxe\x1b\r\x85\u2028"))))
def test_guarded_text_from_the_dangerous_alphabet(text: str) -> None:
    assert_safe(guard(text))


# --- infer, show, graph: a hostile spec name ----------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_spec_name_cannot_inject_lines_in_any_format(fmt: str, folder: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    spec = spec_named(folder)
    code, out, err = run(["infer", spec, "--input", "2,3", "--format", fmt], capsys)
    assert code == 0, err
    assert_safe(out + err, commands=fmt == "github")
    if fmt == "json":  # exact: the document decodes to the spec's own name
        assert json.loads(out)["name"] == HOSTILE
    elif fmt == "table":  # (Markdown shows the spec's path, not its name)
        assert "x\\n::error file=README.md" in out  # the name on one line, its break shown
        assert "\\x1b[2J" in out and "\\udc80" in out


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_report_file_with_nul_and_a_lone_surrogate(fmt: str, folder: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    spec = spec_named(folder)
    code, _, err = run(["infer", spec, "--input", "2,3", "--format", fmt, "-o", "r.txt"],
                       capsys)
    assert code == 0, err
    text = (folder / "r.txt").read_text(encoding="utf-8")  # valid UTF-8: no raw surrogate
    assert_safe(text, commands=fmt == "github")
    if fmt == "json":
        assert json.loads(text)["name"] == HOSTILE


def test_a_long_hostile_name_wrapped_by_the_table_starts_no_command(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # rich folds a long cell at spaces: `::error` may land at the start of a line of its own
    spec = spec_named(folder, '"' + " ".join(["::error::w"] * 30) + '"')
    code, out, err = run(["infer", spec, "--input", "2,3"], capsys)
    assert code == 0
    assert_safe(out + err)


def test_show_and_graph_escape_the_name(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = spec_named(folder)
    for args in (["show", spec], ["show", spec, "--format", "markdown"],
                 ["show", spec, "--format", "github"],
                 ["graph", spec, "--input", "2,3"], ["graph", spec, "--format", "dot"]):
        code, out, err = run(args, capsys)
        assert code == 0, (args, err)
        assert_safe(out + err, commands="github" in args)
        assert "\\x1b" in out or "markdown" in args or "github" in args, args


def test_graph_labels_escape_controls_before_quoting(folder: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    spec = spec_named(folder, '"esc\\e[31m nul\\0"')
    _, dot, _ = run(["graph", spec, "--format", "dot"], capsys)
    assert 'digraph "esc\\\\x1b[31m nul\\\\x00"' in dot  # DOT shows `\x1b`: its \ is doubled
    _, mermaid, _ = run(["graph", spec], capsys)
    assert mermaid.startswith("%% esc\\x1b[31m nul\\x00\n")


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_graph_text_from_the_api_is_escaped(fmt: str, folder: Path) -> None:
    """`lazyspec.api.graph_for` returns text that no cli.write guards: its labels escape their
    control characters themselves (`lazyspec graph` then guards the lines, as all output)."""
    from lazyspec.api import graph_for

    spec = folder / "m.yaml"
    spec.write_text(f"name: {HOSTILE_YAML}\nlayers:\n  - op: LazyLinear(4)\n"
                    f"    name: fc\n  - ReLU\n", encoding="utf-8")
    text = graph_for(spec, ["2,3"], fmt=fmt)
    assert not RAW.search(text), text
    assert "\\x1b[2J" in text and "\\udc80" in text


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_every_graph_label_escapes_control_characters(fmt: str) -> None:
    from lazyspec.graph import Edge, Graph, GraphNode, Subgraph
    from lazyspec.report.graph_text import to_dot, to_mermaid

    g = Graph(HOSTILE, [
        GraphNode("in_x", "input", HOSTILE, HOSTILE),
        Subgraph("cluster_b", "b", HOSTILE, HOSTILE, [
            GraphNode("n_b", "op", "b", HOSTILE, HOSTILE, skipped=HOSTILE)]),
        GraphNode("out", "output", "output", "output"),
    ], [Edge("in_x", "n_b", HOSTILE, (1, 2)), Edge("n_b", "out", None, HOSTILE)],
        ["in_x"], ["out"])
    text = (to_mermaid if fmt == "mermaid" else to_dot)(g)
    assert not RAW.search(text), text
    assert text.count("\\x1b[2J") >= 5  # title, input, block, node, both edge labels


def test_an_internal_errors_traceback_is_guarded(folder: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import lazyspec.cli

    def boom(items: object) -> None:
        raise RuntimeError(HOSTILE)

    monkeypatch.setattr(lazyspec.cli, "parse_sets", boom)
    spec_named(folder)
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["--traceback", "infer", "m.yaml", "--input", "2,3"])
    out, err = capsys.readouterr()
    assert info.value.code == 2 and "Traceback (most recent call last)" in err
    assert "internal error: RuntimeError: x\\n::error" in err
    assert_safe(out + err)


def test_the_exported_pytorch_module_compiles_with_nul_and_surrogates(
        folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = spec_named(folder)
    code, _, err = run(["export", spec, "--input", "2,3", "--to", "pytorch", "-o", "m.py"],
                       capsys)
    assert code == 0, err
    source = (folder / "m.py").read_text(encoding="utf-8")
    assert_safe(source)
    namespace: dict[str, object] = {}
    exec(compile(source, "m.py", "exec"), namespace)  # the exported module is the point
    model = namespace["Model"]
    assert "\\x00nul" in str(model.__doc__)  # type: ignore[attr-defined]
    model()  # type: ignore[operator]


def test_the_exported_spec_to_stdout_starts_no_command(folder: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    spec = folder / "m.yaml"
    spec.write_text('description: "a\\n::error::x"\nlayers:\n  - LazyLinear(4)\n',
                    encoding="utf-8")
    code, out, err = run(["export", spec, "--input", "2,3"], capsys)
    assert code == 0, err
    assert_safe(out + err)


def _hostile_result(folder: Path) -> tuple[object, object]:
    """A real dry run's result, and a copy with every name, path and note replaced by HOSTILE."""
    from dataclasses import replace

    import lazyspec

    spec = folder / "m.yaml"
    spec.write_text("layers:\n  - LazyLinear(4)\n  - op: ReLU\n    when: false\n",
                    encoding="utf-8")
    clean = lazyspec.load(spec).infer("2,3")
    bad = replace(
        clean, spec=HOSTILE, name=HOSTILE, notes=[HOSTILE],
        inputs=[replace(i, name=HOSTILE) for i in clean.inputs],
        params=[replace(p, path=HOSTILE, op=HOSTILE, module_type=HOSTILE, shared=HOSTILE)
                for p in clean.params],
        nodes=[replace(n, path=HOSTILE, op=HOSTILE, skipped=n.skipped and HOSTILE,
                       shared_from=HOSTILE) for n in clean.nodes],
        totals=replace(clean.totals, unknown_ops=[HOSTILE]))
    return clean, bad


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_reporter_escapes_every_text_field(fmt: str, folder: Path) -> None:
    """The reporters alone (no cli.write after them, as from the Python API): every field stays
    on its line, escaped."""
    from lazyspec.report import reporter
    from lazyspec.report.view import View
    from lazyspec.result import InferOutcome

    clean, bad = _hostile_result(folder)
    expand = View(expand=True)  # the bad nodes all share one path: nothing is collapsed
    texts = [reporter(fmt, width=400, view=expand).infer(InferOutcome(HOSTILE, r))  # type: ignore[arg-type]
             for r in (clean, bad)]
    assert not RAW.search(texts[1]), texts[1]
    if fmt == "json":
        assert json.loads(texts[1])["nodes"][0]["path"] == HOSTILE
    elif fmt == "table":
        assert texts[1].startswith(visible(HOSTILE)), texts[1]
    else:  # the same lines (Markdown adds the bad result's note and its "counted once" line)
        extra = 2 if fmt == "markdown" else 0
        assert texts[1].count("\n") == texts[0].count("\n") + extra, texts[1]


# --- diagnostics: messages and quoted source lines ----------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_hostile_key_in_a_diagnostic(fmt: str, folder: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    spec = folder / "m.yaml"
    spec.write_text(f"{HOSTILE_YAML}: 1\nlayers:\n  - ReLU\n", encoding="utf-8")
    code, out, err = run(["infer", spec, "--input", "2,3", "--format", fmt], capsys)
    assert code == 1
    assert_safe(out + err, commands=fmt == "github")
    assert "unknown key 'x\\n::error file=README.md" in err


def test_a_raw_escape_in_a_spec_line_is_not_quoted_raw(folder: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    spec = folder / "m.yaml"
    spec.write_text("layers:\n  - LazyLinear(4) # \x1b[2J\x1b]0;pwned\x07\n", encoding="utf-8")
    code, out, err = run(["infer", spec, "--input", "2,3"], capsys)
    assert code == 1
    assert "unacceptable character #x001b" in err
    assert " 2 |   - LazyLinear(4) # \\x1b[2J\\x1b]0;pwned\\x07" in err
    assert_safe(out + err)


def test_a_quoted_line_is_cut_around_the_caret(folder: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    spec = folder / "m.yaml"
    spec.write_text("layers:\n  - " + "A" * 3000 + "(4) # " + "z" * 3000 + "\n",
                    encoding="utf-8")
    _, _, err = run(["infer", spec, "--input", "2,3"], capsys)
    quoted = next(line for line in err.splitlines() if line.startswith(" 2 | "))
    assert len(quoted) < 200 and quoted.endswith("...")
    caret = err.splitlines()[err.splitlines().index(quoted) + 1]
    assert caret.index("^") == len(" 2 | ") + 4  # under column 5, where the op starts


def test_a_binary_spec_is_refused_and_never_quoted(folder: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "env").write_bytes(b"SECRET_TOKEN=hunter2\0HOME=/root\0layers: [ReLU]\0")
    code, out, err = run(["infer", "env", "--input", "2,3"], capsys)
    assert code == 2
    assert "cannot read spec 'env': it is a binary file (it holds NUL bytes)" in err
    assert "hunter2" not in out + err


@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="Linux /proc only")
def test_proc_self_environ_prints_no_environment(folder: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("LAZYSPEC_TEST_SECRET", "s3cr3t-value")  # /proc shows the start env
    code, out, err = run(["infer", "/proc/self/environ", "--input", "2,3"], capsys)
    assert code == 2 and "binary file" in err
    assert "PATH=" not in out + err and "HOME=" not in out + err


def test_a_quoted_text_file_with_nul_is_never_quoted() -> None:
    from lazyspec.errors import Diagnostic, Location
    from lazyspec.report.diagnostics import render, source_reader

    lines = source_reader({"a.yaml": "x: 1\0SECRET\n"})
    text = render(Diagnostic("LS101", "bad", Location("a.yaml", 1, 1)), lines)
    assert "SECRET" not in text


# --- the gate: spec file names and lock keys ----------------------------------------------------


HOSTILE_FILE = "a\n::error file=README.md::spoof\x1b[2J ##[warning]w.yaml"


@pytest.mark.skipif(sys.platform == "win32", reason="a line break in a file name")
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_spec_file_name_with_a_line_break(fmt: str, folder: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "specs").mkdir()
    (folder / "specs" / HOSTILE_FILE).write_text(MLP, encoding="utf-8")
    (folder / "specs" / "bad\n::error::x.yaml").write_text("layers:\n  - Nope\n",
                                                            encoding="utf-8")
    code, out, err = run(["check", "specs", "--input", "2,20", "--format", fmt], capsys)
    assert code == 1  # no lock entry for the good one; the bad one fails
    assert_safe(out + err, commands=fmt == "github")
    if fmt == "json":
        assert {r["spec"] for r in json.loads(out)["runs"]} == \
            {"specs/" + HOSTILE_FILE, "specs/bad\n::error::x.yaml"}
    else:  # the name on one line, its line break shown as `\n`
        assert "a\\n::error file=README.md::spoof\\x1b[2J" in out + err
        assert "specs/bad\\n::error::x.yaml" in (out if fmt == "table" else out + err)


@pytest.mark.skipif(sys.platform == "win32", reason="a line break in a file name")
@pytest.mark.parametrize("fmt", FORMATS)
def test_infer_of_a_spec_file_name_with_a_line_break(fmt: str, folder: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (folder / HOSTILE_FILE).write_text(MLP, encoding="utf-8")
    code, out, err = run(["infer", HOSTILE_FILE, "--input", "2,20", "--format", fmt], capsys)
    assert code == 0, err
    assert_safe(out + err, commands=fmt == "github")
    if fmt != "json":
        assert "a\\n::error file=README.md::spoof\\x1b[2J #\\x23[warning]w.yaml" in out


LOCK = ('version: 1\nspecs:\n  m.yaml:\n    "input=2,20\\n::error file=README.md::key\\e[2J":\n'
        '      inputs: ["2,20"]\n      outputs: [[2, 10]]\n      total: 7946\n'
        '    "input=2,20":\n      inputs: ["2,20"]\n      outputs: [[2, 10]]\n      total: 7946\n'
        '      params:\n        "0.weight\\n::warning::p": [256, 20]\n'
        '        "##[error]x\\0": [256]\n')


@pytest.mark.parametrize("fmt", FORMATS)
def test_lock_keys_and_parameter_names(fmt: str, folder: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # each name whole on its line
    (folder / "m.yaml").write_text(MLP, encoding="utf-8")
    (folder / "l.lock").write_text(LOCK, encoding="utf-8")
    code, out, err = run(["check", "m.yaml", "--lock", "l.lock", "--format", fmt], capsys)
    assert code == 1
    assert_safe(out + err, commands=fmt == "github")
    if fmt == "json":
        doc = json.loads(out)
        assert doc["unused"][0]["key"] == "input=2,20\n::error file=README.md::key\x1b[2J"
        assert "- ##[error]x\x00 [256]" in doc["runs"][0]["drift"]
    else:  # each key and name on one line, its line break shown as `\n`
        assert "input=2,20\\n::error file=README.md::key\\x1b[2J" in out
        assert "0.weight\\n::warning::p [256, 20]" in out


def test_the_github_step_summary_is_escaped(folder: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    summary = folder / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    spec = spec_named(folder)
    run(["infer", spec, "--input", "2,3", "--format", "github"], capsys)
    assert_safe(summary.read_text(encoding="utf-8"))


def test_a_terminal_gets_colours_but_not_the_specs_escapes(
        folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from lazyspec.cli import Output

    monkeypatch.setattr(Output, "color", property(lambda self: self.format == "table"))
    spec = spec_named(folder)
    code, out, _ = run(["infer", spec, "--input", "2,3"], capsys)
    assert code == 0
    assert "\x1b[1m" in out  # the title in bold: colours are on
    assert "\x1b[2J" not in out and "\\x1b[2J" in out


# --- the catalogue ------------------------------------------------------------------------------

ESC_KEY = "x\x1b[2J"
TEXT_CASES: list[Bad] = [
    Bad("text_binary_spec", ["infer", "b.yaml", "--input", "2,20"],
        {"b.yaml": b"layers:\n  - ReLU\n\0\0\0"}, code="LS100",
        text="cannot read spec 'b.yaml': it is a binary file (it holds NUL bytes), not YAML"),
    Bad("text_binary_include", **infer("--input", "2,20", spec="include: [b.yaml]\n" + MLP,
                                       **{"b.yaml": b"params: {d: 4}\0"}),
        exit=1, code="LS140", text="cannot read include 'b.yaml': it is a binary file"),
    Bad("text_spec_path_with_line_break", ["infer", "no\n::error::x.yaml", "--input", "2,20"],
        code="LS100", text="cannot read spec 'no\\n::error::x.yaml'"),
    Bad("text_spec_path_starting_with_a_command", ["infer", "::error::spoof.yaml", "--input",
                                                   "2,20"],
        {"::error::spoof.yaml": "layers:\n  - Nope\n"}, exit=1, code="LS120",
        text="\\x3a:error::spoof.yaml:2:5: error[LS120]: unknown op 'Nope'"),
    Bad("text_set_key_with_escape", **infer("--input", "2,20", "--set", f"{ESC_KEY}=1"),
        text="--set x\\x1b[2J: the spec has no param 'x\\x1b[2J'"),
    Bad("text_dtype_with_escape", **infer("--input", "2,20", "--dtype", "float\x1b[2J"),
        text="unknown dtype 'float\\x1b[2J'"),
    Bad("text_format_with_line_break", **infer("--input", "2,20", "--format", "x\n::error::f"),
        text="unknown format 'x\\n::error::f'"),
    Bad("text_input_with_escape", **infer("--input", "2,\x1b[2J"),
        text="bad dimension '\\x1b[2J' in --input '2,\\x1b[2J'"),
    Bad("text_unknown_option_with_escape", **infer("--input", "2,20", "--bogus\x1b[2J"),
        code=None, text="No such option: --bogus\\x1b[2J"),
    Bad("text_scale_with_line_break", **infer("--input", "2,20", "--scale", "x\n::error::s"),
        text="unknown scale 'x\\n::error::s'"),
    Bad("text_lock_binary", ["check", "m.yaml", "--lock", "l.lock", "--input", "2,20"],
        {"m.yaml": MLP, "l.lock": b"version: 1\nspecs: {}\0"}, code="LS305",
        text="not valid YAML: YAML error: unacceptable character #x0000"),
    Bad("text_lock_key_with_line_break", ["check", "m.yaml", "--lock", "l.lock"],
        {"m.yaml": MLP, "l.lock": LOCK}, exit=1, code=None, stdout=True,
        text="unused lock entry: m.yaml [input=2,20\\n::error file=README.md::key\\x1b[2J]"),
    Bad("text_lock_param_with_v1_command", ["check", "m.yaml", "--lock", "l.lock"],
        {"m.yaml": MLP, "l.lock": LOCK}, exit=1, code=None, stdout=True,
        text="- #\\x23[error]x\\x00 [256]"),
    Bad("text_toml_key_with_escape", **{"args": ["check"], "files": {
        "m.yaml": MLP, "pyproject.toml": '[tool.lazyspec]\n"x\\u001b[2J" = 1\n'}},
        code="LS304", text="unknown key 'x\\x1b[2J' in [tool.lazyspec]"),
]


@pytest.mark.parametrize("case", TEXT_CASES, ids=[c.id for c in TEXT_CASES])
def test_hostile_text_case(case: Bad, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    out, err = run_case(case, tmp_path, monkeypatch, capsys)
    assert_safe(out + err)


TEXT_SPECS = sorted(INVALID.glob("text_*.yaml"))


def test_the_text_catalogue_is_large_enough() -> None:
    assert len(TEXT_CASES) + len(TEXT_SPECS) >= 15


@pytest.mark.parametrize("path", TEXT_SPECS, ids=[p.stem for p in TEXT_SPECS])
def test_text_catalogue_output_is_safe(path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The invalid specs text_*.yaml (run by tests/test_invalid_catalogue.py for their
    diagnostics) print nothing raw in any format."""
    monkeypatch.chdir(INVALID)
    for fmt in FORMATS:
        _, out, err = run(["infer", path.name, "--input", "2,20", "--format", fmt], capsys)
        assert_safe(out + err, commands=fmt == "github")


def test_no_writer_bypasses_the_guard() -> None:
    """Every print goes through cli.write (which guards), or Output.emit (which guards files)."""
    root = HERE.parent / "lazyspec"
    for path in root.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        for pattern in (r"(?<![\w.])print\(", r"sys\.std(out|err)\.write\(",
                        r"traceback\.print_exc"):
            hits = [m.group() for m in re.finditer(pattern, source)]
            allowed = {"cli.py": {"sys.stderr.write("}}.get(path.name, set())
            assert set(hits) <= allowed, f"{path.relative_to(root)} writes directly: {hits}"
