"""Located YAML -> Spec objects. Collects every structural problem instead of stopping at one."""

from __future__ import annotations

import errno
import keyword
import os
import re
from pathlib import Path
from typing import Any

from lazyspec.errors import Diagnostic, Location, SpecError, did_you_mean, shown
from lazyspec.fileio import resolved
from lazyspec.spec.expr import Expr, Span, parse_call, parse_expr
from lazyspec.spec.model import Block, Graph, InputDecl, Node, Param, Ref, Spec, Tie
from lazyspec.spec.yamlload import MAX_FILE_BYTES, YMap, YNode, YScalar, YSeq, load_yaml, plain

TOP_LEVEL_KEYS = ("lazyspec", "name", "description", "params", "scales", "inputs", "include",
                  "blocks", "layers", "outputs", "tie")
BLOCK_KEYS = ("params", "inputs", "layers", "outputs", "description")
NODE_KEYS = ("op", "name", "args", "kwargs", "in", "repeat", "when", "share", "names", "index",
             "trainable")
# Keys added after version 1: a node alone named so (`- index: Embedding(...)`) keeps its name.
LATER_NODE_KEYS = ("names", "index", "trainable")
INPUT_KEYS = ("shape", "dtype", "range")
MAX_INCLUDE_DEPTH = 8
# 1: the first language. 2: copies made by `repeat:` after the first also receive the node's
# other inputs, and a repeated block that returns several values threads them (a v1 spec means
# the same as before: only its copy 0 takes the other inputs).
VERSIONS = (1, 2)
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Names become state-dict keys and rows of every report, once per copy of a repeat: a name is
# capped (real ones are far shorter: torchvision's and Hugging Face's longest part is under 40
# characters), and so is a `names:` template, whose every `{expr}` is evaluated once per copy.
MAX_NAME_CHARS = 256
MAX_TEMPLATE_CHARS = 1_024
_EXPR_RE = re.compile(r"^\$\{(.*)\}$", re.DOTALL)


