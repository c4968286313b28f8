"""Safe YAML reading into a tree of located nodes.

A spec is data: no aliases or anchors, no tags, no duplicate keys, one document, bounded size and
depth. Each node keeps its 1-based line and column so every later error can point at the source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from lazyspec.errors import Diagnostic, Location, SpecError
from lazyspec.spec.expr import MAX_INT_BITS  # numbers in YAML are held to the same limit
from lazyspec.textsafe import source_lines

MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 64

# The only tags a plain YAML value may resolve to. Anything else (explicit tags, timestamps,
# !!binary, !!python/...) is either refused or kept as the string the user wrote.
_PLAIN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}


@dataclass
class YNode:
    loc: Location


@dataclass
class YScalar(YNode):
    value: Any  # str | int | float | bool | None
    style: str | None = None  # None for plain, "'" or '"' for quoted, "|" / ">" for blocks
    raw: str = ""  # the text as written (for column arithmetic in op strings)


@dataclass
class YSeq(YNode):
    items: list[YNode] = field(default_factory=list)
    flow: bool = False


@dataclass
class YMap(YNode):
    items: list[tuple[YScalar, YNode]] = field(default_factory=list)
    flow: bool = False

    def get(self, key: str) -> YNode | None:
        for k, v in self.items:
            if k.value == key:
                return v
        return None

    def keys(self) -> list[str]:
        return [str(k.value) for k, _ in self.items]


def _loc(path: str, mark: Any) -> Location:
    if mark is None:
        return Location(path, 1, 1)
    return Location(path, mark.line + 1, mark.column + 1)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader's composer with aliases, anchors, explicit tags and deep nesting refused."""

    def __init__(self, stream: str, path: str):
        super().__init__(stream)
        self._path = path
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            raise _Refused("LS102", "YAML aliases are not allowed in a spec", event.start_mark,
                           "write the value out in full (specs are data, not templates)")
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise _Refused("LS102", f"YAML anchor '&{anchor}' is not allowed in a spec",
                           event.start_mark, "remove the anchor and write each value out in full")
        tag = getattr(event, "tag", None)
        if tag is not None and tag != "!":
            raise _Refused("LS104", f"YAML tag '{tag}' is not allowed in a spec", event.start_mark,
                           "remove the tag; a spec holds only plain values")
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused("LS107", f"nesting deeper than {MAX_DEPTH} levels", event.start_mark,
                           "flatten the structure")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Refused(Exception):
    def __init__(self, code: str, message: str, mark: Any, hint: str | None = None):
        super().__init__(message)
        self.code, self.message, self.mark, self.hint = code, message, mark, hint


