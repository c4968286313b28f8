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

from lazyspec.errors import UsageError
from lazyspec.shapes import ShapeTree, format_shape, read_shape

if TYPE_CHECKING:
    from lazyspec.compile import Built, SpecModule
    from lazyspec.engine import Outcome
    from lazyspec.inputs import InputShape
    from lazyspec.options import BuildOptions
    from lazyspec.result import InferResult

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
        parts = [p for p in (self.pick, format_shape(self.shape, missing="")) if p]
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


def _node_shape(record: Any) -> ShapeTree:
    """A node's output shape: in the input's named dims when the run had them, else sizes."""
    symbolic = getattr(record, "symbolic", None)
    return read_shape(symbolic) if isinstance(symbolic, str) and symbolic else record.output


def _input_shapes(built: Built, result: InferResult) -> dict[str, ShapeTree]:
    """Each input's shape; with named dims (a symbolic run), the names where the spec declares
    them and the run kept them symbolic, so the input's edges read like the nodes' ones."""
    symbols = getattr(result, "symbols", None) or {}
    declared = {d.name: d.shape for d in built.spec.graph.inputs}
    shapes: dict[str, ShapeTree] = {}
    for record in result.inputs:
        symbolic = getattr(record, "symbolic", None)
        if isinstance(symbolic, str) and symbolic:
            shapes[record.name] = read_shape(symbolic)
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
            if step.tensor is not None:  # a Parameter or Buffer: a source, it reads no input
                node = GraphNode(self.new_id(f"n_{info.path}"), "op", info.path, local, info.op)
                members.append(node)
                values.append(_Src(node, (), self.shapes.get(info.path)))
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


def diagram(spec: str | os.PathLike[str], inputs: Sequence[InputShape],
            options: BuildOptions) -> Outcome:
    """The engine run that `lazyspec graph` draws: a dry run when there are input shapes to put
    on the edges (`inputs`, or inputs whose every dimension the spec declares as a number),
    else only the compiled model. Named dimensions (`--input B,3,H,W`) show as names where the
    dry run gives symbolic shapes."""
    from lazyspec import engine

    if inputs:
        return engine.run(engine.Request(spec, inputs=tuple(inputs), options=options))
    compiled = engine.run(engine.Request(spec, options=options, stage="compile"))
    if compiled.error is not None or _needs_inputs(compiled):
        return compiled
    return engine.run(engine.Request(spec, options=options))


def _needs_inputs(compiled: Outcome) -> bool:
    """Whether drawing shapes would need --input: some declared dimension is unknown or
    named (shapes come only from numbers or from --input)."""
    from lazyspec.inputs import bind_inputs

    built = compiled.built
    assert built is not None
    try:
        bound = bind_inputs(built.spec, built.params, built.options.dtype, [])
    except UsageError:
        return True
    return any(b.symbolic for b in bound)
