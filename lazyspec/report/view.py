"""What a human report shows of a result: which tables (`--show`), which node columns
(`--columns`), how deep (`--depth`), and repeated blocks collapsed unless `--expand`.

The table and Markdown formats read the same rows from here, so a pull-request comment shows
what the terminal shows. JSON is never trimmed by a view. No rich, no torch.

Collapsing, on by default, keeps every node's name whole and reads the same for a 5-node MLP
(nothing to collapse) and a 1,000-node LLaMA:
- a run of consecutive sibling blocks that are identical (same nodes, shapes and counts) is one
  row, `layers.0-31` with `DecoderLayer x32`, its counts per copy, and the first copy's nodes
  under it (`layers.0.self_attn...`, real state-dict names);
- a block with the same nodes as one listed earlier, at other sizes (ResNet's `layer3.1` is
  built like `layer1.0`), is one row `layer3.1 (as layer1.0)` with its own shape and counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lazyspec.errors import usage_error
from lazyspec.report.text import fmt_count
from lazyspec.shapes import format_shape

if TYPE_CHECKING:
    from lazyspec.result import InferResult, NodeRecord, ParamRecord

SHOW_CHOICES = ("auto", "nodes", "params", "both")
# `auto` lists the parameter tensors too when there are at most this many: a small model's
# shapes fit on a screen beside its nodes; a large one's would repeat the node table at length.
AUTO_PARAMS_MAX = 16


@dataclass(frozen=True)
class Column:
    """A node-table column: its heading, alignment, and when it goes in a narrow terminal
    (`drop`: 1 goes first; 0 never goes)."""

    heading: str
    right: bool
    drop: int
    help: str


COLUMNS: dict[str, Column] = {
    "op": Column("Op", False, 7, "the op or block, `x32` on a run of identical copies"),
    "input": Column("Input", False, 5, "the shape(s) the node received"),
    "output": Column("Output", False, 0, "the shape it returned (symbolic with named dims)"),
    "weight": Column("Weight", False, 6, "the shape of its own `weight` (a kernel, a matrix)"),
    "params": Column("Params", True, 0, "parameters it owns, with its children's"),
    "percent": Column("%", True, 4, "its share of all parameters"),
    "flops": Column("FLOPs", True, 8, "counted FLOPs (2 per multiply-accumulate)"),
    "macs": Column("MACs", True, 3, "multiply-accumulates"),
    "trainable": Column("Trainable", False, 2, "yes, no or partly (`trainable: false`)"),
    "line": Column("Line", True, 1, "the spec line that declares it"),
}
ALIASES = {"kernel": "weight", "shape": "output", "%": "percent"}
DEFAULT_COLUMNS = ("op", "output", "params", "flops")


def parse_columns(text: str | None) -> tuple[str, ...]:
    """`--columns op,output,params`: known names, in the order given; raises a usage error."""
    if text is None:
        return DEFAULT_COLUMNS
    names = [ALIASES.get(n.strip().lower(), n.strip().lower()) for n in text.split(",")]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown or not names:
        raise usage_error(f"--columns: unknown column '{unknown[0]}'" if unknown
                          else "--columns needs at least one column",
                          "choose from " + ",".join(COLUMNS) + " (kernel = weight)")
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class View:
    """What a table or Markdown report shows. The defaults are the documented ones."""

    show: str = "auto"
    columns: tuple[str, ...] = DEFAULT_COLUMNS
    depth: int | None = None
    expand: bool = False

    def __post_init__(self) -> None:
        if self.show not in SHOW_CHOICES:
            raise usage_error(f"--show: unknown choice '{self.show}'",
                              "use " + ", ".join(SHOW_CHOICES))

    def tables(self, result: InferResult) -> tuple[bool, bool]:
        """(show the node table, show the parameter table)."""
        if self.show == "auto":
            return True, len(result.params) <= AUTO_PARAMS_MAX
        return self.show in ("nodes", "both"), self.show in ("params", "both")


@dataclass
class _Tree:
    node: NodeRecord
    children: list[_Tree] = field(default_factory=list)


def _forest(nodes: list[NodeRecord]) -> list[_Tree]:
    """Nodes (in spec order) as trees: a node's parent is the nearest node its path extends."""
    by_path: dict[str, _Tree] = {}
    roots: list[_Tree] = []
    for n in nodes:
        tree = _Tree(n)
        by_path[n.path] = tree
        parent, found = n.path, None
        while "." in parent and found is None:
            parent = parent.rpartition(".")[0]
            found = by_path.get(parent)
        (found.children if found else roots).append(tree)
    return roots