class _Parser:
    def __init__(self, path: str, text: str, included: bool = False):
        self.path = path
        self.text = text
        self.included = included
        self.problems: list[Diagnostic] = []

    def problem(self, code: str, message: str, loc: Location, hint: str | None = None) -> None:
        self.problems.append(Diagnostic(code, message, loc, hint=hint))

    def guard(self, fn: Any, *args: Any) -> Any:
        """Run fn, turning a SpecError into collected problems (returns None then)."""
        try:
            return fn(*args)
        except SpecError as e:
            self.problems.extend(e.diagnostics)
            return None

    # --- values ---------------------------------------------------------------------------------

    def span(self, node: YScalar, text: str | None = None) -> Span:
        """Where the text of a scalar (or a part of it) sits in the file."""
        text = str(node.value) if text is None else text
        offset = node.raw.find(text) if node.raw else -1
        if offset >= 0:
            loc = node.loc
            return Span(text, Location(loc.path, loc.line, loc.col + offset), True)
        return Span(text, node.loc, False)

    def value(self, node: YNode) -> Any:
        """A YAML value with `${...}` strings turned into Exprs."""
        if isinstance(node, YScalar):
            if isinstance(node.value, str):
                m = _EXPR_RE.match(node.value.strip())
                if m:
                    return self.guard(parse_expr, self.span(node, m.group(1)))
            return node.value
        if isinstance(node, YSeq):
            return [self.value(n) for n in node.items]
        assert isinstance(node, YMap)
        return {str(k.value): self.value(v) for k, v in node.items}

    def expr_value(self, node: YNode) -> Any:
        """A value where a bare string is an expression (`repeat: n - 1`, `when: stride != 1`)."""
        if isinstance(node, YScalar) and isinstance(node.value, str):
            m = _EXPR_RE.match(node.value.strip())
            text = m.group(1) if m else node.value
            return self.guard(parse_expr, self.span(node, text))
        if isinstance(node, YScalar):
            return node.value
        self.problem("LS111", "expected a number, a boolean or an expression", node.loc)
        return None

    def mapping(self, node: YNode | None, what: str) -> YMap | None:
        if node is None:
            return None
        if isinstance(node, YScalar) and node.value is None:
            return YMap(node.loc)
        if not isinstance(node, YMap):
            self.problem("LS111", f"{what} must be a mapping", node.loc)
            return None
        return node

    def sequence(self, node: YNode | None, what: str) -> list[YNode] | None:
        if node is None:
            return None
        if isinstance(node, YScalar) and node.value is None:
            return []
        if not isinstance(node, YSeq):
            self.problem("LS111", f"{what} must be a list", node.loc,
                         hint="start each item on its own line with '- '")
            return None
        return node.items

    def check_keys(self, node: YMap, allowed: tuple[str, ...], what: str, code: str) -> None:
        for key, _ in node.items:
            if key.value not in allowed:
                hint = did_you_mean(str(key.value), allowed) or "allowed: " + ", ".join(allowed)
                self.problem(code, f"unknown key '{key.value}' in {what}", key.loc, hint=hint)

    def name_ok(self, name: Any, loc: Location, what: str) -> bool:
        if isinstance(name, str) and len(name) > MAX_NAME_CHARS:
            self.problem("LS126", f"{what} name of {len(name):,} characters (limit: "
                         f"{MAX_NAME_CHARS} characters)", loc, hint="use a shorter name")
            return False
        if not isinstance(name, str) or not NAME_RE.match(name):
            self.problem("LS115", f"invalid {what} name {shown(name)}", loc,
                         hint="names start with a letter or '_' and hold letters, digits and '_'")
            return False
        return True

    # --- top level ------------------------------------------------------------------------------

    def spec(self, root: YNode) -> Spec:
        top = self.mapping(root, "a spec file")
        loc = root.loc
        if top is None:
            top = YMap(loc)
        self.check_keys(top, TOP_LEVEL_KEYS, "the spec", "LS110")
        version = 1
        vnode = top.get("lazyspec")
        if vnode is not None and (not isinstance(vnode, YScalar) or type(vnode.value) is not int
                                  or vnode.value not in VERSIONS):
            self.problem("LS116", f"unsupported language version {_shown(vnode)}", vnode.loc,
                         hint="this lazyspec reads versions 1 and 2: `lazyspec: 2`")
        elif vnode is not None:
            version = vnode.value
        name = self.text_field(top, "name")
        description = self.text_field(top, "description")
        params = self.params(top.get("params"), "params")
        scales: dict[str, dict[str, Param]] = {}
        smap = self.mapping(top.get("scales"), "scales")
        for key, val in smap.items if smap else []:
            if self.name_ok(key.value, key.loc, "scale"):
                scales[str(key.value)] = self.params(val, f"scale '{key.value}'")
        blocks: dict[str, Block] = {}
        bmap = self.mapping(top.get("blocks"), "blocks")
        for key, val in bmap.items if bmap else []:
            if self.name_ok(key.value, key.loc, "block"):
                block = self.block(str(key.value), val, key.loc)
                if block is not None:
                    blocks[block.name] = block
        layers_node = top.get("layers")
        if layers_node is None and not self.included:  # an include may hold only params/blocks
            self.problem("LS112", "the spec has no `layers:` list", loc,
                         hint="add `layers:` with at least one node, such as `- LazyLinear(10)`")
        graph = self.graph(top, loc, "the model")
        ties = self.ties(top.get("tie"))
        includes: list[tuple[str, Location]] = []
        inc = self.sequence(top.get("include"), "include")
        for item in inc or []:
            if isinstance(item, YScalar) and isinstance(item.value, str):
                includes.append((item.value, item.loc))
            else:
                self.problem("LS111", "each include must be a relative path", item.loc)
        return Spec(self.path, version, name, description, params, scales, graph, blocks, ties,
                    includes)

    def text_field(self, top: YMap, key: str) -> str | None:
        node = top.get(key)
        if node is None:
            return None
        if not isinstance(node, YScalar):
            self.problem("LS111", f"`{key}` must be text", node.loc)
            return None
        return None if node.value is None else str(node.value)

    def params(self, node: YNode | None, what: str) -> dict[str, Param]:
        out: dict[str, Param] = {}
        pmap = self.mapping(node, what)
        for key, val in pmap.items if pmap else []:
            if self.name_ok(key.value, key.loc, "param"):
                out[str(key.value)] = Param(str(key.value), self.value(val), key.loc)
        return out

    def ties(self, node: YNode | None) -> list[Tie]:
        out: list[Tie] = []
        for item in self.sequence(node, "tie") or []:
            pair = item.items if isinstance(item, YSeq) else None
            if (pair is None or len(pair) != 2
                    or not all(isinstance(p, YScalar) and isinstance(p.value, str) for p in pair)):
                self.problem("LS111", "each `tie` entry is a pair of parameter paths", item.loc,
                             hint="for example [lm_head.weight, wte.weight]")
                continue
            a, b = pair
            assert isinstance(a, YScalar) and isinstance(b, YScalar)
            out.append(Tie(str(a.value), str(b.value), a.loc, b.loc))
        return out

    def block(self, name: str, node: YNode, loc: Location) -> Block | None:
        body = self.mapping(node, f"block '{name}'")
        if body is None:
            return None
        self.check_keys(body, BLOCK_KEYS, f"block '{name}'", "LS110")
        if body.get("layers") is None:
            self.problem("LS112", f"block '{name}' has no `layers:` list", loc)
        params = self.params(body.get("params"), f"params of block '{name}'")
        return Block(name, params, self.graph(body, loc, f"block '{name}'"), loc)

    # --- graphs and nodes -----------------------------------------------------------------------

    def graph(self, owner: YMap, loc: Location, what: str) -> Graph:
        inputs = self.inputs(owner.get("inputs"))
        layers = []
        layers_node = owner.get("layers")
        items = self.sequence(layers_node, "layers")
        if items == [] and layers_node is not None:
            self.problem("LS112", f"`layers:` of {what} is empty", layers_node.loc,
                         hint="add at least one node, such as `- Identity`")
        for i, item in enumerate(items or []):
            layers.append(self.node(item, i))
        outputs = None
        onode = owner.get("outputs")
        if onode is not None:
            items = onode.items if isinstance(onode, YSeq) else [onode]
            outputs = [r for r in (self.ref(x) for x in items) if r is not None]
        return Graph(inputs, layers, outputs, loc)

    def inputs(self, node: YNode | None) -> list[InputDecl]:
        out: list[InputDecl] = []
        imap = self.mapping(node, "inputs")
        for key, val in imap.items if imap else []:
            if not self.name_ok(key.value, key.loc, "input"):
                continue
            shape_node: YNode | None = val
            dtype = None
            if isinstance(val, YMap):
                self.check_keys(val, INPUT_KEYS, f"input '{key.value}'", "LS146")
                shape_node = val.get("shape")
                dnode = val.get("dtype")
                if dnode is not None:
                    if isinstance(dnode, YScalar) and isinstance(dnode.value, str):
                        dtype = dnode.value
                    else:
                        self.problem("LS146", "dtype must be a name such as int64", dnode.loc)
            shape = None
            dim_locs: list[Location] = []
            if shape_node is not None and not (isinstance(shape_node, YScalar)
                                               and shape_node.value is None):
                if isinstance(shape_node, YSeq):
                    shape = [self.value(d) for d in shape_node.items]
                    dim_locs = [d.loc for d in shape_node.items]
                    for d, dn in zip(shape, shape_node.items, strict=True):
                        if not isinstance(d, (int, str, Expr)) or isinstance(d, bool):
                            self.problem("LS146", "a dimension is a number, a name or ${expr}",
                                         dn.loc)
                else:
                    self.problem("LS146", "an input's shape is a list such as [B, 20]",
                                 shape_node.loc)
            value_range = self.input_range(val.get("range")) if isinstance(val, YMap) else None
            out.append(InputDecl(str(key.value), shape, dtype, key.loc, dim_locs, value_range))
        return out

    def input_range(self, node: YNode | None) -> list[Any] | None:
        """`range: [0, vocab_size]`: the values [lo, hi) an integer input holds."""
        if node is None:
            return None
        if not (isinstance(node, YSeq) and len(node.items) == 2):
            self.problem("LS146", "an input's range is a list [lo, hi] (hi excluded), such as "
                         "[0, vocab_size]", node.loc)
            return None
        return [self.value(n) for n in node.items]

    def node(self, item: YNode, position: int) -> Node:
        if isinstance(item, YScalar):
            if not isinstance(item.value, str):
                self.problem("LS114", f"a node must be an op such as ReLU or LazyLinear(10), "
                             f"not {_shown(item)}", item.loc)
                return Node(item.loc, position, None, broken=True)
            call = self.guard(parse_call, self.span(item))
            return Node(item.loc, position, None, call, broken=call is None)
        if not isinstance(item, YMap):
            self.problem("LS114", "a node is an op string or a mapping", item.loc)
            return Node(item.loc, position, None, broken=True)
        return self.node_map(item, position)

    def node_map(self, item: YMap, position: int) -> Node:
        """A node written as a mapping, in one of three forms: `- name: Op(...)` (the name is
        the one key that is not a node key), `- op: Op(...)` with `name:`/`args:`/`kwargs:`
        (unnamed, or the long form), and `- name:` with `share: other`."""
        node = Node(item.loc, position, None)
        extra = [(k, v) for k, v in item.items if k.value not in NODE_KEYS]
        if not extra and item.get("op") is None and item.get("share") is None:
            extra = [(k, v) for k, v in item.items if k.value in LATER_NODE_KEYS][:1]
        op_node = self.op_key(item, node, extra) if item.get("op") is not None \
            else self.name_key(item, node, extra)
        self.name_field(item, node, named_by_key=bool(extra))
        if item.get("share") is not None:
            self.share(item, node, op_node)
        elif op_node is None:
            self.problem("LS114", "this node has no op", item.loc,
                         hint="write `- name: Op(...)`, or `op: Op(...)` for an unnamed node")
            node.broken = True
        elif len(extra) <= 1:
            node.call = self.op(op_node, item)
            node.broken = node.broken or node.call is None
        self.flow_keys(item, node, named_by=str(extra[0][0].value) if extra else None)
        return node

    def op_key(self, item: YMap, node: Node, extra: list[tuple[YScalar, YNode]]) -> YNode | None:
        """`- op: Op(...)`: the node is named by `name:`, so every other key is a typo."""
        for k, _ in extra:
            self.problem("LS113", f"unknown node key '{k.value}'", k.loc,
                         hint=did_you_mean(str(k.value), NODE_KEYS)
                         or "a node with `op:` takes its name from `name:`; allowed keys: "
                         + ", ".join(NODE_KEYS))
            node.broken = True
        extra.clear()
        return item.get("op")

    def name_key(self, item: YMap, node: Node,
                 extra: list[tuple[YScalar, YNode]]) -> YNode | None:
        """`- name: Op(...)`: exactly one key that is not a node key names the node; its value
        is the op (empty for a `share:` node)."""
        for k, _ in extra[1:]:
            hint = did_you_mean(str(k.value), NODE_KEYS)
            if item.flow:
                hint = ("in a flow mapping {...} YAML splits at each comma: quote the op "
                        "(\"LazyLinear(9, bias=false)\") or use block style")
            self.problem("LS113", f"unknown node key '{k.value}' (node '{extra[0][0].value}' "
                         "already names this node)", k.loc,
                         hint=hint or "allowed: " + ", ".join(NODE_KEYS))
            node.broken = True
        if not extra:
            return None
        key, val = extra[0]
        if self.name_ok(key.value, key.loc, "node"):
            node.name = str(key.value)
        return None if isinstance(val, YScalar) and val.value is None else val

    def name_field(self, item: YMap, node: Node, named_by_key: bool) -> None:
        name_node = item.get("name")
        if name_node is None:
            return
        if named_by_key:
            self.problem("LS114", "`name:` given twice", name_node.loc)
        elif self.name_ok(plain(name_node), name_node.loc, "node"):
            node.name = str(plain(name_node))

    def share(self, item: YMap, node: Node, op_node: YNode | None) -> None:
        share = item.get("share")
        assert share is not None
        if isinstance(share, YScalar) and isinstance(share.value, str):
            node.share = (share.value, share.loc)
        else:
            self.problem("LS133", "`share:` takes the name of an earlier node", share.loc)
            node.broken = True
        if op_node is not None or item.get("args") or item.get("kwargs"):
            self.problem("LS133", "a `share:` node reuses another node's module and has no op",
                         share.loc, hint="remove the op, or remove `share:`")
            node.broken = True
        if item.get("repeat") is not None:
            self.problem("LS133", "a `share:` node cannot repeat", share.loc)
            node.broken = True

    def flow_keys(self, item: YMap, node: Node, named_by: str | None = None) -> None:
        """`repeat:`, `when:`, `in:`, `trainable:` and the copies' `names:` and `index:`, the
        same in every form (`named_by`: a key that is the node's name, not one of these)."""
        if named_by in LATER_NODE_KEYS:
            item = YMap(item.loc, [(k, v) for k, v in item.items if k.value != named_by])
        if (rnode := item.get("repeat")) is not None:
            node.repeat, node.repeat_loc = self.expr_value(rnode), rnode.loc
        if (wnode := item.get("when")) is not None:
            node.when, node.when_loc = self.expr_value(wnode), wnode.loc
        if (tnode := item.get("trainable")) is not None:
            node.trainable, node.trainable_loc = self.expr_value(tnode), tnode.loc
        if (inode := item.get("in")) is not None:
            refs = inode.items if isinstance(inode, YSeq) else [inode]
            node.inputs = [r for r in (self.ref(x) for x in refs) if r is not None]
        self.copy_keys(item, node)

    def copy_keys(self, item: YMap, node: Node) -> None:
        """`names:` (a template for the copies' names) and `index:` (the copy index's name in
        the op's arguments) belong to a repeated node."""
        for key in ("names", "index"):
            vnode = item.get(key)
            if vnode is None:
                continue
            if node.repeat is None:
                self.problem("LS114", f"`{key}:` belongs to a node with `repeat:`", vnode.loc,
                             hint="add `repeat: n`, or remove it")
                node.broken = True
                continue
            if not (isinstance(vnode, YScalar) and isinstance(vnode.value, str)):
                self.problem("LS111", f"`{key}:` must be text", vnode.loc)
                node.broken = True
            elif key == "index" and self.name_ok(vnode.value, vnode.loc, "index"):
                node.index, node.index_loc = vnode.value, vnode.loc
            elif key == "names":
                if node.name is None:
                    self.problem("LS114", "`names:` names the copies of a named node", vnode.loc,
                                 hint="name the node (`- layers: Op(...)`): its copies are "
                                 "held under that name")
                    node.broken = True
                else:
                    node.names, node.names_loc = vnode.value, vnode.loc
                    node.names_parts = self.template(vnode)

    def template(self, node: YScalar) -> list[Any]:
        """`encoder_layer_{i}` -> ["encoder_layer_", Expr(i)]: text, and expressions in braces."""
        if len(str(node.value)) > MAX_TEMPLATE_CHARS:
            self.problem("LS126", f"`names:` template of {len(str(node.value)):,} characters "
                         f"(limit: {MAX_TEMPLATE_CHARS:,} characters)", node.loc,
                         hint=f"the names it makes are at most {MAX_NAME_CHARS} characters each")
            return []
        parts: list[Any] = []
        for part in re.split(r"(\{[^{}]*\})", str(node.value)):
            if part.startswith("{") and part.endswith("}"):
                expr = self.guard(parse_expr, self.span(node, part[1:-1]))
                if expr is None:
                    return []
                parts.append(expr)
            elif part:
                parts.append(part)
        return parts

    def op(self, op_node: YNode, item: YMap) -> Any:
        if not (isinstance(op_node, YScalar) and isinstance(op_node.value, str)):
            self.problem("LS114", "an op is a string such as LazyLinear(10)", op_node.loc)
            return None
        call = self.guard(parse_call, self.span(op_node))
        args_node, kwargs_node = item.get("args"), item.get("kwargs")
        if call is None or (args_node is None and kwargs_node is None):
            return call
        if call.called:
            self.problem("LS114", "arguments given both in the op call and in `args:`/`kwargs:`",
                         (args_node or kwargs_node or op_node).loc,
                         hint="use one of the two forms")
            return None
        from lazyspec.spec.expr import Arg, OpCall

        args = tuple(Arg(self.value(a), a.loc) for a in self.sequence(args_node, "args") or [])
        kmap = self.mapping(kwargs_node, "kwargs")
        kwargs = []
        for k, v in kmap.items if kmap else []:
            # A keyword is a Python identifier, as in call syntax: generated code writes it out.
            if not (isinstance(k.value, str) and k.value.isidentifier()
                    and not keyword.iskeyword(k.value)):
                self.problem("LS122", f"keyword argument {shown(k.value)} is not a name",
                             k.loc, hint="keywords are Python names such as bias or padding")
                return None
            kwargs.append((k.value, Arg(self.value(v), v.loc)))
        return OpCall(call.name, args, tuple(kwargs), call.loc, True)

    def ref(self, node: YNode) -> Ref | None:
        if isinstance(node, YScalar) and isinstance(node.value, int) \
                and not isinstance(node.value, bool):
            if node.value >= 0:
                self.problem("LS130", f"position {node.value} is not a reference", node.loc,
                             hint="use a node's name, or -1, -2, ... for earlier nodes")
                return None
            return Ref(node.value, None, node.loc, str(node.value))
        if not (isinstance(node, YScalar) and isinstance(node.value, str)) or not node.value:
            self.problem("LS130", "a reference is a node name, `name.K` or -1, -2, ...", node.loc)
            return None
        text = node.value.strip()
        base, dot, idx = text.partition(".")
        index = None
        if dot:
            if not re.fullmatch(r"-?\d+", idx):
                self.problem("LS132", f"'{text}': the part after '.' must be an output index",
                             node.loc, hint="for example qkv.0")
                return None
            index = int(idx)
        if re.fullmatch(r"-\d+", base):
            return Ref(int(base), index, node.loc, text)
        return Ref(base, index, node.loc, text)


