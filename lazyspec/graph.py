"""The architecture as a graph: nodes, block subgraphs and the edges between them, as plain data.

`build_graph` reads a compiled model (and, when given, a dry run's result, for the shapes on the
edges); `lazyspec.report.graph_text` turns the graph into Mermaid or Graphviz DOT text.
Only building a graph needs torch; the graph itself and its rendering do not.

How the graph is drawn:

- every input of the model is a node, and so is every output (`output`, or `output.0`, ... when
  the model has several);
- an op is one node, labelled `name: Op`; a node returning several tensors has one edge per
  `name.K` that is read, labelled `name.K`;
- a block call (and a named `repeat:` container) is a subgraph holding its nodes; its inputs are
  not drawn: the edges that feed the block node go straight to the nodes inside that read them,
  and the block's outputs leave from the nodes inside that produce them;
- with `depth`, a block whose nodes are nested `depth` levels deep or more is drawn as one node
  (`depth=1`: only the model's own list of nodes), as `--depth` hides nodes in the table;
- a node skipped by `when: false` or `repeat: 0` is drawn as a dashed node that passes its first
  input through (ResNet's identity shortcut shows as `downsample: Downsample (skipped: ...)`);
- a `share:` node is drawn as a node of its own, noted `shares TARGET`: it is a second call of
  the same module, with its own inputs and output; its insides are drawn once, under the target;
- with a dry run's result, every edge is labelled with the shape of the tensor it carries.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from lazyspec.compile import Built, SpecModule
    from lazyspec.inputs import InputLike
    from lazyspec.result import InferResult, ShapeTree

GRAPH_FORMATS = ("mermaid", "dot")
NodeKind = Literal["input", "output", "op", "block"]


@dataclass(frozen=True)
class GraphNode:
    """One box of the diagram."""

    id: str  # unique in the graph, letters, digits and `_` only (safe in every format)
    kind: NodeKind  # "block": a block drawn as one node (collapsed, shared or skipped)
    path: str  # module path (`up1.conv.0`), the input's name, or `output` / `output.K`
    name: str  # what the label shows: the last part of the path
    op: str = ""  # the op as the spec names it (a block's name; `Block x12` for a repeat)
    skipped: str | None = None  # why it passes its input through: `when: false`, `repeat: 0`
    shared_from: str | None = None  # path of the node whose module it calls again

    @property
    def label(self) -> str:
        text = f"{self.name}: {self.op}" if self.op else self.name
        if self.skipped:
            text += f" (skipped: {self.skipped})"
        if self.shared_from:
            text += f" (shares {self.shared_from})"
        return text


@dataclass
class Subgraph:
    """A block drawn open: its nodes and the blocks nested in it, in spec order."""

    id: str  # `cluster_...`: unique, letters, digits and `_` only
    path: str
    name: str
    op: str
    members: list[GraphNode | Subgraph] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.name}: {self.op}"


@dataclass
class Edge:
    """A tensor going from one node to another."""

    source: str  # node ids
    target: str
    pick: str | None = None  # `qkv.0`: one output of a node that returns several
    shape: ShapeTree = None  # with a dry run's result: what the edge carries

    @property
    def label(self) -> str | None:
        parts = [p for p in (self.pick, format_shape(self.shape)) if p]
        return " ".join(parts) or None


@dataclass
class Graph:
    title: str
    members: list[GraphNode | Subgraph]  # the model's own list, in spec order
    edges: list[Edge]  # in spec order of their targets
    inputs: list[str]  # ids of the model's input nodes
    outputs: list[str]  # ids of the model's output nodes
    depth: int | None = None
    shapes: bool = False  # edges carry shapes (a dry run's result was given)

    def nodes(self) -> list[GraphNode]:
        """Every node, subgraphs included, in spec order."""
        return [m for m in _walk_members(self.members) if isinstance(m, GraphNode)]

    def subgraphs(self) -> list[Subgraph]:
        return [m for m in _walk_members(self.members) if isinstance(m, Subgraph)]


def _walk_members(members: list[GraphNode | Subgraph]) -> Iterator[GraphNode | Subgraph]:
    for m in members:
        yield m
        if isinstance(m, Subgraph):
            yield from _walk_members(m.members)


def format_shape(shape: ShapeTree) -> str | None:
    """(1, 16, 64, 64) -> `[1, 16, 64, 64]`; several tensors -> `([2, 4], [2, 4])`."""
    if shape is None:
        return None
    if isinstance(shape, tuple):
        return "[" + ", ".join(str(d) for d in shape) + "]"
    if isinstance(shape, list):
        return "(" + ", ".join(format_shape(s) or "?" for s in shape) + ")"
    return str(shape)


def parse_shape(text: str) -> ShapeTree:
    """A shape as reports print it, back to a tree: `[B, 16, (H//2)]` -> ("B", "16", "(H//2)"),
    `([B, T, 64], [B, T, 64])` -> a list of two; anything else stays text."""
    text = text.strip()
    if len(text) >= 2 and (text[0], text[-1]) in (("[", "]"), ("(", ")")):
        parts = _split_top(text[1:-1])
        if text[0] == "[":
            return tuple(parts)
        return [parse_shape(p) for p in parts]
    return text


def _split_top(text: str) -> list[str]:
    """Split at the commas outside any brackets."""
    parts, level, start = [], 0, 0
    for i, c in enumerate(text):
        if c in "([":
            level += 1
        elif c in ")]":
            level -= 1
        elif c == "," and level == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    last = text[start:].strip()
    return [*parts, last] if parts or last else []


def _node_shape(record: Any) -> ShapeTree:
    """A node's output shape: in the input's named dims when the run had them, else sizes."""
    symbolic = getattr(record, "symbolic", None)
    return parse_shape(symbolic) if isinstance(symbolic, str) and symbolic else record.output


def _input_shapes(built: Built, result: InferResult) -> dict[str, ShapeTree]:
    """Each input's shape; with named dims (a symbolic run), the names where the spec declares
    them and the run kept them symbolic, so the input's edges read like the nodes' ones."""
    symbols = getattr(result, "symbols", None) or {}
    declared = {d.name: d.shape for d in built.spec.graph.inputs}
    shapes: dict[str, ShapeTree] = {}
    for record in result.inputs:
        symbolic = getattr(record, "symbolic", None)
        if isinstance(symbolic, str) and symbolic:
            shapes[record.name] = parse_shape(symbolic)
            continue
        shape: tuple[Any, ...] = tuple(record.shape)
        dims = declared.get(record.name)
        if symbols and dims is not None and len(dims) == len(shape):
            shape = tuple(d if isinstance(d, str) and d in symbols else size
                          for d, size in zip(dims, shape, strict=True))
        shapes[record.name] = shape
    return shapes


# --- building -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Src:
    """Where a value comes from: a node, and the outputs picked from it (`name.K`)."""

    node: GraphNode
    index: tuple[int, ...]
    shape: ShapeTree

    def pick(self, k: int) -> _Src:
        shape = self.shape
        sub = shape[k] if isinstance(shape, list) and -len(shape) <= k < len(shape) else None
        return _Src(self.node, (*self.index, k), sub)


# A value in a list's slots: one source, or the outputs of an open block with several outputs.
_Value = Any  # _Src | tuple[_Value, ...]


def _pick(value: _Value, index: int | None) -> _Value:
    if index is None:
        return value
    if isinstance(value, tuple):
        # Outside the range the dry run fails (LS132); draw all of them rather than fail here.
        return value[index] if -len(value) <= index < len(value) else value
    assert isinstance(value, _Src)
    return value.pick(index)


def _flatten(value: _Value) -> Iterator[_Src]:
    if isinstance(value, tuple):
        for v in value:
            yield from _flatten(v)
    else:
        yield value


class _Builder:
    def __init__(self, built: Built, result: InferResult | None, depth: int | None):
        self.built, self.depth = built, depth
        self.ops = {n.path: n.op for n in built.nodes}
        self.shapes: dict[str, ShapeTree] = {}
        self.input_shapes: dict[str, ShapeTree] = {}
        if result is not None:
            self.shapes = {n.path: _node_shape(n) for n in result.nodes}
            self.input_shapes = _input_shapes(built, result)
        self.ids: set[str] = set()
        self.edges: list[Edge] = []

    def new_id(self, text: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", text)
        candidate, n = base, 2
        while candidate in self.ids:
            candidate, n = f"{base}_{n}", n + 1
        self.ids.add(candidate)
        return candidate

    def opens(self, depth: int) -> bool:
        """Whether a block node at this depth is drawn open (its nodes are at depth + 1)."""
        return self.depth is None or depth + 1 < self.depth

    def walk(self, module: SpecModule, values: list[_Value],
             members: list[GraphNode | Subgraph]) -> list[_Value]:
        """Add the module's steps to `members`; return its outputs."""
        from lazyspec.compile import SpecModule

        for step in module.steps:
            xs = [_pick(values[slot], index) for slot, index, _ref in step.inputs]
            info = step.info
            local = info.path.rsplit(".", 1)[-1]
            sub = step.module
            if (isinstance(sub, SpecModule) and info.shared_from is None
                    and self.opens(info.depth)):
                group = Subgraph(self.new_id(f"cluster_{info.path}"), info.path, local, info.op)
                members.append(group)
                # An input the call does not feed (the dry run fails on it) has no edges.
                n = len(sub.input_names)
                outs = self.walk(sub, (xs + [()] * n)[:n], group.members)
                values.append(outs[0] if len(outs) == 1 else tuple(outs))
                continue
            if sub is None:
                node = GraphNode(self.new_id(f"n_{info.path}"),
                                 "block" if info.block is not None else "op",
                                 info.path, local, info.op,
                                 skipped=info.skipped or "passes its input through")
            elif info.shared_from is not None:
                op = self.ops.get(info.shared_from, info.op)
                node = GraphNode(self.new_id(f"n_{info.path}"),
                                 "block" if isinstance(sub, SpecModule) else "op",
                                 info.path, local, op, shared_from=info.shared_from)
            else:
                node = GraphNode(self.new_id(f"n_{info.path}"),
                                 "block" if isinstance(sub, SpecModule) else "op",
                                 info.path, local, info.op)
            members.append(node)
            for x in xs:
                self.connect(x, node)
            values.append(_Src(node, (), self.shapes.get(info.path)))
        return [_pick(values[slot], index) for slot, index, _ref in module.outputs]

    def connect(self, value: _Value, target: GraphNode) -> None:
        for src in _flatten(value):
            pick = ".".join([src.node.name, *map(str, src.index)]) if src.index else None
            self.edges.append(Edge(src.node.id, target.id, pick, src.shape))