class _Signatures:
    """Each subtree's shape as a small number: `structure` (ops, names, what is skipped) and
    `full` (that, and every shape and count). Equal numbers, equal subtrees."""

    def __init__(self) -> None:
        self.ids: dict[tuple[object, ...], int] = {}
        self.structure: dict[int, int] = {}
        self.full: dict[int, int] = {}

    def _intern(self, key: tuple[object, ...]) -> int:
        return self.ids.setdefault(key, len(self.ids))

    def add(self, tree: _Tree) -> None:
        for child in tree.children:
            self.add(child)
        n = tree.node
        kids = [(_local(c.node), c) for c in tree.children]
        self.structure[id(tree)] = self._intern(
            ("s", n.op, n.skipped, n.shared_from is not None,
             tuple((name, self.structure[id(c)]) for name, c in kids)))
        self.full[id(tree)] = self._intern(
            ("f", self.structure[id(tree)], str(n.output), n.symbolic, str(n.input), n.params,
             n.flops, tuple(self.full[id(c)] for _, c in kids)))


def _local(n: NodeRecord) -> str:
    return n.path.rpartition(".")[2]


def _next_copy(before: _Tree, after: _Tree) -> bool:
    """Copies made by `repeat:` are numbered: `layers.3` follows `layers.2`. Named siblings
    (`q`, `k`, `v`) keep a row each, however alike."""
    a, b = _local(before.node), _local(after.node)
    return a.isdigit() and b.isdigit() and int(b) == int(a) + 1


@dataclass
class NodeRow:
    """One row of the node table: the name shown, the node, and how many identical copies the
    row stands for (their counts are per copy)."""

    name: str
    node: NodeRecord
    copies: int = 1
    like: str | None = None  # a block built like this earlier one, listed there


@dataclass
class Rows:
    """The rows a view shows, and what it left out (for the notes under the table)."""

    nodes: list[NodeRow] = field(default_factory=list)
    runs: dict[str, int] = field(default_factory=dict)  # a run's first copy -> copies
    hidden: set[str] = field(default_factory=set)  # the other copies of each run
    likes: int = 0  # blocks shown as `(as X)`
    deeper: int = 0  # nodes at --depth and below


def node_rows(result: InferResult, view: View) -> Rows:
    """The node table's rows in spec order, with --depth and collapsing applied."""
    forest = _forest(result.nodes)
    sigs = _Signatures()
    for tree in forest:
        sigs.add(tree)
    rows = Rows()
    if not view.expand:
        _record_runs(forest, sigs, rows)
    _walk(forest, view, sigs, rows, {})
    if view.depth is not None:
        rows.deeper = sum(n.depth >= view.depth for n in result.nodes)
    return rows


def _runs(trees: list[_Tree], sigs: _Signatures, expand: bool) -> list[list[_Tree]]:
    """Siblings grouped: consecutive identical blocks together (never leaves, nor in --expand)."""
    groups: list[list[_Tree]] = []
    for tree in trees:
        first = groups[-1][0] if groups else None
        if (not expand and first is not None and tree.children
                and _next_copy(groups[-1][-1], tree)
                and sigs.full[id(first)] == sigs.full[id(tree)]):
            groups[-1].append(tree)
        else:
            groups.append([tree])
    return groups


def _walk(trees: list[_Tree], view: View, sigs: _Signatures, rows: Rows,
          shown: dict[int, str]) -> None:
    """Rows for `trees` and what they open into; `shown`: each structure listed in full so
    far -> where (a later block built the same way is one `(as X)` row)."""
    for run in _runs(trees, sigs, view.expand):
        first = run[0]
        if view.depth is not None and first.node.depth >= view.depth:
            continue
        name = _run_name(run)
        opens = bool(first.children) and (view.depth is None
                                          or first.node.depth + 1 < view.depth)
        like = shown.get(sigs.structure[id(first)]) if opens and not view.expand else None
        if like is not None:
            rows.nodes.append(NodeRow(f"{name} (as {_relative(like, first.node.path)})",
                                      first.node, len(run), like))
            rows.likes += 1
            continue
        rows.nodes.append(NodeRow(name, first.node, len(run)))
        if opens:
            shown.setdefault(sigs.structure[id(first)], first.node.path)
            _walk(first.children, view, sigs, rows, shown)


def _record_runs(trees: list[_Tree], sigs: _Signatures, rows: Rows) -> None:
    """Every run of identical copies, whatever --depth shows: the parameter table collapses
    them too."""
    for run in _runs(trees, sigs, False):
        if len(run) > 1:
            rows.runs[run[0].node.path] = len(run)
            rows.hidden.update(t.node.path for t in run[1:])
        _record_runs(run[0].children, sigs, rows)


