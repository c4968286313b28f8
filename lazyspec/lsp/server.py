"""The pygls language server: documents in, diagnostics and answers out.

Each open document keeps its newest version, the last analysis delivered for it (a dry run in
the worker, see runner.py) and its last good parse (done here, torch-free, for navigation and
completion). An edit is debounced (DEBOUNCE_S), then parsed and submitted; a result that comes
back for an older version than the document's is dropped. Diagnostics are published with the
version they belong to, and the editor is asked to refresh its inlay hints.

Untrusted input is bounded: the stream is read through `CappedReader` (stream.py); a document
over the spec size cap that the CLI uses (MAX_FILE_BYTES) or whose path cannot be a file (a NUL)
gets one diagnostic and no analysis, and requests on it answer empty. A buffer's `Lines` is built
once per text, not per request.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from lazyspec import __version__
from lazyspec.errors import usage_error
from lazyspec.lsp import features
from lazyspec.lsp.analysis import Analysis, Job
from lazyspec.lsp.runner import Runner
from lazyspec.lsp.stream import CappedReader
from lazyspec.spec.model import Spec
from lazyspec.spec.yamlload import MAX_FILE_BYTES

DEBOUNCE_S = 0.1  # an edit waits this long for the next keystroke before it is analysed
TRIGGERS = ["(", "[", ",", " "]


@dataclass
class Document:
    uri: str
    path: str
    version: int = 0
    analysis: Analysis | None = None  # the newest delivered (may be older than `version`)
    spec: Spec | None = None  # the newest buffer that parsed
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    # the text `lines` was last built from, and its Lines (None: the text is too large)
    cached: tuple[str, features.Lines | None] | None = field(default=None, repr=False)


class SpecServer(LanguageServer):
    """lazyspec's language server; `runner` is started on `initialized`."""

    def __init__(self) -> None:
        super().__init__("lazyspec", __version__)
        self.documents: dict[str, Document] = {}
        self.ops: list[str] = []  # op names, from the worker once it is up
        self.runner: Runner | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def start_runner(self) -> None:
        self.loop = asyncio.get_running_loop()
        if self.runner is None:
            self.runner = Runner(self._from_worker, self._ops_known)

    def stop_runner(self) -> None:
        if self.runner is not None:
            self.runner.close()
            self.runner = None

    # --- the runner's thread hands results to the event loop ------------------------------

    def _from_worker(self, found: Analysis) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.publish, found)

    def _ops_known(self, names: list[str]) -> None:
        self.ops = names

    # --- on the event loop -----------------------------------------------------------------

    def schedule(self, uri: str, delay: float) -> None:
        doc = self.documents.get(uri)
        if doc is None:
            return
        if doc.timer is not None:
            doc.timer.cancel()
        loop = self.loop or asyncio.get_running_loop()
        doc.timer = loop.call_later(delay, lambda: asyncio.ensure_future(self.submit(uri)))

    async def submit(self, uri: str) -> None:
        doc = self.documents.get(uri)
        if doc is None:
            return
        text_doc = self.workspace.get_text_document(uri)
        version, text = text_doc.version or 0, text_doc.source
        doc.version = version
        refusal = _refusal(doc.path, text)
        if refusal is not None:  # no analysis: say why, once, and forget older results
            doc.spec, doc.analysis = None, None
            if self.runner is not None:
                self.runner.forget(uri)
            self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
                uri, [refusal], version=version))
            return
        if self.runner is None:
            self.start_runner()
        assert self.runner is not None
        self.runner.submit(Job(uri, version, doc.path, text))
        spec = await asyncio.get_running_loop().run_in_executor(None, parse, doc.path, text)
        if spec is not None and doc.version == version:
            doc.spec = spec

    def publish(self, found: Analysis) -> None:
        doc = self.documents.get(found.uri)
        if doc is None or found.version != doc.version:
            return  # a stale result: a newer edit is on its way
        doc.analysis = found
        lines = self.lines(found.uri)
        if lines is None:
            return  # grown over the cap since: its own diagnostic is on its way
        self.text_document_publish_diagnostics(types.PublishDiagnosticsParams(
            found.uri, features.diagnostics(found, lines, doc.spec), version=found.version))
        if _refresh_supported(self):
            self.workspace_inlay_hint_refresh(None)

    def lines(self, uri: str) -> features.Lines | None:
        """The document's Lines, built once per text; None for a text over the size cap
        (requests on it answer empty: every answer would walk the whole text)."""
        text = self.workspace.get_text_document(uri).source
        doc = self.documents.get(uri)
        if doc is not None and doc.cached is not None and doc.cached[0] is text:
            return doc.cached[1]
        lines = None if too_large(text) else features.Lines(text, _encoding(self))
        if doc is not None:
            doc.cached = (text, lines)
        return lines


def too_large(text: str) -> bool:
    """Over the CLI's spec size cap, in UTF-8 bytes (the length in characters first: a
    character is at least one byte, so a huge text is refused without encoding it)."""
    return len(text) > MAX_FILE_BYTES or \
        len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES


def _refusal(path: str, text: str) -> types.Diagnostic | None:
    """Why a document is not analysed at all, as its one diagnostic; None if it is."""
    if "\x00" in path:
        code, message = "LS100", ("the document's path holds a NUL character (%00): no file "
                                  "can have that name, so it is not analysed")
    elif too_large(text):
        code, message = "LS106", (f"spec file is over the {MAX_FILE_BYTES:,}-byte limit: "
                                  "not analysed")
    else:
        return None
    start = types.Position(0, 0)
    return types.Diagnostic(types.Range(start, start), message, code=code, source="lazyspec",
                            severity=types.DiagnosticSeverity.Error)


