"""The language server's answers, from an `Analysis` (a dry run) and the buffer's parsed `Spec`.

Pure functions of plain data, returning lsprotocol types: the server calls them, and tests can
too without a server. Positions: lazyspec counts lines as YAML does (NEL and U+2028 break lines
too) and columns in characters; LSP counts lines at CR and LF only and columns in UTF-16 code
units. `Lines` converts between the two.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lsprotocol import types

from lazyspec.errors import Diagnostic, Location
from lazyspec.lsp.analysis import Analysis
from lazyspec.result import NodeRecord
from lazyspec.shapes import format_shape
from lazyspec.spec.expr import Expr
from lazyspec.spec.model import Block, Graph, Param, Spec
from lazyspec.textsafe import visible

_LSP_BREAKS = re.compile(r"\r\n|\r|\n")
_YAML_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SEVERITY = {"error": types.DiagnosticSeverity.Error, "warning": types.DiagnosticSeverity.Warning,
            "info": types.DiagnosticSeverity.Information}
MAX_SHAPES = 3  # distinct shapes in one inlay hint (a block body line runs once per call)
MAX_LISTED = 8  # calls or parameters listed in a hover


class Lines:
    """A buffer's text with its line starts, as YAML and as LSP count them."""

    def __init__(self, text: str, encoding: str = "utf-16"):
        self.text = text
        self.encoding = encoding  # what the client counts columns in (utf-16 unless agreed)
        self.starts = [0, *(m.end() for m in _LSP_BREAKS.finditer(text))]
        self.yaml_starts = [0, *(m.end() for m in _YAML_BREAKS.finditer(text))]

    def line(self, i: int) -> str:
        """LSP line `i` (0-based) without its line break."""
        if not 0 <= i < len(self.starts):
            return ""
        end = self.starts[i + 1] if i + 1 < len(self.starts) else len(self.text)
        return self.text[self.starts[i]:end].rstrip("\r\n")

    def position(self, offset: int) -> types.Position:
        i = bisect.bisect_right(self.starts, offset) - 1
        return types.Position(i, self.units(self.text[self.starts[i]:offset]))

    def holds(self, pos: types.Position) -> bool:
        """Whether the position's line is in the buffer (a client may send any number)."""
        return 0 <= pos.line < len(self.starts) and pos.character >= 0

    def offset(self, pos: types.Position) -> int:
        """The character offset of an LSP position (clamped to its line, and to the buffer)."""
        if pos.line >= len(self.starts):
            return len(self.text)
        if pos.line < 0:
            return 0
        line = self.line(pos.line)
        if self.encoding == "utf-32" or line.isascii():  # a unit is a character
            chars = min(max(pos.character, 0), len(line))
        else:  # the first prefix that reaches the column: units grow with the prefix
            chars = min(bisect.bisect_left(range(len(line) + 1), pos.character,
                                           key=lambda k: self.units(line[:k])), len(line))
        return self.starts[pos.line] + chars

    def yaml_offset(self, line: int, col: int) -> int:
        """The offset of a lazyspec position (1-based line and column), clamped to its line."""
        i = min(max(line, 1), len(self.yaml_starts)) - 1
        start = self.yaml_starts[i]
        end = self.yaml_starts[i + 1] - 1 if i + 1 < len(self.yaml_starts) else len(self.text)
        return min(start + max(col, 1) - 1, max(start, end))

    def at(self, loc: Location) -> types.Position:
        return self.position(self.yaml_offset(loc.line, loc.col))

    def lsp_line(self, loc: Location) -> int:
        return self.at(loc).line

    def end_of(self, line: int) -> types.Position:
        return types.Position(line, self.units(self.line(line)))

    def word_at(self, pos: types.Position) -> tuple[str, int] | None:
        """The identifier under the cursor and its offset."""
        if not self.holds(pos):
            return None
        line, start = self.line(pos.line), self.starts[min(pos.line, len(self.starts) - 1)]
        here = self.offset(pos) - start
        for m in _WORD.finditer(line):
            if m.start() <= here <= m.end():
                return m.group(), start + m.start()
        return None

    def word_range(self, offset: int) -> types.Range:
        """From `offset` to the end of the word (or expression) that starts there."""
        m = re.compile(r"[^\s,\]\}#]+").match(self.text, offset)
        end = m.end() if m else offset
        return types.Range(self.position(offset), self.position(max(end, offset)))


    def units(self, text: str) -> int:
        """The length of `text` in the client's column units."""
        if self.encoding == "utf-8":
            return len(text.encode("utf-8", "surrogatepass"))
        if self.encoding == "utf-32":
            return len(text)
        return len(text.encode("utf-16-le", "surrogatepass")) // 2