def _relative(like: str, path: str) -> str:
    """`q` for `layers.0.self_attn.q` seen from its sibling `layers.0.self_attn.k`."""
    parent = path.rpartition(".")[0]
    return like[len(parent) + 1:] if parent and like.startswith(parent + ".") else like


def _run_name(run: list[_Tree]) -> str:
    """`layers.0-31` for a run of copies, the node's path for one."""
    if len(run) == 1:
        return run[0].node.path
    return f"{run[0].node.path}-{_local(run[-1].node)}"


# --- cells -----------------------------------------------------------------------------------


def node_cells(row: NodeRow, columns: tuple[str, ...], result: InferResult,
               owned: dict[str, tuple[int, int]], weights: dict[str, ParamRecord]) -> list[str]:
    """The cells of one node row, in `columns` order (the name is not among them)."""
    n = row.node
    out = []
    for key in columns:
        out.append(_cell(key, row, n, result, owned, weights))
    return out


def _cell(key: str, row: NodeRow, n: NodeRecord, result: InferResult,
          owned: dict[str, tuple[int, int]], weights: dict[str, ParamRecord]) -> str:
    counted = not n.skipped
    if key == "op":
        op = n.op + (f" x{row.copies}" if row.copies > 1 else "")
        return op + (f" (shares {n.shared_from})" if n.shared_from else "")
    if key == "output":  # a skipped node passes its input through: why, in brackets
        return f"({n.skipped})" if n.skipped else n.symbolic or format_shape(n.output)
    if key == "input":
        return "" if n.input is None else format_shape(n.input)
    if key == "weight":
        own = weights.get(f"{n.path}.weight") or weights.get(n.path)
        return format_shape(own.shape) if own is not None else ""
    if key == "params":
        return f"{n.params:,}" if n.params else ""
    if key == "percent":
        total = result.totals.params
        return f"{100 * n.params / total:.1f}%" if n.params and total else ""
    if key in ("flops", "macs"):
        if n.flops == 0 or not counted:
            return ""
        return fmt_count(n.flops if key == "flops" or n.flops is None else n.flops // 2)
    if key == "trainable":
        total, trainable = owned.get(n.path, (0, 0))
        return "" if not total else "yes" if trainable == total else "no" if not trainable \
            else "partly"
    if key == "line":
        return str(n.location.line) if n.location is not None else ""
    raise AssertionError(key)


def owned_params(result: InferResult) -> tuple[dict[str, tuple[int, int]],
                                               dict[str, ParamRecord]]:
    """(path -> (parameters under it, trainable ones), parameter path -> record)."""
    owned: dict[str, tuple[int, int]] = {}
    for p in result.params:
        parts = p.path.split(".")
        for i in range(1, len(parts) + 1):
            key = ".".join(parts[:i])
            total, trainable = owned.get(key, (0, 0))
            owned[key] = (total + p.count, trainable + (p.count if p.trainable else 0))
    return owned, {p.path: p for p in result.params}


@dataclass
class ParamRow:
    param: ParamRecord
    copies: int = 1  # the tensor of a run's first copy: one per copy

    @property
    def marks(self) -> str:
        """` *` counted once (shared or tied), ` x32` one per copy of a run."""
        return (" *" if self.param.shared else "") + (f" x{self.copies}" if self.copies > 1
                                                      else "")


def param_rows(result: InferResult, rows: Rows) -> list[ParamRow]:
    """The parameter table: every tensor but those in the later copies of a collapsed run; the
    first copy's tensors carry `xN`."""
    out = []
    for p in result.params:
        prefixes = _prefixes(p.path)
        if any(x in rows.hidden for x in prefixes):
            continue
        out.append(ParamRow(p, next((rows.runs[x] for x in prefixes if x in rows.runs), 1)))
    return out


def _prefixes(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def view_notes(result: InferResult, view: View, rows: Rows, shown_params: bool) -> list[str]:
    """What the view left out, and how to see it."""
    notes = []
    if rows.runs:
        notes.append("xN: N identical copies shown once, counts per copy (--expand lists each)")
    if rows.likes:
        notes.append("(as X): built like X, whose nodes are listed above (--expand lists them)")
    if rows.deeper:
        notes.append(f"{rows.deeper:,} nodes deeper than --depth {view.depth} not shown")
    if not shown_params and view.show == "auto":
        notes.append(f"{len(result.params):,} parameter tensors: --show both lists them with "
                     "their shapes")
    return notes
