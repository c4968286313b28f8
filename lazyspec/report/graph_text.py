"""A `lazyspec.graph.Graph` as diagram text: Mermaid (renders on GitHub and in Markdown) and
Graphviz DOT. Deterministic: the same graph gives the same text, byte for byte. Torch-free.

Node ids are letters, digits and `_` (the graph makes them so), prefixed `in_`, `out`, `n_` and
`cluster_`, which keeps them clear of Mermaid's keywords (`end`, `style`, `class`, ...) and of
its `o`/`x` edge ends. Every label is quoted, with what would end or change the quoted text
escaped: in Mermaid as entity codes (`#quot;`, `#35;`, `#lt;`, ...), in DOT with backslashes.
"""

from __future__ import annotations

import re

from lazyspec.graph import Graph, GraphNode, Subgraph
from lazyspec.report import GRAPH_FORMATS
from lazyspec.textsafe import visible

INDENT = "    "

# Mermaid styles: a skipped node is dashed, a shared node dotted.
_MERMAID_CLASSES = {
    "skipped": "stroke-dasharray: 5 5",
    "shared": "stroke-dasharray: 2 2",
}


def _mermaid_text(text: str) -> str:
    """Text for inside Mermaid's double quotes: one line, other control characters escaped,
    entity codes for `#"<>&` and backticks (which would start a Markdown string)."""
    text = visible(" ".join(text.split()))
    text = (text.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;")
            .replace(">", "#gt;").replace("&", "#amp;").replace("`", "#96;"))
    # Mermaid reads `direction TB` anywhere on a line as a statement, even in quotes.
    return re.sub(r"direction\s", "direction#32;", text)


def _mermaid_comment(text: str) -> str:
    return visible(" ".join(text.split()))  # one line; after `%% `, a `{` starts no directive


def _mermaid_node(node: GraphNode) -> str:
    label = f'"{_mermaid_text(node.label)}"'
    if node.kind in ("input", "output"):
        text = f"{node.id}([{label}])"  # stadium
    elif node.kind == "block":
        text = f"{node.id}[[{label}]]"  # subroutine: a block drawn as one node
    else:
        text = f"{node.id}[{label}]"
    if node.skipped:
        text += ":::skipped"
    elif node.shared_from:
        text += ":::shared"
    return text


def to_mermaid(graph: Graph) -> str:
    """A Mermaid `flowchart TD`: block subgraphs, then the edges, labelled with picks and
    shapes."""
    lines = [f"%% {_mermaid_comment(graph.title)}", "flowchart TD"]

    def add(members: list[GraphNode | Subgraph], level: int) -> None:
        pad = INDENT * level
        for m in members:
            if isinstance(m, Subgraph):
                lines.append(f'{pad}subgraph {m.id} ["{_mermaid_text(m.label)}"]')
                add(m.members, level + 1)
                lines.append(f"{pad}end")
            else:
                lines.append(pad + _mermaid_node(m))

    add(graph.members, 1)
    for e in graph.edges:
        label = e.label
        arrow = f'-->|"{_mermaid_text(label)}"| ' if label else "--> "
        lines.append(f"{INDENT}{e.source} {arrow}{e.target}")
    nodes = graph.nodes()
    used = {"skipped": any(n.skipped for n in nodes),
            "shared": any(n.shared_from and not n.skipped for n in nodes)}
    for name, style in _MERMAID_CLASSES.items():
        if used[name]:
            lines.append(f"{INDENT}classDef {name} {style}")
    return "\n".join(lines) + "\n"


def _dot_quote(text: str) -> str:
    """A DOT double-quoted string: newlines as DOT's `\\n`, other control characters as visible
    escapes, backslashes and quotes escaped."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    text = "\n".join(visible(line) for line in lines)
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\n", "\\n") + '"'


def _dot_attrs(attrs: dict[str, str]) -> str:
    return "[" + ", ".join(f"{k}={_dot_quote(v)}" for k, v in attrs.items()) + "]"


def _dot_node(node: GraphNode) -> str:
    attrs = {"label": node.label}
    if node.kind in ("input", "output"):
        attrs["shape"] = "oval"
    elif node.kind == "block":
        attrs["shape"] = "box3d"
    if node.skipped:
        attrs["style"] = "dashed"
    elif node.shared_from:
        attrs["style"] = "dotted"
    return f"{_dot_quote(node.id)} {_dot_attrs(attrs)};"


def to_dot(graph: Graph) -> str:
    """A Graphviz `digraph`: each open block a `subgraph cluster_...`, edges labelled with picks
    and shapes. Every id and label is quoted."""
    lines = [f"digraph {_dot_quote(graph.title)} {{",
             f"{INDENT}graph {_dot_attrs({'label': graph.title, 'labelloc': 't'})};",
             f"{INDENT}node {_dot_attrs({'shape': 'box'})};"]

    def add(members: list[GraphNode | Subgraph], level: int) -> None:
        pad = INDENT * level
        for m in members:
            if isinstance(m, Subgraph):
                lines.append(f"{pad}subgraph {_dot_quote(m.id)} {{")
                lines.append(f"{pad}{INDENT}graph "
                             f"{_dot_attrs({'label': m.label, 'style': 'rounded'})};")
                add(m.members, level + 1)
                lines.append(f"{pad}}}")
            else:
                lines.append(pad + _dot_node(m))

    add(graph.members, 1)
    for e in graph.edges:
        label = e.label
        attrs = f" {_dot_attrs({'label': label})}" if label else ""
        lines.append(f"{INDENT}{_dot_quote(e.source)} -> {_dot_quote(e.target)}{attrs};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(graph: Graph, fmt: str) -> str:
    """The diagram as text: `fmt` is "mermaid" (a `flowchart TD`) or "dot" (Graphviz)."""
    if fmt not in GRAPH_FORMATS:
        raise ValueError(f"unknown graph format '{fmt}' (use {' or '.join(GRAPH_FORMATS)})")
    return to_mermaid(graph) if fmt == "mermaid" else to_dot(graph)
