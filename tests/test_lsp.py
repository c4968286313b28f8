"""`lazyspec lsp`: the language server, end to end over real stdio, and its parts in-process.

The end-to-end test starts `python -m lazyspec lsp` with pygls's own LanguageClient, opens a
document, waits for its diagnostics, edits it and waits for the new ones and the new inlay
hints, then shuts the server down and checks that it and its worker are gone. Every wait is
bounded by `hang_guard` (generous: the worker imports torch on a loaded machine); no timing is
asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, hang_guard
from lsprotocol import types
from pygls.lsp.client import LanguageClient

from lazyspec.errors import Location
from lazyspec.lsp import features
from lazyspec.lsp.analysis import Analysis, Job, analyze
from lazyspec.lsp.runner import Runner
from lazyspec.lsp.server import Document, build, parse
from lazyspec.spec.parse import BLOCK_KEYS, NODE_KEYS, TOP_LEVEL_KEYS

SPEC = """\
include: [lib.yaml]
params: {d: 256}
blocks:
  Head:
    params: {n: 10}
    layers:
      - fc: LazyLinear(n)
layers:
  - LazyLinear(d)
  - act: ReLU
  - out: Head(width)
    in: act
"""
LIB = "params: {width: 10}\n"
PYPROJECT = "[tool.lazyspec]\n[[tool.lazyspec.run]]\nspec = 'm.yaml'\ninputs = ['2,20']\n"
KEYS = features.Keys(TOP_LEVEL_KEYS, BLOCK_KEYS, NODE_KEYS)


def project(tmp_path: Path, spec: str = SPEC) -> Path:
    (tmp_path / "m.yaml").write_text(spec)
    (tmp_path / "lib.yaml").write_text(LIB)
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    return tmp_path / "m.yaml"


# --- end to end, over stdio -----------------------------------------------------------------


class Session:
    """A client talking to `lazyspec lsp` in a subprocess."""

    def __init__(self, cwd: Path):
        self.cwd = cwd
        self.client = LanguageClient("lazyspec-tests", "1")
        self.published: list[types.PublishDiagnosticsParams] = []
        self.arrived = asyncio.Event()
        self.stderr: list[bytes] = []

        @self.client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def diagnostics(params: types.PublishDiagnosticsParams) -> None:
            self.published.append(params)
            self.arrived.set()

        @self.client.feature(types.WORKSPACE_INLAY_HINT_REFRESH)
        def refresh(params: Any) -> None:
            return None

    async def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        await self.client.start_io(sys.executable, "-m", "lazyspec", "lsp", env=env,
                                   cwd=str(self.cwd))
        self.drain = asyncio.ensure_future(self._drain())
        capabilities = types.ClientCapabilities(workspace=types.WorkspaceClientCapabilities(
            inlay_hint=types.InlayHintWorkspaceClientCapabilities(refresh_support=True)))
        await self.client.initialize_async(types.InitializeParams(
            capabilities=capabilities, root_uri=self.cwd.as_uri()))
        self.client.initialized(types.InitializedParams())

    async def _drain(self) -> None:
        # The server's stderr is a pipe nobody else reads: a full pipe would block the server.
        process = self.client._server
        assert process is not None and process.stderr is not None
        while line := await process.stderr.readline():
            self.stderr.append(line)

    def open(self, path: Path) -> str:
        uri = path.as_uri()
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(
            types.TextDocumentItem(uri, "yaml", 1, path.read_text())))
        return uri

    def change(self, uri: str, version: int, text: str) -> None:
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            [types.TextDocumentContentChangeWholeDocument(text=text)]))

    async def diagnostics(self, uri: str, version: int) -> list[types.Diagnostic]:
        while True:
            for p in self.published:
                if p.uri == uri and p.version == version:
                    return list(p.diagnostics)
            self.arrived.clear()
            await self.arrived.wait()

    async def hints(self, uri: str) -> list[tuple[int, str]]:
        got = await self.client.text_document_inlay_hint_async(types.InlayHintParams(
            types.TextDocumentIdentifier(uri), types.Range(types.Position(0, 0),
                                                           types.Position(1000, 0))))
        return [(h.position.line, str(h.label)) for h in got or []]

    def worker_pids(self) -> list[int]:
        """Every process under the server: the fork server, the worker forked from it,
        multiprocessing's resource tracker."""
        process = self.client._server
        assert process is not None
        found, todo = [], [process.pid]
        while todo:
            pid = todo.pop()
            for task in Path(f"/proc/{pid}/task").glob("*"):
                with contextlib.suppress(OSError):
                    todo += [int(c) for c in (task / "children").read_text().split()]
            found.append(pid)
        return found[1:]

    async def stop(self) -> int | None:
        process = self.client._server
        assert process is not None
        try:
            await asyncio.wait_for(self.client.shutdown_async(None), 60)
            self.client.exit(None)
            await asyncio.wait_for(process.wait(), 60)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await asyncio.wait_for(self.client.stop(), 30)
            self.drain.cancel()
        return process.returncode