def same_file(a: str, b: str) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)


def uri_of(path: str) -> str:
    return Path(os.path.abspath(path)).as_uri()


# --- diagnostics ----------------------------------------------------------------------------


def diagnostics(found: Analysis, lines: Lines, spec: Spec | None) -> list[types.Diagnostic]:
    """Every problem of the run, at its place in this file; a problem in an included file at
    the `include:` entry that brings it in."""
    return [_diagnostic(d, found.path, lines, spec) for d in found.diagnostics]


def _diagnostic(d: Diagnostic, path: str, lines: Lines, spec: Spec | None) -> types.Diagnostic:
    loc, prefix = d.location, ""
    if loc is not None and not same_file(loc.path, path):
        prefix = f"{visible(str(loc))}: "
        loc = _include_entry(loc.path, path, spec)
    if loc is None:
        where = types.Range(types.Position(0, 0), lines.end_of(0))
    else:
        where = lines.word_range(lines.yaml_offset(loc.line, loc.col))
        if where.start == where.end:  # at the end of a line: mark the line
            where = types.Range(types.Position(where.start.line, 0), lines.end_of(where.start.line))
    text = [prefix + visible(d.message)]
    if len(d.trail) > 1:  # inside a block: the calls that lead there
        text.append("in: " + " > ".join(visible(t) for t in d.trail))
    text += [visible(n) for n in d.notes]
    if d.hint:
        text.append("hint: " + visible(d.hint))
    return types.Diagnostic(where, "\n".join(text), severity=SEVERITY.get(
        d.severity, types.DiagnosticSeverity.Error), code=d.code, source="lazyspec")


def _include_entry(target: str, path: str, spec: Spec | None) -> Location | None:
    """The `include:` entry of this file through which `target` was read."""
    if spec is None:
        return None
    entries = [(os.path.join(os.path.dirname(path), inc), loc) for inc, loc in spec.includes
               if same_file(loc.path, path)]
    for included, loc in entries:
        if same_file(included, target):
            return loc
    return entries[0][1] if entries else None  # read through a nested include


# --- inlay hints ----------------------------------------------------------------------------


def inlay_hints(found: Analysis, lines: Lines, spec: Spec | None,
                window: types.Range | None = None) -> list[types.InlayHint]:
    """At the end of each node's line, its output shape (`-> [2, 256]`; every distinct shape
    where a block's line runs once per call) and, for a block call, its parameter count; at a
    block's definition, the parameters of each call."""
    blocks = spec.blocks if spec is not None else {}
    by_line: dict[int, list[NodeRecord]] = {}
    for n in found.nodes:
        if n.location is not None and same_file(n.location.path, found.path):
            by_line.setdefault(lines.lsp_line(n.location), []).append(n)
    labels = {line: _node_label(nodes, blocks) for line, nodes in by_line.items()}
    for name, block in blocks.items():
        calls = [n for n in found.nodes if n.op == name]
        if calls and same_file(block.loc.path, found.path):
            line = lines.lsp_line(block.loc)
            label = f"{_distinct((f'{n.params:,}' for n in calls), 'counts')} params per call"
            labels[line] = labels[line] + " · " + label if line in labels else label
    return [types.InlayHint(lines.end_of(line), label, kind=types.InlayHintKind.Type,
                            padding_left=True)
            for line, label in sorted(labels.items())
            if window is None or window.start.line <= line <= window.end.line]


def shape_of(n: NodeRecord) -> str:
    if n.skipped:
        return f"skipped ({n.skipped})"
    return n.symbolic or format_shape(n.output)