def _shown(node: YNode) -> str:
    return repr(node.value) if isinstance(node, YScalar) else type(node).__name__


# --- files and includes ---------------------------------------------------------------------


def read_text(path: Path) -> str:
    """Read a spec file; raises OSError / UnicodeDecodeError for the caller to report."""
    from lazyspec.fileio import FileTooLarge, read_capped

    try:  # a regular file only: a FIFO would hang, /dev/zero would never end
        data = read_capped(path, MAX_FILE_BYTES)
    except FileTooLarge:
        raise SpecError([_too_large(str(path))]) from None
    if b"\0" in data:  # /proc/self/environ, an image: never read (or quoted) as YAML text
        raise OSError(errno.EINVAL, "it is a binary file (it holds NUL bytes), not YAML text")
    return data.decode("utf-8")


def _too_large(path: str) -> Diagnostic:
    return Diagnostic("LS106", f"spec file is over the {MAX_FILE_BYTES:,}-byte limit",
                      Location(path, 1, 1), hint="split it with `include:`")


def parse_file(path: str | os.PathLike[str], text: str | None = None) -> Spec:
    """Read and parse a spec file with its includes. Problems are collected in `spec.problems`.
    With `text`, that is the file's content (an editor's buffer): `path` names it in
    diagnostics, and its includes are read relative to it.

    Raises SpecError only when the file itself cannot be parsed at all (YAML errors);
    an unreadable file raises UsageError.
    """
    p = Path(path)
    return _parse_with_includes(p, resolved(p).parent, [], 0, None, {}, text)


