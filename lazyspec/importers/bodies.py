"""One traced module instance -> one node list (`Body`) of the spec being written.

Submodule calls become nodes named as the module's attributes (so parameter names stay the
module's): a torch.nn layer as its op call, a traced submodule as a block (two instances with
the same body are one block), a second call of one module as a `share:` node, a container of
identical modules called in sequence as a named `repeat:`. Free parameters and buffers
(`get_attr`) become Parameter/Buffer nodes of their own names. Functions go through
`functions.py`. A value no spec op can make is an error only where something reads it (the
masks an idiom folds into one op are never read), and it names the module path and the call.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from lazyspec.compile import RESERVED_NAMES
from lazyspec.importers import cannot
from lazyspec.importers.fxtrace import Trace, Traced, where
from lazyspec.importers.layers import LayerCall, equivalent, layer_call, nameable
from lazyspec.importers.specdoc import Body, Node, Ref, valid_name


class Unexpressible(Exception):
    """A value no spec op makes; an error (LS160) once something reads it."""


@dataclass
class Blocks:
    """The blocks written so far, by their text, and the names they took."""

    names: dict[str, str] = field(default_factory=dict)  # body text -> block name
    bodies: dict[str, Body] = field(default_factory=dict)  # block name -> body
    taken: set[str] = field(default_factory=set)

    def name_for(self, body: Body, wanted: str) -> str:
        key = body.key()
        if key not in self.names:
            name = wanted = _block_name(wanted)
            n = 2
            while name in self.taken:
                name, n = f"{wanted}_{n}", n + 1
            self.taken.add(name)
            self.names[key], self.bodies[name] = name, body
        return self.names[key]


def _block_name(wanted: str) -> str:
    """A block name that hides no op: `RMSNorm` (a user class) would hide torch.nn's."""
    from lazyspec import ops
    from lazyspec.tensors import TENSOR_OPS

    name = "".join(c if c.isalnum() or c == "_" else "_" for c in wanted) or "Block"
    if not valid_name(name):
        name = f"Block_{name}"
    if name in ops.known_names() or name in TENSOR_OPS:
        name = f"{name}Block"
    return name


@dataclass(frozen=True)
class Rules:
    """What a builder does with a function call, the calls of a container's members and a free
    tensor. module.py sets them from functions.py, containers.py and tensors.py, which build
    on this module (so it does not import them)."""

    convert: Callable[[Builder, fx.Node], Ref]
    chains: Callable[[Builder], dict[fx.Node, Callable[[fx.Node], None]]]
    parameter: Callable[[nn.Parameter, torch.Tensor | None], str]
    buffer: Callable[[Builder, str, torch.Tensor | None], str]


@dataclass
class Leaves:
    """Which modules are layers, and their op calls; the norm check runs once per module."""

    equivalents: dict[int, LayerCall | None] = field(default_factory=dict)
    calls: dict[int, LayerCall] = field(default_factory=dict)

    def equivalent(self, module: nn.Module) -> LayerCall | None:
        if id(module) not in self.equivalents:
            self.equivalents[id(module)] = equivalent(module)
        return self.equivalents[id(module)]

    def is_leaf(self, module: nn.Module) -> bool:
        """A torch.nn layer a spec can name, or a user module that computes one."""
        return nameable(module) or self.equivalent(module) is not None

    def call(self, module: nn.Module, path: str) -> LayerCall:
        if id(module) not in self.calls:
            self.calls[id(module)] = self.equivalent(module) or layer_call(module, path)
        return self.calls[id(module)]


@dataclass
class Context:
    """What every body's builder shares."""

    trace: Trace
    blocks: Blocks
    originals: dict[str, torch.Tensor]  # the user's own tensors by state-dict name
    rules: Rules
    leaves: Leaves

    def leaf(self, module: nn.Module, path: str) -> LayerCall:
        return self.leaves.call(module, path)