def run_async(coroutine: Any, what: str, seconds: float = 240) -> Any:
    with hang_guard(what, seconds):
        return asyncio.run(coroutine)


async def _edit_session(tmp_path: Path) -> dict[str, Any]:
    spec = project(tmp_path)
    session = Session(tmp_path)
    seen: dict[str, Any] = {}
    await session.start()
    try:
        uri = session.open(spec)
        seen["opened"] = await session.diagnostics(uri, 1)
        seen["hints"] = await session.hints(uri)
        seen["workers"] = session.worker_pids()
        session.change(uri, 2, SPEC.replace("LazyLinear(d)", "Linear(30, d)"))
        seen["mismatch"] = await session.diagnostics(uri, 2)
        session.change(uri, 3, SPEC.replace("ReLU", "ReLUU"))
        seen["unknown_op"] = await session.diagnostics(uri, 3)
        session.change(uri, 4, SPEC.replace("{d: 256}", "{d: 64}"))
        seen["fixed"] = await session.diagnostics(uri, 4)
        seen["new_hints"] = await session.hints(uri)
        seen["hover"] = await session.client.text_document_hover_async(types.HoverParams(
            types.TextDocumentIdentifier(uri), types.Position(8, 6)))
        library = session.open(tmp_path / "lib.yaml")
        seen["library"] = await session.diagnostics(library, 1)
        (tmp_path / "lib.yaml").write_text("params: {width: 12}\n")  # saved in the editor
        before = len(session.published)
        session.client.text_document_did_save(types.DidSaveTextDocumentParams(
            types.TextDocumentIdentifier(library)))
        while not any(p.uri == uri for p in session.published[before:]):
            session.arrived.clear()
            await session.arrived.wait()
        seen["after_save"] = await session.hints(uri)
    finally:
        seen["exit"] = await session.stop()
    seen["stderr"] = b"".join(session.stderr).decode(errors="replace")
    return seen


def test_lsp_over_stdio_diagnostics_and_inlay_hints_follow_edits(tmp_path: Path) -> None:
    seen = run_async(_edit_session(tmp_path), "an LSP session over stdio")
    assert seen["opened"] == [], seen["stderr"]
    assert (8, "-> [2, 256]") in seen["hints"]  # `- LazyLinear(d)` at 0-based line 8
    assert (10, "-> [2, 10] · 2,570 params") in seen["hints"]  # the block call
    assert (3, "2,570 params per call") in seen["hints"]  # the block's definition
    [mismatch] = seen["mismatch"]
    assert (mismatch.code, mismatch.range.start.line) == ("LS201", 8)
    assert "shape mismatch in node '0' (Linear)" in mismatch.message
    assert "hint: set in_features to 20" in mismatch.message
    [unknown] = seen["unknown_op"]
    assert unknown.code == "LS120" and unknown.range.start.line == 9
    assert "did you mean 'ReLU'" in unknown.message
    assert seen["fixed"] == []
    assert (8, "-> [2, 64]") in seen["new_hints"]
    assert seen["library"] == []  # an include-only file: no `layers:` is no error
    assert (10, "-> [2, 12] · 780 params") in seen["after_save"]  # the include was read again
    assert "`LazyLinear`" in seen["hover"].contents.value
    assert "0.weight `[64, 20]`" in seen["hover"].contents.value
    assert seen["exit"] == 0
    assert "Traceback" not in seen["stderr"], seen["stderr"]
    assert len(seen["workers"]) >= 2  # the fork server and the worker forked from it
    with hang_guard("the worker and the fork server end with the server", 60):
        while any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in seen["workers"]):
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_new_commands_help_loads_neither_torch_nor_pygls_nor_watchfiles() -> None:
    code = ("import sys\n"
            "for name in ('torch', 'pygls', 'lsprotocol', 'watchfiles'):\n"
            "    sys.modules[name] = None\n"
            "from lazyspec.cli import main\n"
            "main(sys.argv[1:])\n")
    for args in (["lsp", "--help"], ["check", "--help"], ["infer", "--help"], ["--help"]):
        p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                           text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert p.returncode == 0, (args, p.stderr)


