"""The materialised model as explicit nodes: what every export target writes.

Reads the compiled module after a successful dry run (which materialises it): every lazy layer has
become its non-lazy class with its input size fixed, and the steps of every SpecModule still say
how data flows. The node kinds come from the compiler's NodeInfo records.
"""

from __future__ import annotations

import inspect
import itertools
import keyword
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from lazyspec import ops
from lazyspec.builtin_ops import BUILTIN_OPS
from lazyspec.compile import Built, NodeKind, Pick, SpecModule, Step
from lazyspec.result import InferResult
from lazyspec.spec.parse import NAME_RE
from lazyspec.tensors import TensorDecl
from lazyspec.textsafe import visible


class ExportError(ValueError):
    """The model holds something an explicit form cannot write (a bug or an exotic layer)."""


@dataclass(frozen=True)
class Call:
    """One op with literal arguments, as the explicit spec writes it."""

    op: str  # the name a spec resolves: "Linear", "Add", "mypkg.Scale"
    cls: type[nn.Module]
    args: tuple[Any, ...]
    kwargs: tuple[tuple[str, Any], ...]
    lazy_inside: bool = False  # a class from an allowed package that builds lazy layers itself


@dataclass(frozen=True)
class Node:
    """One step of a SpecModule. kind: op, block, repeat (identical copies), share, skip or
    tensor (a Parameter or Buffer node)."""

    local: str  # its name in the parent: "fc", "3", "3(repeat 0)"
    named: bool
    inputs: tuple[Pick, ...]
    kind: Literal["op", "block", "repeat", "share", "skip", "tensor"]
    call: Call | None = None  # op; repeat of an op
    block: str | None = None  # block: its generated block; repeat of a block
    count: int = 1  # repeat: copies; skip: list indices it takes (0 for `repeat: 0`)
    share: str | None = None  # share (and a skipped share): the target's name
    skipped: str | None = None  # skip: "when: false" or "repeat: 0"
    shown_op: str = ""  # skip: the op as the spec named it
    tensor: TensorDecl | None = None  # tensor: its declaration, every size filled in
    copy_names: tuple[str, ...] = ()  # repeat: its copies' names (when not 0 .. n-1)
    names: str | None = None  # repeat: the `names:` template that gave them
    threads: int = 0  # repeat: outputs a copy passes to the next (0: language version 1)
    frozen: bool = False  # every parameter it makes is frozen (`trainable: false`)