class Builder:
    """Builds the Body of one traced module instance."""

    def __init__(self, ctx: Context, traced: Traced):
        self.ctx, self.t = ctx, traced
        self.module = traced.module
        self.body = Body(inputs=[])
        self.refs: dict[fx.Node, Ref | Unexpressible] = {}
        self.called: dict[str, int] = {}  # attribute -> the node that first called it
        self.read: set[str] = set()  # own parameters and buffers read (get_attr)
        self.group_called: set[str] = set()  # containers whose members a chain called
        self.taken = set(RESERVED_NAMES) | {n for n, _ in self.module.named_children()} | \
            {n for n, _ in self.module.named_parameters(recurse=False)} | \
            {n for n, _ in self.module.named_buffers(recurse=False)}

    @property
    def where(self) -> str:
        return where(self.t.path, self.module)

    # --- values ---------------------------------------------------------------------------------

    def value(self, arg: Any) -> Any:
        """What an argument holds in the shape pass (literals as they are)."""
        if isinstance(arg, fx.Node):
            return self.t.values.get(arg)
        if isinstance(arg, (list, tuple)):
            return type(arg)(self.value(a) for a in arg)
        return arg

    def is_tensor(self, arg: Any) -> bool:
        return isinstance(self.value(arg), torch.Tensor)

    def const(self, arg: Any, what: str) -> Any:
        """A plain Python value: a size the shape pass knows as a number is that number."""
        return plain(self, self.value(arg), what)

    def ref(self, arg: Any) -> Ref:
        """The spec reference of a tensor argument."""
        if not isinstance(arg, fx.Node) or arg not in self.refs:
            raise Unexpressible(f"reads {arg!r}, which is not a tensor the spec holds")
        found = self.refs[arg]
        if isinstance(found, Unexpressible):  # reported where it is read: the spec needs it
            raise cannot("LS160", f"{self.where}: {found}", _hint(found))
        return found

    # --- writing nodes --------------------------------------------------------------------------

    def fresh(self, hint: str) -> str:
        base = "".join(c if c.isalnum() or c == "_" else "_" for c in hint) or "node"
        if not valid_name(base) or base[0].isdigit():
            base = f"n_{base}"
        name, n = base, 1
        while name in self.taken:
            name, n = f"{base}_{n}", n + 1
        self.taken.add(name)
        return name

    def emit(self, op: str, inputs: list[Ref], hint: str, outputs: int = 1) -> Ref:
        self.body.nodes.append(Node(self.fresh(hint), op, inputs, outputs=outputs))
        return Ref(len(self.body.nodes) - 1)

    def add(self, node: Node) -> Ref:
        self.body.nodes.append(node)
        return Ref(len(self.body.nodes) - 1)

    # --- the graph ------------------------------------------------------------------------------

    def build(self) -> Body:
        grouped = self.ctx.rules.chains(self)
        for n in self.t.graph.nodes:
            try:
                if n in grouped:
                    grouped[n](n)
                else:
                    self._node(n)
            except Unexpressible as e:
                self.refs[n] = Unexpressible(f"{_call_text(n)} {e}")
        self._unused_state()
        self.body.prune()
        return self.body

    def _node(self, n: fx.Node) -> None:
        if n.op == "placeholder":
            self._placeholder(n)
        elif n.op == "get_attr":
            self.refs[n] = self._tensor(n)
        elif n.op == "call_module":
            self.refs[n] = self.call_module(n, str(n.target))
        elif n.op == "output":
            self._output(n)
        elif self._produces_tensors(n):
            self.refs[n] = self.ctx.rules.convert(self, n)

    def _produces_tensors(self, n: fx.Node) -> bool:
        value = self.t.values.get(n)
        leaves = torch.utils._pytree.tree_leaves(value)
        return any(isinstance(v, torch.Tensor) for v in leaves)

    def _placeholder(self, n: fx.Node) -> None:
        name = str(n.target)
        if name not in self.t.inputs:
            return  # fixed at the call (a default, a literal): not an input
        spec_name = name if valid_name(name) and name not in self.taken else self.fresh(name)
        self.taken.add(spec_name)
        self.body.inputs.append(spec_name)
        if self.is_tensor(n):
            self.refs[n] = Ref(input=spec_name)
        else:
            self.refs[n] = Unexpressible(f"takes '{name}', which is not a tensor (a spec's "
                                         "inputs are tensors)")

    def _output(self, n: fx.Node) -> None:
        out = n.args[0]
        items = list(out) if isinstance(out, (tuple, list)) else [out]
        if isinstance(out, Mapping) or not items:
            kind = "a dict" if isinstance(out, Mapping) else "nothing"
            raise cannot("LS160", f"{self.where} returns {kind}: a spec returns tensors or a "
                         "tuple of them")
        self.body.outputs = [self.ref(x) for x in items]

    def _tensor(self, n: fx.Node) -> Ref:
        """A free parameter or buffer of this module, as a node of its own name."""
        target = str(n.target)
        if "." in target:
            raise Unexpressible(f"reads '{target}', a tensor of its submodule "
                                f"'{target.rpartition('.')[0]}': a spec reads a layer's tensors "
                                "only through the layer")
        if target in self.read:
            return next(Ref(i) for i, node in enumerate(self.body.nodes) if node.name == target)
        self.check_name(target, "tensor")
        tensor = getattr(self.module, target, None)
        full = f"{self.t.path}.{target}" if self.t.path else target
        original = self.ctx.originals.get(full)
        if isinstance(tensor, nn.Parameter):
            op, trainable = self.ctx.rules.parameter(tensor, original), tensor.requires_grad
        elif target in dict(self.module.named_buffers(recurse=False)):
            op, trainable = self.ctx.rules.buffer(self, target, original), True
        elif target.startswith("_tensor_constant"):
            raise Unexpressible("is a tensor forward computed from the module's attributes "
                                "alone (torch.fx folds it into a constant): a spec holds "
                                "parameters and buffers, and computes from its inputs")
        else:
            raise Unexpressible(f"reads the tensor attribute '{target}', which is neither a "
                                "parameter nor a buffer")
        self.read.add(target)
        self.taken.add(target)
        return self.add(Node(target, op, [], trainable=trainable, stateful=True))

    def check_name(self, name: str, what: str) -> None:
        """A module or tensor name a spec node can take (an index for nn.Sequential's)."""
        if name.isdigit() and what == "module":
            return
        if not valid_name(name) or name in RESERVED_NAMES:
            why = "lazyspec's own module uses it" if name in RESERVED_NAMES else \
                "a node name is letters, digits and _"
            raise cannot("LS160", f"{self.where}: its {what} {name!r} cannot be a spec node's "
                         f"name ({why})", "rename the attribute")

    # --- submodule calls ------------------------------------------------------------------------

    def call_module(self, n: fx.Node, target: str) -> Ref:
        if "." in target:
            raise Unexpressible(f"calls '{target}', a module inside its child "
                                f"'{target.partition('.')[0]}': a spec node calls its own "
                                "list's modules")
        self.check_name(target, "module")
        child = self.module.get_submodule(target)
        traced = self.ctx.trace.child(self.t, n)
        inputs = self.module_inputs(n, child, traced)
        if target in self.called:
            first = self.body.nodes[self.called[target]]
            if first.name is None:
                raise Unexpressible(f"calls '{target}' a second time: a spec shares only named "
                                    "nodes")
            return self.add(Node(self.fresh(f"{target}_again"), "", inputs, share=first.name))
        body = Builder(self.ctx, traced).build() if traced is not None else None
        if body is not None and not body.nodes:  # forward returns an input: nothing to write
            if len(body.outputs) != 1 or body.outputs[0].input not in body.inputs:
                raise Unexpressible("returns its inputs as they are, several of them")
            return inputs[body.inputs.index(str(body.outputs[0].input))]
        node = self.module_node(child, target, traced, inputs, n, body)
        if node.name is None and int(target) != len(self.body.nodes):
            raise cannot("LS160", f"{self.where} calls its module '{target}' as node "
                         f"{len(self.body.nodes)}: a spec names a module '{target}' only as "
                         f"the node at index {target}")
        self.called[target] = len(self.body.nodes)
        return self.add(node)

    def module_node(self, child: nn.Module, target: str, traced: Traced | None,
                    inputs: list[Ref], n: fx.Node, body: Body | None = None) -> Node:
        name = None if target.isdigit() else target
        path = f"{self.t.path}.{target}" if self.t.path else target
        if traced is None:
            call = self.ctx.leaf(child, path)
            return Node(name, call.text(), inputs, trainable=_trainable(child, path),
                        stateful=True, outputs=_count(self.t.values.get(n)))
        body = body or Builder(self.ctx, traced).build()
        # a named `repeat:` keeps the copies' names (`layers.0`); at an index (a Sequential in a
        # Sequential) a name cannot be a number and an unnamed repeat would splice the copies
        # into the parent's indices, so such a chain is written as a block
        repeated = _uniform_chain(body) if isinstance(child, nn.Sequential) else None
        if repeated is not None and name is not None:
            return Node(name, repeated[0], inputs, repeat=repeated[1], stateful=True)
        block = self.ctx.blocks.name_for(body, _wanted_name(child, target))
        return Node(name, block, inputs, stateful=True, outputs=len(body.outputs))

    def module_inputs(self, n: fx.Node, child: nn.Module, traced: Traced | None) -> list[Ref]:
        """The tensors a module call passes, in forward's order; other arguments must be
        forward's defaults (a spec passes only tensors) or fixed for its trace."""
        import inspect

        try:
            signature = inspect.signature(child.forward)
            bound = signature.bind(*n.args, **n.kwargs)
        except (TypeError, ValueError) as e:
            raise Unexpressible(f"does not match its forward: {e}") from None
        refs: list[Ref] = []
        for name, p in signature.parameters.items():
            if name not in bound.arguments:
                continue
            value = bound.arguments[name]
            if traced is not None and name not in traced.inputs:
                continue  # a literal fixed for the trace: part of the block
            if isinstance(value, fx.Node) and self.is_tensor(value):
                if traced is None and len(refs) != list(signature.parameters).index(name):
                    raise Unexpressible(f"passes '{name}' after leaving out an argument before "
                                        "it: a spec passes a module's tensors in order")
                refs.append(self.ref(value))
            elif not (p.default is not p.empty and _equal(value, p.default)) and \
                    not _unread_output(child, name, n):
                raise Unexpressible(f"passes {name}={value!r}: a spec passes only tensors to a "
                                    "module")
        return refs

    def _unused_state(self) -> None:
        """Every child with tensors must be called, every own tensor read: a spec holds only
        what its data flows through."""
        for name, child in self.module.named_children():
            holds = any(True for _ in child.parameters()) or any(True for _ in child.buffers())
            if holds and name not in self.called and name not in self.group_called:
                raise cannot("LS160", f"{self.where}: its module '{name}' "
                             f"({type(child).__name__}) holds tensors but forward never calls "
                             "it", "a spec holds only the modules its data flows through")
        own = [n for n, _ in self.module.named_parameters(recurse=False)] + \
            [n for n, _ in self.module.named_buffers(recurse=False)]
        for name in own:
            if name not in self.read:
                raise cannot("LS160", f"{self.where}: its tensor '{name}' is never read by "
                             "forward", "a spec holds only the tensors its data flows through")