def build_graph(built: Built, result: InferResult | None = None,
                depth: int | None = None) -> Graph:
    """The graph of a compiled model; with a dry run's result, shapes on the edges.

    `depth` (1 or more) draws a block as one node when its nodes are nested that deep.
    """
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be 1 or more, got {depth}")
    b = _Builder(built, result, depth)
    members: list[GraphNode | Subgraph] = []
    values: list[_Value] = []
    inputs = []
    for name in built.module.input_names:
        node = GraphNode(b.new_id(f"in_{name}"), "input", name, name)
        members.append(node)
        inputs.append(node.id)
        values.append(_Src(node, (), b.input_shapes.get(name)))
    outs = b.walk(built.module, values, members)
    outputs = []
    for k, value in enumerate(outs):
        name = "output" if len(outs) == 1 else f"output.{k}"
        node = GraphNode(b.new_id("out" if len(outs) == 1 else f"out_{k}"), "output", name, name)
        members.append(node)
        outputs.append(node.id)
        b.connect(value, node)
    title = built.spec.name or os.path.basename(built.spec.path)
    return Graph(title, members, b.edges, inputs, outputs, depth, result is not None)


def render_graph(built: Built, result: InferResult | None = None, fmt: str = "mermaid",
                 depth: int | None = None) -> str:
    """The diagram as text: `fmt` is "mermaid" (a `flowchart TD`) or "dot" (Graphviz)."""
    from lazyspec.report.graph_text import to_dot, to_mermaid

    if fmt not in GRAPH_FORMATS:
        raise ValueError(f"unknown graph format '{fmt}' (use {' or '.join(GRAPH_FORMATS)})")
    graph = build_graph(built, result, depth)
    return to_mermaid(graph) if fmt == "mermaid" else to_dot(graph)