def _node_label(nodes: list[NodeRecord], blocks: dict[str, Block]) -> str:
    label = "-> " + _distinct((shape_of(n) for n in nodes), "shapes")
    if any(n.op in blocks for n in nodes):
        label += " · " + _distinct((f"{n.params:,}" for n in nodes if n.op in blocks),
                                   "counts") + " params"
    return label


def _distinct(items: Iterable[str], what: str) -> str:
    seen = list(dict.fromkeys(items))
    shown = " | ".join(seen[:MAX_SHAPES])
    return shown + (f" | ... ({len(seen)} {what})" if len(seen) > MAX_SHAPES else "")


# --- hover ----------------------------------------------------------------------------------


def hover(found: Analysis | None, spec: Spec | None, lines: Lines,
          pos: types.Position) -> types.Hover | None:
    """On a param: its value. On a block or op name: its signature. On a node's line: its
    output, parameters with shapes, FLOPs and the op's signature."""
    if not lines.holds(pos):
        return None
    word = lines.word_at(pos)
    text = None
    if word is not None and spec is not None:
        text = _param_hover(word[0], spec, lines, pos, found)
    if text is None and found is not None:
        text = _node_hover(found, lines, pos.line)
    if text is None and word is not None and found is not None and word[0] in found.signatures:
        text = f"```\n{found.signatures[word[0]]}\n```"
    if text is None:
        return None
    return types.Hover(types.MarkupContent(types.MarkupKind.Markdown, text))


def _param_hover(word: str, spec: Spec, lines: Lines, pos: types.Position,
                 found: Analysis | None) -> str | None:
    block = enclosing_block(spec, lines, pos.line)
    if block is not None and word in block.params:
        p = block.params[word]
        return (f"**{word}**: param of block `{block.name}`, default `{value_text(p.value)}` "
                f"(line {p.loc.line}); each call may set its own")
    if word not in spec.params:
        return None
    p = spec.params[word]
    resolved = found.values.get(word) if found is not None else None
    text = f"**{word}** = `{resolved if resolved is not None else value_text(p.value)}`"
    declared = value_text(p.value)
    if resolved is not None and declared != resolved:
        text += f"\n\nwritten `{declared}` (line {p.loc.line})"
    else:
        text += f"\n\nline {p.loc.line}"
    return text


def _node_hover(found: Analysis, lines: Lines, line: int) -> str | None:
    nodes = [n for n in found.nodes if n.location is not None
             and same_file(n.location.path, found.path) and lines.lsp_line(n.location) == line]
    if not nodes:
        return None
    first = nodes[0]
    out = [f"**{visible(first.path)}** `{visible(first.op)}` -> `{shape_of(first)}`"]
    if len(nodes) > 1:
        out[0] = f"`{visible(first.op)}`, {len(nodes)} calls:"
        out += [f"- {visible(n.path)} -> `{shape_of(n)}`" for n in nodes[:MAX_LISTED]]
    params = [p for p in found.params if p.location is not None
              and same_file(p.location.path, found.path) and lines.lsp_line(p.location) == line]
    if params:
        out.append("\nparameters:")
        out += [f"- {visible(p.path)} `{format_shape(p.shape)}` ({p.count:,})"
                for p in params[:MAX_LISTED]]
        if len(params) > MAX_LISTED:
            out.append(f"- ... {len(params) - MAX_LISTED} more")
    flops = [n.flops for n in nodes]
    out.append("\nFLOPs: " + ("unknown (an op the counter cannot count)" if None in flops
                             else f"{sum(f for f in flops if f is not None):,}"))
    if first.op in found.signatures:
        out.append(f"\n```\n{found.signatures[first.op]}\n```")
    if found.inputs:
        out.append(f"\n_inputs: {visible(found.inputs)}_")
    return "\n".join(out)


def value_text(value: object) -> str:
    """A param's value as written: an expression's text, a list with its items."""
    if isinstance(value, Expr):
        return visible(value.text)
    if isinstance(value, list):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return visible(repr(value) if isinstance(value, str) else str(value))


# --- scopes, definition, completion ---------------------------------------------------------