def plain(b: Builder, value: Any, what: str) -> Any:
    """A value as a Python constant; a size known as a number is that number."""
    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        expr = b.ctx.trace.env.simplify(value.node.expr)
        if not expr.is_number:
            raise Unexpressible(f"takes {what}, which depends on the input's shape ({expr}) in "
                                "a way no spec op holds")
        kind = {torch.SymInt: int, torch.SymFloat: float, torch.SymBool: bool}[type(value)]
        return kind(expr)
    if isinstance(value, torch.Tensor):
        raise Unexpressible(f"takes a tensor as {what}, where a spec op takes a number")
    if isinstance(value, (list, tuple)):
        return type(value)(plain(b, v, what) for v in value)
    return value



def _hint(e: Unexpressible) -> str:
    return ("a spec computes with torch.nn layers and its built-in ops (docs/spec-language.md "
            "17); write this part of forward with them, or as a torch.nn layer")


def _call_text(n: fx.Node) -> str:
    """`torch.ones(...)`, `Tensor.masked_fill(...)`: the call as a message names it."""
    if n.op == "get_attr":
        return f"`self.{n.target}`"
    if n.op == "call_method":
        return f"Tensor.{n.target}(...)"
    if n.op == "call_module":
        return f"the call of '{n.target}'"
    target = n.target
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", str(target))
    symbols = {"add": "+", "sub": "-", "mul": "*", "truediv": "/", "floordiv": "//",
               "matmul": "@", "getitem": "[]", "invert": "~", "neg": "unary -", "pow": "**"}
    if module in ("_operator", "operator") and name in symbols:
        return f"`{symbols[name]}`"
    module = {"torch._C._nn": "torch.nn.functional", "torch._C._VariableFunctions": "torch",
              "_operator": "operator"}.get(module, module)
    return f"{module}.{name}(...)" if module else f"{name}(...)"