def parse(path: str, text: str) -> Spec | None:
    """The buffer parsed (torch-free, fast): what navigation and completion read."""
    from lazyspec import engine
    from lazyspec.errors import LazyspecError

    try:
        return engine.run(engine.Request(path, text=text, stage="parse")).parsed
    except (LazyspecError, RecursionError, ValueError):
        return None


def _refresh_supported(server: LanguageServer) -> bool:
    caps = server.client_capabilities.workspace
    hints = caps.inlay_hint if caps is not None else None
    return bool(hints is not None and hints.refresh_support)


def _encoding(server: LanguageServer) -> str:
    """The column unit agreed at `initialize` (pygls picks it from what the client offers)."""
    encoding = getattr(server.server_capabilities, "position_encoding", None)
    if encoding is None:
        return "utf-16"
    return str(getattr(encoding, "value", encoding))


def path_of(uri: str) -> str:
    parsed = urlparse(uri)
    if parsed.scheme not in ("file", ""):
        return uri  # an unsaved buffer (untitled:): its includes cannot be read
    return os.path.abspath(unquote(parsed.path))


def build() -> SpecServer:
    server = SpecServer()
    _register_sync(server)
    _register_answers(server)
    return server


def _register_sync(server: SpecServer) -> None:
    @server.feature(types.INITIALIZED)
    def initialized(params: types.InitializedParams) -> None:
        server.start_runner()  # the worker imports torch while the editor opens the file

    @server.feature(types.SHUTDOWN)
    def shutdown(params: Any) -> None:
        server.stop_runner()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(params: types.DidOpenTextDocumentParams) -> None:
        uri = params.text_document.uri
        server.documents[uri] = Document(uri, path_of(uri), params.text_document.version)
        server.schedule(uri, 0.0)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(params: types.DidChangeTextDocumentParams) -> None:
        doc = server.documents.get(params.text_document.uri)
        if doc is not None:
            doc.version = params.text_document.version  # older results are stale from now
            server.schedule(doc.uri, DEBOUNCE_S)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(params: types.DidSaveTextDocumentParams) -> None:
        saved = path_of(params.text_document.uri)
        for doc in server.documents.values():  # the specs that include it read it from disk
            if doc.uri != params.text_document.uri and doc.analysis is not None and \
                    saved in doc.analysis.sources:
                server.schedule(doc.uri, 0.0)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(params: types.DidCloseTextDocumentParams) -> None:
        doc = server.documents.pop(params.text_document.uri, None)
        if doc is not None and doc.timer is not None:
            doc.timer.cancel()
        if server.runner is not None:
            server.runner.forget(params.text_document.uri)
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(params.text_document.uri, []))


def _register_answers(server: SpecServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_INLAY_HINT, types.InlayHintOptions())
    def inlay_hint(params: types.InlayHintParams) -> list[types.InlayHint]:
        doc = server.documents.get(params.text_document.uri)
        lines = server.lines(doc.uri) if doc is not None else None
        if doc is None or doc.analysis is None or lines is None:
            return []
        return features.inlay_hints(doc.analysis, lines, doc.spec, params.range)

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def hover(params: types.HoverParams) -> types.Hover | None:
        doc = server.documents.get(params.text_document.uri)
        lines = server.lines(doc.uri) if doc is not None else None
        if doc is None or lines is None:
            return None
        return features.hover(doc.analysis, doc.spec, lines, params.position)

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    def definition(params: types.DefinitionParams) -> list[types.Location]:
        doc = server.documents.get(params.text_document.uri)
        lines = server.lines(doc.uri) if doc is not None else None
        if doc is None or lines is None:
            return []
        return features.definition(doc.spec, lines, params.position)

    @server.feature(types.TEXT_DOCUMENT_COMPLETION,
                    types.CompletionOptions(trigger_characters=TRIGGERS))
    def completion(params: types.CompletionParams) -> types.CompletionList:
        doc = server.documents.get(params.text_document.uri)
        lines = server.lines(doc.uri) if doc is not None else None
        if doc is None or lines is None:
            return types.CompletionList(is_incomplete=False, items=[])
        return features.completion(doc.spec, lines, params.position, server.ops, _keys())


def _keys() -> features.Keys:
    from lazyspec.spec.parse import BLOCK_KEYS, NODE_KEYS, TOP_LEVEL_KEYS

    return features.Keys(TOP_LEVEL_KEYS, BLOCK_KEYS, NODE_KEYS)


def serve() -> int:
    """Serve over stdin and stdout until the editor says exit (or closes the pipe)."""
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print goes to stderr
    sys.stdout = sys.stderr
    server = build()
    reader = CappedReader(sys.stdin.buffer)  # pygls would read any Content-Length in one go
    try:
        server.start_io(cast(BinaryIO, reader), protocol_out)
    finally:
        server.stop_runner()
    if reader.refused is not None:
        raise usage_error(f"{reader.refused}; the language server stops",
                          "the editor (or whatever writes to the server) sent a malformed "
                          "message", code="LS100")
    return 0


__all__ = ["SpecServer", "build", "serve"]