def load_yaml(text: str, path: str, max_bytes: int | None = MAX_FILE_BYTES) -> YNode:
    """Parse one YAML document into located nodes, or raise SpecError. `max_bytes=None` reads
    any size (lock files), as strictly otherwise."""
    if max_bytes is not None and len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise SpecError([Diagnostic("LS106", f"spec file is larger than {max_bytes:,} bytes",
                                    Location(path, 1, 1), hint="split it with `include:`")])
    loader: _StrictLoader | None = None
    try:
        loader = _StrictLoader(text, path)  # the reader checks characters here already
        node = loader.get_single_node()
    except _Refused as e:
        raise SpecError([Diagnostic(e.code, e.message, _loc(path, e.mark), hint=e.hint)]) from None
    except yaml.composer.ComposerError as e:
        if "another document" in str(e.problem or ""):
            raise SpecError([Diagnostic(
                "LS105", "a spec file holds exactly one YAML document", _loc(path, e.problem_mark),
                hint="remove the '---' separator and what follows")]) from None
        raise SpecError([_yaml_diag(e, path, text)]) from None
    except yaml.MarkedYAMLError as e:
        raise SpecError([_yaml_diag(e, path, text)]) from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow
        raise SpecError([Diagnostic(
            "LS101", f"YAML error: unacceptable character #x{_code(e.character):04x}",
            _offset_location(text, path, e.position),
            hint="remove the control character, or write it as an escape in double quotes")]) \
            from None
    except yaml.YAMLError as e:
        raise SpecError([Diagnostic("LS101", f"YAML error: {e}", Location(path, 1, 1))]) from None
    except RecursionError:
        raise SpecError([Diagnostic("LS107", "nesting too deep", Location(path, 1, 1))]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        return YMap(Location(path, 1, 1))
    problems: list[Diagnostic] = []
    tree = _convert(node, path, text.splitlines(), problems)
    if problems:
        raise SpecError(problems)
    return tree


def _code(character: Any) -> int:
    return character if isinstance(character, int) else ord(str(character)[:1] or "\0")


def _offset_location(text: str, path: str, offset: int) -> Location:
    before = source_lines(text[:offset] + ".")  # the dot: the line the offset is on
    return Location(path, len(before), len(before[-1]))


def _yaml_diag(e: yaml.MarkedYAMLError, path: str, text: str) -> Diagnostic:
    mark = e.problem_mark or e.context_mark
    message = str(e.problem or e.context or "invalid YAML").strip()
    hint = None
    loc = _loc(path, mark)
    lines = text.splitlines()
    if "mapping values are not allowed" in message:
        hint = _node_keys_hint(lines, loc.line) or \
            "quote the value, or put a space after ':' only where a key ends"
    if lines and loc.line > len(lines):  # at the end of the file: point after the last line
        loc = Location(path, len(lines), len(lines[-1]) + 1)
    return Diagnostic("LS101", f"YAML syntax error: {message}", loc, hint=hint)


HINT_LINE_CHARS = 400  # a longer line gets the general hint: no op string is that long


def _node_keys_hint(lines: list[str], line: int) -> str | None:
    """`- Flatten(1)` with `in:` on the next line: an op string cannot take keys; show the
    mapping form of that node."""
    if not 1 < line <= len(lines) or len(lines[line - 2]) > HINT_LINE_CHARS:
        return None
    # the comment cut and the op's trailing spaces stripped first: a pattern that matched
    # them took time quadratic in the line's length
    before = lines[line - 2].partition("#")[0].rstrip()
    item = re.match(r"^(\s*)-\s+([^:#\s][^:#]*)$", before)
    key = re.match(r"^(\s*)([A-Za-z_]\w*)\s*:", lines[line - 1])
    if not item or not key or len(key.group(1)) <= len(item.group(1)):
        return None
    op = item.group(2)
    return (f"`- {op}` is an op string, so it cannot take `{key.group(2)}:`; give the node "
            f"its keys as a mapping: `- op: {op}` (or name it: `- name: {op}`), with "
            f"`{key.group(2)}:` under it")


def _convert(node: yaml.Node, path: str, lines: list[str], problems: list[Diagnostic]) -> YNode:
    loc = _loc(path, node.start_mark)
    if isinstance(node, yaml.ScalarNode):
        value: Any = node.value
        if node.tag in _PLAIN_TAGS and node.tag != "tag:yaml.org,2002:str":
            value = _number(node, loc, problems)
        raw = ""
        if node.start_mark.line == node.end_mark.line and node.start_mark.line < len(lines):
            raw = lines[node.start_mark.line][node.start_mark.column:node.end_mark.column]
        return YScalar(loc, value, node.style, raw)
    if isinstance(node, yaml.SequenceNode):
        items = [_convert(n, path, lines, problems) for n in node.value]
        return YSeq(loc, items, bool(node.flow_style))
    assert isinstance(node, yaml.MappingNode)
    out = YMap(loc, flow=bool(node.flow_style))
    seen: dict[Any, Location] = {}
    for k, v in node.value:
        key = _convert(k, path, lines, problems)
        if not isinstance(key, YScalar):
            problems.append(Diagnostic("LS111", "mapping keys must be plain scalars", key.loc))
            continue
        hashable = key.value
        if hashable in seen:
            problems.append(Diagnostic("LS103", f"duplicate key '{hashable}' (first at line "
                                   f"{seen[hashable].line})", key.loc,
                                   hint="YAML keeps only the last value; remove one of them"))
        seen[hashable] = key.loc
        out.items.append((key, _convert(v, path, lines, problems)))
    return out


_CONSTRUCTOR = yaml.SafeLoader("")


def _number(node: yaml.ScalarNode, loc: Location, problems: list[Diagnostic]) -> Any:
    """A plain scalar's value (int, float, bool, None). An integer is held to MAX_INT_BITS here,
    where it enters: Python refuses to read or print a decimal of more than 4,300 digits, and a
    hexadecimal one reads into a number no message could show."""
    try:
        value = yaml.SafeLoader.yaml_constructors[node.tag](_CONSTRUCTOR, node)
        too_large = isinstance(value, int) and value.bit_length() > MAX_INT_BITS
    except ValueError:  # a decimal past Python's own conversion limit
        value, too_large = None, True
    if too_large:
        problems.append(Diagnostic(
            "LS126", f"integer of {len(node.value):,} characters is too large "
            f"(limit: {MAX_INT_BITS}-bit numbers)", loc, hint="a size or a count is far smaller"))
        return 0
    return value


def plain(node: YNode) -> Any:
    """The node as plain Python data (positions dropped)."""
    if isinstance(node, YScalar):
        return node.value
    if isinstance(node, YSeq):
        return [plain(n) for n in node.items]
    assert isinstance(node, YMap)
    return {k.value: plain(v) for k, v in node.items}