# Forward arguments that change only one output of a layer: left out when nothing reads it.
_ONLY_OUTPUT = {("MultiheadAttention", "need_weights"): 1,
                ("MultiheadAttention", "average_attn_weights"): 1}


def _unread_output(child: nn.Module, name: str, n: fx.Node) -> bool:
    index = _ONLY_OUTPUT.get((type(child).__name__, name))
    if index is None or not nameable(child):
        return False
    return not any(u.target is operator.getitem and u.args[1] == index and u.users
                   for u in n.users)


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:
        return False


def _count(value: Any) -> int:
    return len(value) if isinstance(value, (tuple, list)) else 1


def _trainable(module: nn.Module, path: str) -> bool:
    flags = {p.requires_grad for p in module.parameters()}
    if len(flags) > 1:
        raise cannot("LS160", f"module '{path}' ({type(module).__name__}) has both frozen and "
                     "trainable parameters: a spec freezes a whole node",
                     "freeze all of its parameters, or none")
    return flags != {False}


def _uniform_chain(body: Body) -> tuple[str, int] | None:
    """(op, n) when the body is n unnamed nodes of one op, each reading the one before: an
    nn.Sequential of identical copies, written as a named `repeat:`."""
    if len(body.inputs) != 1 or not body.nodes:
        return None
    ops = {n.op for n in body.nodes}
    for i, n in enumerate(body.nodes):
        expected = [Ref(i - 1)] if i else [Ref(input=body.inputs[0])]
        if n.name is not None or n.share or n.repeat is not None or n.inputs != expected \
                or not n.trainable or n.outputs != 1:
            return None
    if len(ops) != 1 or body.outputs != [Ref(len(body.nodes) - 1)]:
        return None
    return ops.pop(), len(body.nodes)


def _wanted_name(child: nn.Module, target: str) -> str:
    """A block's name: its class's, or for a container its attribute's (`layer1` -> Layer1)."""
    if isinstance(child, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
        return target[:1].upper() + target[1:] if not target.isdigit() else f"Seq{target}"
    return type(child).__name__
