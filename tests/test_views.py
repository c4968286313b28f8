"""What the human reports show (`--show`, `--columns`, `--depth`, `--expand`) and how they fit a
terminal: golden outputs at 40, 80 and 200 columns, the same text on a terminal as in a pipe,
no name or shape ever split across lines, JSON never trimmed, the non-trainable count everywhere,
progress on stderr, bundled specs by name, `lazyspec init`, and the bad flags of all of these.

Regenerate the goldens with `python -m pytest tests/test_views.py --update-golden`.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, SPECS, hang_guard
from test_bad_inputs import MLP, Bad, infer, run_case

RESNET = ["infer", "specs/resnet18.yaml", "--input", "1,3,224,224"]
LLAMA = ["infer", "specs/llama2-7b.yaml", "--scale", "tiny", "--input", "2,16:int64"]
ALL_COLUMNS = "op,input,output,weight,params,percent,flops,macs,trainable,line"
WIDTHS = (40, 80, 200)
VIEWS = {  # golden name -> command line
    "resnet18": RESNET,
    "resnet18-all-columns": [*RESNET, "--columns", ALL_COLUMNS, "--expand"],
    "resnet18-both": [*RESNET, "--show", "both"],
    "llama-tiny": LLAMA,
    "llama-tiny-params": [*LLAMA, "--show", "params"],
}
TORCHINFO_RESNET18_LINES = 84  # torchinfo.summary(resnet18(), (1, 3, 224, 224)), its defaults


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)


def at_width(cli, monkeypatch: pytest.MonkeyPatch, width: int, *args: str) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    r = cli(*args)
    assert r.code == 0, r.stderr
    return r.stdout


# --- goldens --------------------------------------------------------------------------------


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("view", list(VIEWS))
def test_view_golden(cli, golden, in_repo, monkeypatch, view: str, width: int) -> None:
    text = at_width(cli, monkeypatch, width, *VIEWS[view])
    golden(f"view-{view}.w{width}.out", text)
    assert_unbroken(text)
    if width >= 80:  # at 40 a path and a shape may need more: that line runs long, whole
        assert max(map(len, table_lines(text))) <= width


def table_lines(text: str) -> list[str]:
    """The lines of every table in a report: heading, rule, rows (up to a blank line)."""
    lines = text.splitlines()
    out: list[str] = []
    for i, line in enumerate(lines):
        if line and set(line) == {"─"}:
            block = [lines[i - 1], line]
            for row in lines[i + 1:]:
                if not row:
                    break
                block.append(row)
            out += block
    return out


def test_markdown_golden(cli, golden, in_repo, monkeypatch) -> None:
    text = at_width(cli, monkeypatch, 80, *RESNET, "--format", "markdown", "--depth", "2")
    golden("view-resnet18-depth2.markdown.out", text)
    assert "| `layer1.0-1` | BasicBlock x2 |" in text  # the node table, at --depth 2
    assert "layer1.0.conv1" not in text
    assert "buffers: 9,620 (37.7 KiB)" in text
    assert "parameters: 11,689,512 (non-trainable 0)" in text


def test_a_terminal_gets_the_same_text_as_a_pipe(in_repo) -> None:
    """On a terminal the table only gains colours: rich renders it with force_terminal."""
    from lazyspec import engine
    from lazyspec.inputs import parse_input
    from lazyspec.report.table import TableReporter

    outcome = engine.run(engine.Request("specs/resnet18.yaml",
                                        inputs=(parse_input("1,3,224,224"),))).report()
    for width in WIDTHS:
        coloured = TableReporter(color=True, width=width).infer(outcome)
        assert "\x1b[" in coloured
        plain = re.sub(r"\x1b\[[0-9;]*m", "", coloured)
        assert plain == TableReporter(width=width).infer(outcome)
        assert_unbroken(plain)


# --- names and shapes stay whole -------------------------------------------------------------

# A shape, a bracketed list, a path or a number cut at the end of a line: `[1, 64,` or
# `layer2.0.downsample.0.` or `11,689,`.
CUT = re.compile(r"[\[(][^\])]*$|(?<![\w/])\w+(\.\w+)+\.(?=\s|$)|\d,$")


def assert_unbroken(text: str) -> None:
    """No line ends inside a shape, a path or a number, and every bracket closes on its line."""
    for n, line in enumerate(text.splitlines(), 1):
        body = line.rstrip()
        assert not CUT.search(body), f"line {n} is cut: {line!r}"
        assert body.count("[") == body.count("]"), f"line {n} splits a shape: {line!r}"


def test_the_scan_finds_what_folding_did() -> None:
    """The two cuts of the issue: rich folding a state-dict name and a shape in their cells."""
    with pytest.raises(AssertionError, match="line 1 is cut"):
        assert_unbroken(" layer2.0.downsample.0.   LazyConv2d   [128, 64, 1, 1]   8,192\n"
                        " weight\n")
    with pytest.raises(AssertionError, match="line 1 is cut"):
        assert_unbroken(" conv1   LazyConv2d   [64, 3, 7,   9,408\n          7]\n")


def human_goldens() -> list[Path]:
    """Every golden output but JSON's (indented JSON puts each number of an array on a line of
    its own, as JSON does; programs read it)."""
    return sorted(p for p in (ROOT / "tests" / "golden").glob("*.out")
                  if ".json." not in p.name and "mermaid" not in p.name)


@pytest.mark.parametrize("path", human_goldens(), ids=lambda p: p.name)
def test_no_golden_output_splits_a_name_or_a_shape(path: Path) -> None:
    assert_unbroken(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("width", WIDTHS)
def test_every_parameter_name_and_shape_is_whole_on_one_line(cli, in_repo, monkeypatch,
                                                             width: int) -> None:
    """At any width, each state-dict name is whole on a line of `--show params`, its shape on
    the same line (or, on a terminal too narrow for both, whole on the next)."""
    data = json.loads(at_width(cli, monkeypatch, width, *RESNET, "--format", "json"))
    text = at_width(cli, monkeypatch, width, *RESNET, "--show", "params", "--expand")
    lines = text.splitlines()
    for p in data["params"]:
        shape = "[" + ", ".join(map(str, p["shape"])) + "]"
        at = [i for i, line in enumerate(lines) if line.split(" ")[0] == p["path"]]
        assert len(at) == 1, p
        assert shape in lines[at[0]] or lines[at[0] + 1].startswith("    " + shape), p
    assert_unbroken(text)


def test_narrow_terminals_lose_whole_columns_and_say_so(cli, in_repo, monkeypatch) -> None:
    """80 columns: ResNet-18's five columns fit. 40: a name and its output alone do not, so each
    row takes two lines, the name, then its cells (less Op), and a line says what went."""
    text = at_width(cli, monkeypatch, 40, *RESNET)
    assert "(40 columns: left out Op; widen the terminal or choose --columns)" in text
    assert re.search(r"\nlayer2\.0\.downsample\.0\n    \[1, 128, 28, 28\] +8,192 +12\.8M\n", text)
    assert max(map(len, table_lines(text))) <= 40
    mlp = at_width(cli, monkeypatch, 40, "infer", "specs/mlp.yaml", "--input", "2,20")
    assert "(40 columns: left out Op, Line; widen" in mlp
    assert "\n0.weight   LazyLinear  [256, 20]  5,120\n" in mlp  # Count stays, Line goes
    assert "left out" not in at_width(cli, monkeypatch, 80, *RESNET)


# --- what the default shows ------------------------------------------------------------------


def test_resnet18_at_80_columns_is_shorter_than_torchinfo(cli, in_repo, monkeypatch) -> None:
    text = at_width(cli, monkeypatch, 80, *RESNET)
    lines = text.splitlines()
    assert len(lines) <= TORCHINFO_RESNET18_LINES
    assert max(map(len, lines)) <= 80
    heading = next(line for line in lines if line.startswith("Node "))
    assert heading.split() == ["Node", "Op", "Output", "Params", "FLOPs"]
    assert any(line.startswith("layer2.0.downsample.0 ") for line in lines)  # state-dict names
    assert "layer4 (as layer2)" in text and "layer1.0-1" in text


def test_a_small_model_shows_both_tables(cli, in_repo, monkeypatch) -> None:
    text = at_width(cli, monkeypatch, 80, "infer", "specs/mlp.yaml", "--input", "2,20")
    assert "Parameter " in text and "0.weight   LazyLinear  [256, 20]" in text
    assert "Node " in text


def test_show_chooses_the_tables(cli, in_repo, monkeypatch) -> None:
    mlp = ["infer", "specs/mlp.yaml", "--input", "2,20"]
    nodes = at_width(cli, monkeypatch, 80, *mlp, "--show", "nodes")
    params = at_width(cli, monkeypatch, 80, *mlp, "--show", "params")
    assert "Node " in nodes and "Parameter " not in nodes
    assert "Parameter " in params and "Node " not in params
    assert "parameters: 7,946 (non-trainable 0)" in nodes + params


def test_repeated_blocks_collapse_and_expand(cli, in_repo, monkeypatch) -> None:
    collapsed = at_width(cli, monkeypatch, 200, *LLAMA)
    assert "layers.0-1 " in collapsed and "DecoderLayer x2" in collapsed
    assert "layers.1.mlp" not in collapsed
    assert "xN: N identical copies shown once" in collapsed
    expanded = at_width(cli, monkeypatch, 200, *LLAMA, "--expand")
    assert "layers.1.mlp.down_proj " in expanded and "layers.0-1" not in expanded
    params = at_width(cli, monkeypatch, 200, *LLAMA, "--show", "params")
    assert "layers.0.mlp.up_proj.weight x2" in params and "layers.1." not in params


def test_depth_limits_the_node_table(cli, in_repo, monkeypatch) -> None:
    text = at_width(cli, monkeypatch, 80, *RESNET, "--depth", "1")
    assert "layer4 " in text and "conv2" not in text
    assert "nodes deeper than --depth 1 not shown" in text


def test_json_is_never_trimmed_by_a_view(cli, in_repo, monkeypatch) -> None:
    full = json.loads(at_width(cli, monkeypatch, 80, *LLAMA, "--format", "json"))
    viewed = json.loads(at_width(cli, monkeypatch, 80, *LLAMA, "--format", "json", "--depth",
                                 "1", "--show", "nodes", "--columns", "op"))
    assert viewed == full
    assert len(full["nodes"]) > 40 and full["totals"]["non_trainable"] == 0
    assert full["nodes"][0]["input"] == [2, 16] and full["nodes"][1]["input"] == [2, 16, 64]


def test_columns_show_what_they_say(cli, in_repo, monkeypatch) -> None:
    text = at_width(cli, monkeypatch, 200, *RESNET, "--columns", "kernel,percent,line")
    row = next(line for line in text.splitlines() if line.startswith("conv1 "))
    assert "  [64, 3, 7, 7]  " in row and row.split()[-2:] == ["0.1%", "37"]


# --- trainable and frozen ----------------------------------------------------------------------

FROZEN = "layers:\n  - fc: LazyLinear(4)\n    trainable: false\n  - head: LazyLinear(2)\n"


@pytest.mark.parametrize("fmt, text", [
    ("table", "parameters: 30 (non-trainable 20)"),
    ("markdown", "parameters: 30 (non-trainable 20)"),
    ("github", "30 parameters (non-trainable 20), ok"),
    ("json", '"non_trainable": 20'),
])
def test_the_non_trainable_count_is_next_to_the_total(cli, write_spec, fmt: str,
                                                      text: str) -> None:
    spec = write_spec(FROZEN)
    r = cli("infer", spec, "--input", "2,4", "--format", fmt)
    assert r.code == 0 and text in r.stdout, r.stdout


def test_frozen_parameters_are_marked_in_both_tables(cli, write_spec, monkeypatch) -> None:
    spec = write_spec(FROZEN)
    text = at_width(cli, monkeypatch, 200, "infer", spec, "--input", "2,4", "--columns",
                    "params,trainable")
    assert re.search(r"^fc +20 +no$", text, re.MULTILINE)
    assert re.search(r"^fc\.weight .* no$", text, re.MULTILINE)
    assert re.search(r"^head\.bias .* yes$", text, re.MULTILINE)


# --- bad flags ---------------------------------------------------------------------------------

CASES = [
    Bad("views_unknown_column", **infer("--input", "2,20", "--columns", "op,sizes"),
        text="--columns: unknown column 'sizes'"),
    Bad("views_no_column", **infer("--input", "2,20", "--columns", ","),
        text="--columns needs at least one column"),
    Bad("views_unknown_show", **infer("--input", "2,20", "--show", "all"),
        text="--show: unknown choice 'all'"),
    Bad("views_unknown_example", args=["infer", "resnet81", "--input", "2,3,32,32"],
        text="did you mean resnet18"),
    Bad("views_init_no_folder", args=["init", "nowhere"], text="nowhere: no such folder"),
    Bad("views_init_bad_pyproject", args=["init"], files={"pyproject.toml": "[tool\n"},
        code=None, text="", stdout=True),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_view_input(case: Bad, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = run_case(case, tmp_path, monkeypatch, capsys)
    if case.id == "views_init_bad_pyproject":
        assert "refused  pyproject.toml: it is not valid TOML" in out
        assert (tmp_path / "pyproject.toml").read_text() == "[tool\n"


# --- bundled specs by name ---------------------------------------------------------------------


def test_bundled_specs_run_by_name(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = cli("infer", "mlp", "--input", "2,20", "--format", "json")
    assert r.code == 0 and json.loads(r.stdout)["totals"]["params"] == 7946
    assert cli("infer", "mlp.yaml", "--input", "2,20").code == 0


def test_a_file_wins_over_a_bundled_name(cli, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlp").write_text("layers:\n  - LazyLinear(3)\n")
    r = cli("infer", "mlp", "--input", "2,20", "--format", "json")
    assert r.code == 0 and json.loads(r.stdout)["totals"]["params"] == 63


def test_examples_match_the_lock_and_the_folder() -> None:
    """Every spec in specs/ is listed, with the inputs pyproject.toml runs it at and the
    parameter count lazyspec.lock holds for them."""
    import yaml

    from lazyspec.examples import EXAMPLES

    assert sorted(e.name for e in EXAMPLES) == sorted(p.stem for p in SPECS.glob("*.yaml"))
    locked = yaml.safe_load((ROOT / "lazyspec.lock").read_text())["specs"]
    for e in EXAMPLES:
        entry = locked[f"specs/{e.name}.yaml"]["input=" + " ".join(e.inputs)]
        assert entry["total"] == e.params, e.name


def test_examples_lists_them(cli) -> None:
    r = cli("examples")
    assert r.code == 0
    assert re.search(r"^resnet18 +.*2,3,224,224 +11,689,512$", r.stdout, re.MULTILINE)
    assert re.search(r"^t5_small +.*input_ids=2,16:int64 decoder_input_ids=2,8:int64 +60,506,624$",
                     r.stdout, re.MULTILINE)


# --- lazyspec init -----------------------------------------------------------------------------


def test_init_in_an_empty_folder(cli, tmp_path) -> None:
    r = cli("init", tmp_path)
    assert r.code == 0, r.stderr
    for name in ("specs/model.yaml", "pyproject.toml", ".pre-commit-config.yaml",
                 ".github/workflows/lazyspec.yml"):
        assert (tmp_path / name).is_file(), name
    import yaml

    hook = yaml.safe_load((tmp_path / ".pre-commit-config.yaml").read_text())["repos"][0]
    assert hook["hooks"][0]["language"] == "system"
    again = cli("init", tmp_path)
    assert again.code == 0 and again.stdout.count("kept") == 4


def test_init_keeps_an_existing_pyproject_whole(cli, tmp_path) -> None:
    before = ('# the project\n[project]\nname = "x"   # keep me\n\n[tool.black]\n'
              'line-length = 88\n\n[[tool.other.items]]\nx = 1')  # no newline at the end
    (tmp_path / "pyproject.toml").write_text(before)
    assert cli("init", tmp_path).code == 0
    after = (tmp_path / "pyproject.toml").read_text()
    assert after.startswith(before + "\n")
    import tomllib

    data = tomllib.loads(after)
    assert data["tool"]["black"] == {"line-length": 88} and data["tool"]["other"]["items"]
    assert data["tool"]["lazyspec"]["run"][0]["spec"] == "specs/model.yaml"
    assert cli("init", tmp_path).code == 0
    assert (tmp_path / "pyproject.toml").read_text() == after  # a second init changes nothing


@pytest.mark.parametrize("pyproject", ["tool = {black = {line-length = 88}}\n",
                                       "[tool]\nlazyspec.specs = ['x']\n"])
def test_init_never_rewrites_a_pyproject_it_cannot_append_to(cli, tmp_path,
                                                             pyproject: str) -> None:
    (tmp_path / "pyproject.toml").write_text(pyproject)
    r = cli("init", tmp_path)
    assert (tmp_path / "pyproject.toml").read_text() == pyproject
    assert r.code in (0, 2) and ("refused" in r.stdout or "already has" in r.stdout)


@pytest.mark.parametrize("config, indent", [
    ("repos:\n- repo: https://example.org/hooks\n  rev: v1\n  hooks:\n  - id: a\n", 0),
    ("# mine\nrepos:\n    - repo: https://example.org/hooks\n      rev: v1\n"
     "      hooks: [{id: a}]\n", 4),
])
def test_init_appends_the_hook_to_an_existing_pre_commit_config(cli, tmp_path, config: str,
                                                                 indent: int) -> None:
    import yaml

    (tmp_path / ".pre-commit-config.yaml").write_text(config)
    assert cli("init", tmp_path).code == 0
    after = (tmp_path / ".pre-commit-config.yaml").read_text()
    assert after.startswith(config)
    repos = yaml.safe_load(after)["repos"]
    assert [r["repo"] for r in repos] == ["https://example.org/hooks", "local"]
    assert " " * indent + "- repo: local" in after


def test_init_refuses_a_flow_style_pre_commit_config(cli, tmp_path) -> None:
    config = "repos: [{repo: local, hooks: []}]\n"
    (tmp_path / ".pre-commit-config.yaml").write_text(config)
    r = cli("init", tmp_path)
    assert r.code == 2 and "refused  .pre-commit-config.yaml" in r.stdout
    assert (tmp_path / ".pre-commit-config.yaml").read_text() == config


def test_init_force_replaces_the_files_it_owns(cli, tmp_path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "model.yaml").write_text("mine\n")
    assert cli("init", tmp_path).code == 0
    assert (tmp_path / "specs" / "model.yaml").read_text() == "mine\n"
    assert cli("init", tmp_path, "--force").code == 0
    assert "LazyLinear" in (tmp_path / "specs" / "model.yaml").read_text()


# --- progress ----------------------------------------------------------------------------------


def test_progress_shows_after_the_delay_and_is_cleared(tmp_path) -> None:
    import io

    from lazyspec import progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    with hang_guard("progress"), progress.session(stream, "lazyspec infer", enabled=True,
                                                  delay=0):
        progress.note("specs/x.yaml: 1,234 nodes: dry run")
        while "1,234 nodes" not in stream.getvalue():
            time.sleep(0.01)
    assert "specs/x.yaml: 1,234 nodes: dry run" in stream.getvalue()
    assert progress._session is None
    for thread in [t for t in threading.enumerate() if "rich" in type(t).__module__]:
        thread.join(5)  # told to stop: it ends within its refresh interval
        assert not thread.is_alive()


def test_no_progress_in_a_pipe_or_in_machine_formats(cli, in_repo, monkeypatch) -> None:
    from lazyspec import cli as cli_module
    from lazyspec import engine, progress

    assert not cli_module._progress_wanted()  # pytest's captured stderr is no terminal
    events: list[object] = []
    monkeypatch.setattr(cli_module, "_progress_wanted", lambda: True)
    monkeypatch.setattr(progress, "DELAY", 3600.0)  # open, never drawn
    real_quiet, real_run = progress.quiet, engine.run

    def quiet() -> None:
        events.append(("quiet", progress._session is not None))
        real_quiet()

    def run(request: engine.Request) -> engine.Outcome:
        events.append(("run", progress._session is not None))
        return real_run(request)

    monkeypatch.setattr(progress, "quiet", quiet)
    monkeypatch.setattr(engine, "run", run)
    assert cli("infer", "specs/mlp.yaml", "--input", "2,20", "--format", "json").code == 0
    assert events[:2] == [("quiet", True), ("run", False)]  # ended before any work
    events.clear()
    assert cli("infer", "specs/mlp.yaml", "--input", "2,20").code == 0
    assert events[0] == ("run", True)  # the table: a progress line while it works


def test_ctrl_c_clears_the_progress_line_and_exits_130(tmp_path) -> None:
    """A real terminal (a pty), a real Ctrl-C while the 70B spec is being worked on."""
    import pty

    code = ("import lazyspec.progress as p; p.DELAY = 0\n"
            "from lazyspec.cli import main; main()")
    pid, fd = pty.fork()
    if pid == 0:  # the child: lazyspec on the pty
        os.chdir(ROOT)
        os.environ.update(PYTHONPATH=str(ROOT), TERM="xterm")
        os.execv(sys.executable, [sys.executable, "-c", code, "infer", "specs/llama2-70b.yaml",
                                  "--input", "2,64:int64"])
    seen = b""
    try:
        with hang_guard("Ctrl-C on the progress line", 120):
            while b"specs/llama2-70b.yaml" not in seen:
                if select.select([fd], [], [], 1)[0]:
                    seen += os.read(fd, 4096)
            os.write(fd, b"\x03")  # the terminal sends SIGINT to lazyspec
            while True:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # the child closed the pty
                    break
                if not chunk:
                    break
                seen += chunk
            _, status = os.waitpid(pid, 0)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 130
    assert b"Traceback" not in seen
    tail = seen[seen.rindex(b"llama2-70b.yaml"):]
    assert b"\x1b[?25h" in tail and tail.rstrip().endswith(b"\x1b[2K")  # cleared, cursor back


def test_progress_is_a_no_op_without_a_session() -> None:
    from lazyspec import progress

    progress.note("nothing listens")  # the API, a language server: no session, no output
    progress.quiet()


def test_examples_and_init_run_without_torch() -> None:
    """`examples` and `init` are quick: they import no torch."""
    code = ("import sys; from lazyspec.cli import main\n"
            "try:\n    main(['examples'])\nexcept SystemExit: pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr


assert MLP  # (the catalogue's MLP: `infer()` writes it for the cases above)
