"""`lazyspec lsp` fed what a hostile (or broken) client sends: a huge Content-Length, positions
outside the document, a document over the spec size cap, a URI with a NUL. Over real stdio,
with the same client and clean-up as tests/test_lsp.py; every wait bounded, no timing asserted.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import ROOT
from lsprotocol import types
from pygls.workspace import Workspace
from test_lsp import Session, run_async

from lazyspec.lsp import features, server
from lazyspec.lsp.server import Document, build
from lazyspec.spec.yamlload import MAX_FILE_BYTES

SMALL = "inputs: {x: [2, 8]}\nparams: {d: 4}\nlayers:\n  - LazyLinear(d)\n"


def test_a_huge_content_length_stops_the_server_with_a_message_not_a_memory_error() -> None:
    p = subprocess.Popen([sys.executable, "-m", "lazyspec", "lsp"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        _, err = p.communicate(b"Content-Length: 99999999999999\r\n\r\n{}", timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(30)
    stderr = err.decode(errors="replace")
    assert p.returncode == 2, stderr
    assert "error[LS100]" in stderr and "over the 67,108,864-byte limit" in stderr, stderr
    assert "MemoryError" not in stderr and "Traceback" not in stderr, stderr


async def _ask_everything(session: Session, uri: str, pos: types.Position) -> dict[str, Any]:
    doc = types.TextDocumentIdentifier(uri)
    client = session.client
    return {
        "completion": await client.text_document_completion_async(
            types.CompletionParams(doc, pos)),
        "hover": await client.text_document_hover_async(types.HoverParams(doc, pos)),
        "definition": await client.text_document_definition_async(
            types.DefinitionParams(doc, pos)),
        "hints": await client.text_document_inlay_hint_async(types.InlayHintParams(
            doc, types.Range(pos, types.Position(pos.line + 10, 0)))),
    }


def _empty(answers: dict[str, Any]) -> bool:
    completion = answers["completion"]
    return (completion is not None and not completion.items and answers["hover"] is None
            and not answers["definition"] and not answers["hints"])


async def _far_positions(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "m.yaml"
    path.write_text(SMALL)
    session = Session(tmp_path)
    await session.start()
    seen: dict[str, Any] = {}
    try:
        uri = session.open(path)
        seen["diagnostics"] = await session.diagnostics(uri, 1)
        seen["far_line"] = await _ask_everything(session, uri, types.Position(1_000_000_000, 0))
        seen["far_column"] = await session.client.text_document_completion_async(
            types.CompletionParams(types.TextDocumentIdentifier(uri),
                                   types.Position(3, 1_000_000_000)))
    finally:
        seen["exit"] = await session.stop()
    seen["stderr"] = b"".join(session.stderr).decode(errors="replace")
    return seen


def test_positions_outside_the_document_get_empty_answers(tmp_path: Path) -> None:
    seen = run_async(_far_positions(tmp_path), "requests at positions outside the document")
    assert seen["diagnostics"] == [], seen["stderr"]
    assert _empty(seen["far_line"]), seen["far_line"]
    assert seen["far_column"] is not None  # clamped to the end of the line: an answer
    assert seen["exit"] == 0 and "Traceback" not in seen["stderr"], seen["stderr"]


async def _refused(tmp_path: Path) -> dict[str, Any]:
    big = tmp_path / "big.yaml"  # a working spec, padded over the cap with a comment
    big.write_text(SMALL + "#" + "x" * MAX_FILE_BYTES + "\n")
    session = Session(tmp_path)
    await session.start()
    seen: dict[str, Any] = {}
    try:
        uri = session.open(big)
        seen["big"] = await session.diagnostics(uri, 1)
        seen["big_answers"] = await _ask_everything(session, uri, types.Position(3, 15))
        nul = tmp_path.as_uri() + "/%00x.yaml"
        session.client.text_document_did_open(types.DidOpenTextDocumentParams(
            types.TextDocumentItem(nul, "yaml", 1, SMALL)))
        seen["nul"] = await session.diagnostics(nul, 1)
    finally:
        seen["exit"] = await session.stop()
    seen["stderr"] = b"".join(session.stderr).decode(errors="replace")
    return seen


def test_a_document_over_the_size_cap_or_with_a_nul_in_its_path_is_not_analysed(
        tmp_path: Path) -> None:
    seen = run_async(_refused(tmp_path), "a too large document and a NUL in a URI")
    [big] = seen["big"]
    assert big.code == "LS106" and "1,000,000-byte limit: not analysed" in big.message
    assert _empty(seen["big_answers"]), seen["big_answers"]  # not even `d` after `LazyLinear(`
    [nul] = seen["nul"]
    assert nul.code == "LS100" and "NUL character" in nul.message, nul.message
    assert seen["exit"] == 0 and "Traceback" not in seen["stderr"], seen["stderr"]


# --- the cost of an answer, in-process (counted, not timed) ---------------------------------


def test_lines_are_built_once_per_text(tmp_path: Path) -> None:
    srv = build()
    srv.protocol._workspace = Workspace(None)  # as after `initialize`
    srv.protocol.server_capabilities = types.ServerCapabilities()
    srv.workspace.put_text_document(types.TextDocumentItem("u", "yaml", 1, SMALL))
    srv.documents["u"] = Document("u", str(tmp_path / "m.yaml"), 1)
    first = srv.lines("u")
    assert first is not None and srv.lines("u") is first
    srv.workspace.put_text_document(types.TextDocumentItem("u", "yaml", 2, SMALL + "\n"))
    assert srv.lines("u") is not first  # a new text: built again


def test_a_column_on_a_long_line_is_found_without_walking_its_characters(monkeypatch) -> None:
    line = "é" * 200_000  # not ASCII: columns (UTF-16 units) must be counted
    lines = features.Lines(line)
    calls = []
    real = features.Lines.units
    monkeypatch.setattr(features.Lines, "units",
                        lambda self, text: calls.append(1) or real(self, text))
    assert lines.offset(types.Position(0, 150_000)) == 150_000
    assert len(calls) < 100  # a bisection, not one call per character


def test_the_size_cap_counts_bytes() -> None:
    assert not server.too_large("x" * MAX_FILE_BYTES)
    assert server.too_large("é" * (MAX_FILE_BYTES // 2 + 1))  # 2 bytes each in UTF-8


def test_a_missing_include_is_among_the_files_a_save_reruns_for(tmp_path: Path) -> None:
    """Saving an include that was missing (or broken) re-analyses the specs that include it:
    the analysis lists it among its sources, as `--watch` watches it."""
    from lazyspec.lsp.analysis import Job, analyze

    spec = tmp_path / "m.yaml"
    text = "include: [lib/common.yaml]\ninputs: {x: [2, 4]}\nlayers:\n  - LazyLinear(4)\n"
    spec.write_text(text, encoding="utf-8")
    found = analyze(Job(spec.as_uri(), 1, str(spec), text))
    assert any(d.code == "LS140" for d in found.diagnostics)
    assert str(tmp_path / "lib" / "common.yaml") in found.sources