# --- the server's own rules, in-process -----------------------------------------------------


def test_a_result_for_an_older_version_is_never_published(tmp_path: Path) -> None:
    server = build()
    server.protocol.client_capabilities = types.ClientCapabilities()  # as after `initialize`
    published: list[int | None] = []
    server.text_document_publish_diagnostics = (  # type: ignore[method-assign]
        lambda params: published.append(params.version))
    server.lines = lambda uri: features.Lines("")  # type: ignore[method-assign]
    server.documents["u"] = Document("u", str(tmp_path / "m.yaml"), version=3)
    server.publish(Analysis("u", 2, str(tmp_path / "m.yaml")))  # superseded by version 3
    assert published == []
    server.publish(Analysis("u", 3, str(tmp_path / "m.yaml")))
    assert published == [3]


def test_a_newer_edit_cuts_a_slow_run_and_a_dead_worker_is_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Phase 1: a slow spec runs; a newer version arrives; the slow run is cut (the worker is
    killed and replaced) and never delivered. Phase 2: a spec whose op kills the worker gets a
    diagnostic, and the next job runs in a fresh worker."""
    (tmp_path / "killer.py").write_text(
        "import os, signal\nfrom torch import nn\n"
        "class Boom(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n")
    (tmp_path / "pyproject.toml").write_text("[tool.lazyspec]\nallow = ['killer']\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # the spawned worker starts with this sys.path
    slow = ("inputs: {x: [2, 8]}\nblocks:\n  B:\n    layers:\n" + "      - LazyLinear(8)\n" * 8
            + "layers:\n  - op: B\n    repeat: 2000\n")
    path = str(tmp_path / "m.yaml")
    delivered: list[Analysis] = []
    got = threading.Event()

    def deliver(found: Analysis) -> None:
        delivered.append(found)
        got.set()

    runner = Runner(deliver, cut_after=0.0)
    try:
        runner.submit(Job("u", 1, path, slow))
        with hang_guard("the slow run starts", 240):
            while runner.in_flight != ("u", 1):
                time.sleep(0.01)
        runner.submit(Job("u", 2, path, "inputs: {x: [2, 8]}\nlayers:\n  - LazyLinear(3)\n"))
        _wait(got, "the newer version's result")
        assert [(a.version, a.diagnostics) for a in delivered] == [(2, [])]
        assert runner.cut_runs == 1 and runner.started_workers == 2
        status = Path(f"/proc/{runner.worker_pid}/status").read_text()
        blocked = int(status.split("SigBlk:")[1].split()[0], 16)
        assert blocked & (1 << (signal.SIGINT - 1))  # Ctrl-C in a terminal is the server's
        got.clear()
        runner.submit(Job("u", 3, path, "inputs: {x: [2, 8]}\nlayers:\n  - killer.Boom\n"))
        _wait(got, "the crashed run's diagnostic")
        [crash] = delivered[-1].diagnostics
        assert crash.code == "LS303" and "ended (signal SIGKILL)" in crash.message
        got.clear()
        runner.submit(Job("u", 4, path, "inputs: {x: [2, 8]}\nlayers:\n  - LazyLinear(5)\n"))
        _wait(got, "a run in a fresh worker")
        assert delivered[-1].version == 4 and delivered[-1].diagnostics == []
        assert runner.started_workers == 3
    finally:
        runner.close()
    assert runner.worker_pid is None


def _wait(event: threading.Event, what: str) -> None:
    with hang_guard(what, 240):
        while not event.wait(0.05):
            pass


# --- what the answers hold, in-process ------------------------------------------------------


@pytest.fixture
def analysed(tmp_path: Path) -> Iterator[tuple[Analysis, Any, features.Lines]]:
    path = project(tmp_path)
    text = path.read_text()
    yield analyze(Job("u", 1, str(path), text)), parse(str(path), text), features.Lines(text)


def test_hover_on_a_param_shows_its_value_and_on_an_op_its_signature(analysed) -> None:
    found, spec, lines = analysed
    on_param = features.hover(found, spec, lines, types.Position(1, 10))  # `d` in params
    assert on_param is not None and "**d** = `256`" in on_param.contents.value
    on_block_param = features.hover(found, spec, lines, types.Position(6, 24))  # `n` in Head
    assert on_block_param is not None and "param of block `Head`" in \
        on_block_param.contents.value
    on_op = features.hover(found, spec, lines, types.Position(8, 6))
    assert on_op is not None and "LazyLinear(out_features" in on_op.contents.value


def test_definition_of_a_block_a_param_a_reference_and_an_included_param(analysed,
                                                                         tmp_path) -> None:
    _found, spec, lines = analysed

    def where(line: int, col: int) -> tuple[str, int]:
        [loc] = features.definition(spec, lines, types.Position(line, col))
        return Path(loc.uri).name, loc.range.start.line

    assert where(10, 12) == ("m.yaml", 3)  # Head(width) -> the block
    assert where(10, 18) == ("lib.yaml", 0)  # width -> lib.yaml's params
    assert where(11, 9) == ("m.yaml", 9)  # in: act -> the node
    assert where(8, 15) == ("m.yaml", 1)  # LazyLinear(d) -> params


def test_completion_by_context(analysed) -> None:
    _found, spec, _lines = analysed

    def labels(text: str, line: int = 0) -> set[str]:
        here = features.Lines(text)
        end = types.Position(line, len(here.line(line)))
        return {i.label for i in features.completion(spec, here, end, ["LazyLinear", "ReLU"],
                                                     KEYS).items}

    assert {"Head", "LazyLinear", "ReLU"} <= labels("layers:\n  - Lazy", 1)
    assert {"Head", "LazyLinear"} <= labels("layers:\n  - name: La", 1)
    assert labels(SPEC + "  - op: Add\n    in: [ac", 13) == {"act", "out"}
    assert {"layers", "params", "blocks"} <= labels("lay")
    assert {"d", "width", "max"} <= labels("layers:\n  - LazyLinear(2 * ", 1)


def test_a_problem_in_an_include_is_shown_at_its_include_entry(tmp_path: Path) -> None:
    path = project(tmp_path)
    (tmp_path / "lib.yaml").write_text("params:\n  width: ${nope + 1}\n")
    text = path.read_text()
    found = analyze(Job("u", 1, str(path), text))
    shown = features.diagnostics(found, features.Lines(text), parse(str(path), text))
    [problem] = shown
    assert problem.code == "LS124" and problem.range.start.line == 0  # `include: [lib.yaml]`
    assert "lib.yaml:2:" in problem.message and "nope" in problem.message


def test_lines_count_as_yaml_for_lazyspec_and_as_lsp_for_the_editor() -> None:
    text = "# a\u2028b\nlayers:\n  - \U0001f600: Bad\n"
    lines = features.Lines(text)
    # lazyspec's line 3 (U+2028 broke line 1) is the editor's line 1
    assert lines.at(Location("m.yaml", 3, 1)).line == 1
    # the emoji is two UTF-16 units: `Bad` starts at unit 8 of line 2
    assert lines.at(Location("m.yaml", 4, 8)) == types.Position(2, 8)
    assert features.Lines(text, "utf-32").at(Location("m.yaml", 4, 8)).character == 7


def test_no_input_shapes_is_a_note_and_an_include_only_file_is_not_an_error(
        tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    found = analyze(Job("u", 1, str(path), "layers:\n  - LazyLinear(3)\n"))
    assert [(d.severity, d.message) for d in found.diagnostics] == [
        ("info", "no shape for input 'input'")]
    library = analyze(Job("u", 1, str(tmp_path / "lib.yaml"), "params: {d: 4}\n"))
    assert library.diagnostics == []
    workflow = "name: CI\non: [push]\njobs: {}\n"  # any YAML the editor opens: not a spec
    assert analyze(Job("u", 1, str(tmp_path / "ci.yml"), workflow)).diagnostics == []
    typo = analyze(Job("u", 1, str(tmp_path / "lib.yaml"), "lazyspec: 1\nparamz: {d: 4}\n"))
    assert [d.code for d in typo.diagnostics] == ["LS110"]  # a lazyspec file: its typo shows


def test_a_block_line_shows_each_calls_shape(tmp_path: Path) -> None:
    text = ("inputs: {x: [2, 8]}\nblocks:\n  B:\n    params: {w: 4}\n    layers:\n"
            "      - LazyLinear(w)\nlayers:\n  - B(4)\n  - B(6)\n")
    path = tmp_path / "m.yaml"
    found = analyze(Job("u", 1, str(path), text))
    hints = features.inlay_hints(found, features.Lines(text), parse(str(path), text))
    assert (5, "-> [2, 4] | [2, 6]") in [(h.position.line, h.label) for h in hints]