@dataclass(frozen=True)
class Body:
    """A node list: the model's, or one generated block's."""

    input_names: tuple[str, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[Pick, ...]


@dataclass
class Plan:
    root: Body
    blocks: dict[str, Body]  # generated name -> body, each after the blocks it uses
    first_block: dict[str, str]  # the spec's block name -> its first generated block

    def notes(self) -> list[str]:
        """What the explicit forms cannot make explicit."""
        lazy = sorted({n.call.op for b in [self.root, *self.blocks.values()] for n in b.nodes
                       if n.call is not None and n.call.lazy_inside})
        return [f"Note: {op} builds lazy layers of its own; they take their sizes on the "
                "model's first forward pass (run one batch before loading a state dict)."
                for op in lazy]


SPEC_RESERVED = frozenset(ops.known_names())  # a block named so would hide the op
# Names the generated code uses: no block class or variable may take them.
PY_RESERVED = frozenset({*keyword.kwlist, *keyword.softkwlist, "torch", "nn", "F", "Chain",
                          "self", "annotations", "getattr", "setattr", "range", "super", "float"})


def make_plan(built: Built, reserved: frozenset[str]) -> Plan:
    """The explicit nodes of a materialised model, its blocks generated once per distinct body."""
    planner = _Planner(reserved)
    root = planner.body(built.module)
    return Plan(root, planner.blocks, planner.first_block)


class _Planner:
    def __init__(self, reserved: frozenset[str]):
        self.reserved = reserved
        self.blocks: dict[str, Body] = {}
        self.first_block: dict[str, str] = {}
        self.by_key: dict[tuple[str, str], str] = {}

    def body(self, module: SpecModule) -> Body:
        return Body(tuple(module.input_names),
                    tuple(self.node(module, step) for step in module.steps),
                    tuple(_plain(p) for p in module.outputs))

    def node(self, owner: SpecModule, step: Step) -> Node:
        info, module = step.info, step.module
        inputs = tuple(_plain(p) for p in step.inputs)
        if step.tensor is not None:
            return _tensor_node(owner, step, inputs)
        if info.kind is NodeKind.SKIP and info.skipped is not None:
            return Node(info.local, info.named, inputs[:1], "skip", count=info.indices,
                        skipped=info.skipped, share=info.share_target, shown_op=info.op)
        if module is None:
            raise ExportError(f"node '{info.path}' has no module: export a spec that compiles "
                              "and runs")
        if info.kind is NodeKind.SHARE:
            target = (info.shared_from or "").rpartition(".")[2]
            return Node(info.local, info.named, inputs, "share", share=target)
        frozen = _frozen(module)
        if isinstance(module, SpecModule):
            if info.kind is NodeKind.REPEAT:
                return replace(self.repeat(module, step, inputs), frozen=frozen)
            return Node(info.local, info.named, inputs, "block",
                        block=self.block(self.body(module), info.block or info.op),
                        frozen=frozen)
        return Node(info.local, info.named, inputs, "op", call=explicit_call(step),
                    frozen=frozen)

    def repeat(self, container: SpecModule, step: Step, inputs: tuple[Pick, ...]) -> Node:
        """A named `repeat:`: one node with `repeat: n` when every copy is the same, else a
        generated block holding the copies as its nodes (same parameter names)."""
        local, named = step.info.local, step.info.named
        body = self.body(container)
        first = body.nodes[0]
        if all((c.kind, c.call, c.block) == (first.kind, first.call, first.block)
               for c in body.nodes):
            names = tuple(c.local for c in body.nodes)
            return Node(local, named, inputs, "repeat", call=first.call, block=first.block,
                        count=len(body.nodes),
                        copy_names=() if names == tuple(map(str, range(len(names)))) else names,
                        names=step.info.names, threads=_threads(container))
        base = first.block or (first.call.op if first.call else "Node")
        return Node(local, named, inputs, "block",
                    block=self.block(body, f"{base.rsplit('.', 1)[-1]}_x{len(body.nodes)}"))

    def block(self, body: Body, base: str) -> str:
        """The generated block for this body: one per distinct body of each spec block."""
        key = (base, repr(body))
        if key not in self.by_key:
            name = self.fresh(base)
            self.by_key[key] = name
            self.blocks[name] = body
            self.first_block.setdefault(base, name)
        return self.by_key[key]

    def fresh(self, base: str) -> str:
        stem = base if NAME_RE.match(base) else "Block"
        for n in itertools.count(1):
            name = stem if n == 1 else f"{stem}_{n}"
            if name not in self.blocks and name not in self.reserved:
                return name
        raise AssertionError("unreachable")


def _tensor_node(owner: SpecModule, step: Step, inputs: tuple[Pick, ...]) -> Node:
    """A Parameter or Buffer node, with the sizes its tensor has now."""
    decl = step.tensor
    assert decl is not None
    value = getattr(owner, decl.name)
    if decl.kind == "parameter":
        decl = replace(decl, shape=tuple(int(d) for d in value.shape),
                       trainable=bool(value.requires_grad))
    return Node(step.info.local, step.info.named, inputs, "tensor", tensor=decl)


def _frozen(module: nn.Module) -> bool:
    """Every parameter of the node's module is frozen (`trainable: false`)."""
    params = list(module.parameters())
    return bool(params) and not any(p.requires_grad for p in params)


def _threads(container: SpecModule) -> int:
    """How many values a copy of a repeat container hands the next copy besides the node's
    other inputs: 0 when it hands on its output alone (language version 1, or one input), 1 for
    its output in place of the first input, m for a copy that returns m values."""
    if len(container.steps) < 2:
        return 0
    second = container.steps[1].inputs
    previous = [p for p in second if p.slot == len(container.input_names)]
    if len(previous) == 1 and previous[0].output is None:
        return 1 if len(second) > 1 else 0
    return len(previous)


def _plain(p: Pick) -> Pick:
    """A pick without the reference as written: bodies compare by their data flow alone."""
    return Pick(p.slot, p.output)


def explicit_call(step: Step) -> Call:
    """The op of a step with literal arguments; a materialised lazy layer becomes its non-lazy
    class, with the input size it inferred (LazyLinear(256) -> Linear(20, 256))."""
    factory, module = step.factory, step.module
    if factory is None or module is None:
        raise ExportError(f"node '{step.info.path}' has no op to write")
    cls = factory.cls
    if not issubclass(cls, LazyModuleMixin):
        inside = op_name(cls, "") != cls.__name__ and any(
            isinstance(m, LazyModuleMixin) for m in factory(torch.device("meta")).modules())
        return Call(op_name(cls, step.info.op), cls, factory.args, tuple(factory.kwargs.items()),
                    inside)
    if isinstance(module, LazyModuleMixin) and module.has_uninitialized_params():
        raise ExportError(f"node '{step.info.path}' ({step.info.op}) is still lazy: export after "
                          "a dry run that reaches it")
    target = type(module) if type(module) is not cls else cls.cls_to_become
    if target is None or issubclass(target, LazyModuleMixin):
        # A lazy class with no non-lazy form: keep it as written (it still infers its sizes).
        return Call(op_name(cls, step.info.op), cls, factory.args, tuple(factory.kwargs.items()))
    return _non_lazy(step, cls, target, module)


def _non_lazy(step: Step, lazy: type[nn.Module], target: type[nn.Module],
              module: nn.Module) -> Call:
    """Bind the lazy call, then fill the target's signature: the arguments given, the lazy
    class's defaults where the target's differ, and each parameter the lazy class lacks (the
    inferred size: in_features, in_channels, num_features) from the materialised module."""
    assert step.factory is not None
    lazy_sig, target_sig = ops.OpDef("", lazy, "").signature, ops.OpDef("", target, "").signature
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    if any(p.kind in variadic for p in lazy_sig.parameters.values()):
        raise ExportError(f"{lazy.__name__} takes *args or **kwargs: cannot map its arguments "
                          f"onto {target.__name__}")
    given = lazy_sig.bind(*step.factory.args, **step.factory.kwargs).arguments
    lost = [name for name in given if name not in target_sig.parameters]
    if lost:
        raise ExportError(f"node '{step.info.path}': {target.__name__} has no argument "
                          f"{', '.join(map(repr, lost))} of {lazy.__name__}")
    positional = set(list(lazy_sig.parameters)[:len(step.factory.args)])
    values: dict[str, Any] = {}
    inferred: set[str] = set()
    for name, p in target_sig.parameters.items():
        if name in ("device", "dtype") or p.kind in variadic:
            continue
        if name in given:
            values[name] = given[name]
        elif name in lazy_sig.parameters:
            default = lazy_sig.parameters[name].default
            if default is not p.empty and (p.default is p.empty or default != p.default):
                values[name] = default
        elif hasattr(module, name):
            values[name] = getattr(module, name)
            inferred.add(name)
        elif p.default is p.empty:
            raise ExportError(f"node '{step.info.path}': {target.__name__} needs '{name}', which "
                              f"the materialised {lazy.__name__} does not hold")
    # Leading arguments go by position (the inferred size and those written so), the rest by
    # keyword: Linear(20, 256, bias=false), Conv2d(3, 64, 7, stride=2, ...).
    args: list[Any] = []
    kwargs: list[tuple[str, Any]] = []
    by_position = True
    for name, p in target_sig.parameters.items():
        if name not in values:
            by_position = False
            continue
        by_position = by_position and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) \
            and (name in positional or name in inferred)
        if by_position:
            args.append(values[name])
        else:
            kwargs.append((name, values[name]))
    return Call(op_name(target, ""), target, tuple(args), tuple(kwargs))


def op_name(cls: type[nn.Module], written: str) -> str:
    """The name a spec resolves to this class."""
    if BUILTIN_OPS.get(cls.__name__) is cls or ops.torch_nn_ops().get(cls.__name__) is cls:
        return cls.__name__
    return written or f"{cls.__module__}.{cls.__qualname__}"


def header(built: Built, result: InferResult, prefix: str, notes: list[str]) -> str:
    runs = " ".join(f"--input {r.name}={','.join(map(str, r.shape))}:{r.dtype}"
                    for r in result.inputs)
    options = [runs]
    if built.options.dtype != "float32":
        options.append(f"--dtype {built.options.dtype}")
    if built.options.scale:
        options.append(f"--scale {built.options.scale}")
    options += [f"--set {k}={v}" for k, v in built.options.overrides.items()]
    options += [f"--allow {pkg}" for pkg in built.options.allow]
    lines = [f"Exported by `lazyspec export` from {built.spec.path} ({' '.join(options)}).",
             "Every size the dry run inferred is written out; parameter names are the spec's.",
             *notes]
    return "".join(prefix + visible(line) + "\n" for line in lines)  # one line each, escaped