def _read(path: Path, display: str, at: Location | None) -> str:
    from lazyspec.errors import UsageError

    try:
        return read_text(path)
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        if at is not None:  # an include: the including spec is at fault
            raise SpecError([Diagnostic("LS140", f"cannot read include '{display}': {reason}",
                                        at)]) from None
        raise UsageError([Diagnostic("LS100", f"cannot read spec '{display}': {reason}")]) from None


MAX_INCLUDES = 256  # include entries followed in one spec, all files together


def _parse_with_includes(path: Path, root: Path, stack: list[Path], depth: int,
                         at: Location | None, done: dict[Path, Spec],
                         text: str | None = None) -> Spec:
    """Parse a file and what it includes. `done` holds each file parsed so far in this spec:
    a file included from many places is read once (fan-out must not grow exponentially)."""
    display = str(path)
    if text is None:
        text = _read(path, display, at)
    elif len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise SpecError([_too_large(display)])
    tree = load_yaml(text, display)
    parser = _Parser(display, text, included=at is not None)
    spec = parser.spec(tree)
    spec.sources[display] = text
    spec.read.add(display)
    spec.problems.extend(parser.problems)
    real = resolved(path)
    own_params, own_blocks, own_scales = spec.params, spec.blocks, spec.scales
    included_params: dict[str, Param] = {}
    included_blocks: dict[str, Block] = {}
    included_scales: dict[str, dict[str, Param]] = {}
    for inc, loc in spec.includes:
        target = (path.parent / inc)
        problem = _include_problem(inc, target, root, [*stack, real], depth)
        followed = sum(len(s.includes) for s in done.values()) + len(spec.includes)
        if problem is None and followed > MAX_INCLUDES:
            problem = ("LS126", f"more than {MAX_INCLUDES} includes in one spec (limit)", None)
        if problem:
            spec.problems.append(Diagnostic(problem[0], problem[1], loc, hint=problem[2]))
            continue
        key = resolved(target)
        spec.read.add(str(target))  # also when it cannot be read or parsed: --watch waits for it
        if key in done:  # already read for this spec: its problems are reported once
            sub = done[key]
        else:
            try:
                sub = _parse_with_includes(target, root, [*stack, real], depth + 1, loc, done)
            except SpecError as e:
                spec.problems.extend(e.diagnostics)
                continue
            done[key] = sub
            spec.problems.extend(sub.problems)
        spec.sources.update(sub.sources)
        spec.read.update(sub.read)
        included_params.update(sub.params)
        included_blocks.update(sub.blocks)
        included_scales.update(sub.scales)
    # The including file's own definitions win; later includes override earlier ones.
    spec.params = {**included_params, **own_params}
    spec.blocks = {**included_blocks, **own_blocks}
    spec.scales = {**included_scales, **own_scales}
    return spec


def _include_problem(inc: str, target: Path, root: Path, stack: list[Path],
                     depth: int) -> tuple[str, str, str | None] | None:
    if os.path.isabs(inc):
        return ("LS142", f"include '{inc}' is an absolute path",
                "includes are paths relative to the spec's folder")
    real = resolved(target)
    if not real.is_relative_to(root):
        return ("LS142", f"include '{inc}' resolves outside the spec's folder ({root})",
                "keep included specs in the root spec's folder or below it (symlinks included)")
    if real in stack:
        chain = " -> ".join(p.name for p in [*stack, real][stack.index(real):])
        return ("LS141", f"include cycle: {chain}", "remove one of the includes")
    if depth + 1 > MAX_INCLUDE_DEPTH:
        return ("LS126", f"includes nested deeper than {MAX_INCLUDE_DEPTH} levels (limit)", None)
    return None