def enclosing_block(spec: Spec, lines: Lines, line: int) -> Block | None:
    """The block of this file whose definition holds the LSP line, by indentation."""
    for block in spec.blocks.values():
        if not same_file(block.loc.path, spec.path):
            continue  # an included block: its lines are another file's
        start = lines.lsp_line(block.loc)
        if line < start:
            continue
        indent = _indent(lines.line(start))
        end = start + 1
        while end < len(lines.starts):
            text = lines.line(end)
            if text.strip() and not text.lstrip().startswith("#") and _indent(text) <= indent:
                break
            end += 1
        if line < end:
            return block
    return None


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" "))


def _scope(spec: Spec, lines: Lines, line: int) -> tuple[Graph, dict[str, Param]]:
    """The graph the line is in (a block's or the model's) and the params visible there."""
    block = enclosing_block(spec, lines, line)
    if block is None:
        return spec.graph, dict(spec.params)
    return block.graph, {**spec.params, **block.params}


def definition(spec: Spec | None, lines: Lines, pos: types.Position) -> list[types.Location]:
    """Where a block, a param, a node named in `in:` / `share:`, or an input is defined."""
    word = lines.word_at(pos)  # None too for a position outside the buffer
    if spec is None or word is None:
        return []
    name = word[0]
    graph, params = _scope(spec, lines, pos.line)
    target: Location | None = None
    if name in params:
        target = params[name].loc
    elif name in spec.blocks:
        target = spec.blocks[name].loc
    else:
        target = next((n.loc for n in graph.layers if n.name == name), None) or \
            next((i.loc for i in graph.inputs if i.name == name), None)
    if target is None:
        return []
    return [types.Location(uri_of(target.path), _range_in(target))]


def _range_in(loc: Location) -> types.Range:
    """A location in any file (an include): its line and column, without reading the file
    (columns past ASCII may be off by the UTF-16 difference; the line is right)."""
    start = types.Position(max(loc.line - 1, 0), max(loc.col - 1, 0))
    return types.Range(start, start)


@dataclass(frozen=True)
class Keys:
    top: tuple[str, ...]
    block: tuple[str, ...]
    node: tuple[str, ...]


FUNCTIONS = ("min", "max", "abs", "int", "float", "round", "ceil", "floor", "len")
_OP_CONTEXT = re.compile(r"^\s*-\s*(?:[A-Za-z_]\w*\s*:\s*)?[\w.]*$")
_REF_CONTEXT = re.compile(r"^\s*(?:-\s*)?(?:in|share)\s*:\s*\[?(?:[\w.-]+\s*,\s*)*[\w.]*$")
_KEY_CONTEXT = re.compile(r"^(\s*)(?:-\s+)?[\w-]*$")


def completion(spec: Spec | None, lines: Lines, pos: types.Position, ops: list[str],
               keys: Keys) -> types.CompletionList:
    """Op and block names after `- ` (or `- name: `); node and input names after `in:` or
    `share:`; keys at the start of a line; params and the expression functions elsewhere."""
    if not lines.holds(pos):
        return types.CompletionList(is_incomplete=False, items=[])
    before = lines.line(pos.line)[:lines.offset(pos) - lines.starts[pos.line]]
    blocks = list(spec.blocks) if spec is not None else []
    graph, params = _scope(spec, lines, pos.line) if spec is not None else (None, {})
    kind = types.CompletionItemKind
    if _OP_CONTEXT.match(before):
        items = _items(blocks, kind.Class, "block") + _items(ops, kind.Class, "op")
    elif _REF_CONTEXT.match(before) and graph is not None:
        names = [n.name for n in graph.layers if n.name] + [i.name for i in graph.inputs]
        items = _items(names, kind.Reference, "node or input")
    elif m := _KEY_CONTEXT.match(before):
        indent = len(m.group(1))
        found = keys.top if indent == 0 else (*keys.node, *keys.block)
        items = _items(dict.fromkeys(found), kind.Keyword, "key")
    else:
        items = _items(params, kind.Variable, "param") + _items(FUNCTIONS, kind.Function,
                                                                "function")
    return types.CompletionList(is_incomplete=False, items=items)


def _items(names: Iterable[str], kind: types.CompletionItemKind,
           detail: str) -> list[types.CompletionItem]:
    return [types.CompletionItem(label=n, kind=kind, detail=detail) for n in names]