def graph_for(spec_path: str | os.PathLike[str], inputs: Sequence[InputLike] = (), *,
              fmt: str = "mermaid", depth: int | None = None, **build_options: Any) -> str:
    """`lazyspec graph` as a function: load, compile and draw the spec.

    Shapes are on the edges when `inputs` are given, or when the spec declares every dimension
    of every input as a number. Named dimensions (`--input B,3,H,W`) show as names where the
    dry run gives symbolic shapes. `build_options` are those of
    `LoadedSpec.build`: device, dtype, params, scale, allow.
    """
    from lazyspec import dryrun
    from lazyspec.api import load
    from lazyspec.compile import build
    from lazyspec.errors import UsageError
    from lazyspec.inputs import to_input

    loaded = load(spec_path)
    options = loaded.options(**build_options)
    built = build(loaded.spec, options)
    given = [to_input(i) for i in inputs]
    if not given:
        try:
            bound = dryrun.bind_inputs(built, [])
        except UsageError:  # some dimension is known only from --input: draw without shapes
            bound = None
        if bound is None or any(getattr(b, "symbolic", False) for b in bound):
            return render_graph(built, None, fmt, depth)  # shapes only from numbers or --input
    if options.device == "meta":
        result = dryrun.run(built, given)
    else:  # a real device: infer's memory check first, on a build of its own
        result = dryrun.infer(loaded.spec, options, given)
    return render_graph(built, result, fmt, depth)
