"""Spec -> nn.Module of lazy modules. No I/O, no printing.

Evaluates params, op arguments, `repeat` and `when`; binds every op call to its signature before
any tensor exists; builds each module directly on the target device. All problems are collected
and raised together as one SpecError.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, NamedTuple, Protocol

import torch
from torch import nn

from lazyspec import ops
from lazyspec.checks import DeclaredInput, check_block_inputs
from lazyspec.construction import (
    MAX_OP_TENSORS,
    ConstructionLimit,
    bounded,
    installed,
    responsible_argument,
)
from lazyspec.errors import (
    AlreadyReported,
    Diagnostic,
    Location,
    SpecError,
    UsageError,
    dedupe,
    did_you_mean,
    shown,
    usage_error,
)
from lazyspec.options import BuildOptions, check_device
from lazyspec.spec.expr import Arg, Expr, OpCall, Span, parse_expr, resolve
from lazyspec.spec.model import Block, Graph, Node, Param, Ref, Spec, Tie
from lazyspec.spec.parse import MAX_NAME_CHARS, NAME_RE
from lazyspec.tensors import (
    MAX_MODEL_BUFFER_ELEMENTS,
    SIGNATURES,
    TENSOR_OPS,
    TensorDecl,
    declare,
    initialise,
    make_tensor,
)
from lazyspec.ties import check_ties

MAX_BLOCK_DEPTH = 32
# A node's dotted path (`encoder.layers.3.attn`): names are capped, blocks nest at most 32 deep,
# and the path is capped too, so a spec's report is at most about 20,000 rows of this length.
# Real paths are far shorter (T5's longest, with its parameter name, is 61 characters).
MAX_PATH_CHARS = 1_024
FAILED = object()  # an expression that could not be evaluated (already reported)

# Where the model is built and in which dtype is the choice of the person running lazyspec
# (--device, --dtype): a spec's `device='cpu'` would make the default `meta` dry run allocate
# real memory. These arguments place tensors, set their dtype or layout, or pass tensors in.
PLACEMENT_ARGS = {
    "device": "--device chooses where lazyspec builds (meta by default, which allocates nothing)",
    "dtype": "--dtype chooses the parameter dtype",
    "device_ids": "it places the module on devices", "output_device": "it places tensors",
    "layout": "it chooses how tensors are stored", "memory_format": "it chooses how tensors are "
    "stored", "pin_memory": "it allocates pinned memory", "factory_kwargs": "it places tensors",
}


class NodeKind(enum.Enum):
    """What a compiled node is. Reports, the graph and export read it; nothing parses labels."""

    OP = "op"  # one op's module: a torch.nn class, a built-in op, a class from an allowed package
    BLOCK = "block"  # a call of one of the spec's blocks: a SpecModule of its own nodes
    REPEAT = "repeat"  # a named `repeat:` container holding its copies name.0 ... name.{n-1}
    COPY = "copy"  # one copy made by `repeat:`, in its container or spliced into the list
    SHARE = "share"  # a `share:` node: calls an earlier node's module again
    SKIP = "skip"  # passes its first input through: `when: false`, `repeat: 0` (or it failed)
    TENSOR = "tensor"  # a `Parameter(...)` or `Buffer(...)` held by its list's module


@dataclass
class NodeInfo:
    """One node of the compiled model, as reports show it."""

    path: str  # module path from the root, e.g. layer2.0.conv1
    op: str  # the op as the spec names it (block name for a block call), for display
    loc: Location
    trail: tuple[str, ...]  # e.g. ("layer2", "Stage", "0", "BasicBlock", "conv1")
    order: int  # pre-order position, for printing nested nodes in spec order
    kind: NodeKind = NodeKind.OP
    local: str = ""  # its name in the enclosing list: `fc`, `3`, `3(repeat 0)`
    named: bool = False  # named in the spec; otherwise by its index in the list
    indices: int = 1  # list indices it takes: an unnamed `repeat: n` takes n, `repeat: 0` none
    block: str | None = None  # the spec block its op calls (also when skipped)
    copies: int = 0  # REPEAT: how many copies the container holds
    names: str | None = None  # REPEAT: the `names:` template of its copies
    share_target: str | None = None  # the node named by `share:` (also when skipped)
    module_path: str | None = None  # where its module is registered; None: passthrough
    shared_from: str | None = None  # path of the node that owns the module a share calls
    skipped: str | None = None  # why it passes its input through (when false, repeat 0)

    @property
    def depth(self) -> int:
        return self.path.count(".")


class Pick(NamedTuple):
    """Where a step's input comes from: a slot, an output index for `name.K`, the reference as
    written (for messages; None for the links the compiler makes itself)."""

    slot: int
    output: int | None = None
    ref: Ref | None = None


class OutputIndexError(Exception):
    """`name.K` where the node does not return a K-th output."""

    def __init__(self, message: str, where: Location | None):
        super().__init__(message)
        self.where = where


def pick(values: list[Any], p: Pick) -> Any:
    value = values[p.slot]
    if p.output is None:
        return value
    text, where = (p.ref.text, p.ref.loc) if p.ref else (f".{p.output}", None)
    if not isinstance(value, (tuple, list)):
        shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise OutputIndexError(f"'{text}': the node returns one tensor {shape}, not several "
                               "outputs", where)
    if not -len(value) <= p.output < len(value):
        raise OutputIndexError(f"'{text}': the node returns {len(value)} outputs "
                               f"(0..{len(value) - 1})", where)
    return value[p.output]


@dataclass(frozen=True)
class Factory:
    """Builds one op's module on a device: the build itself, and the dry run's CPU fallback
    for an op that has no `meta` kernel."""

    cls: type[nn.Module]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    dtype: torch.dtype
    limit: int = MAX_OP_TENSORS  # ConstructionLimit past this many modules and tensors

    def __call__(self, device: torch.device) -> nn.Module:
        return self.counted(device, self.limit)[0]

    def counted(self, device: torch.device, limit: int) -> tuple[nn.Module, int]:
        """The op built on `device`, and the modules and tensors its constructor made (beside
        the op's own module); ConstructionLimit past `limit`."""
        with bounded(limit) as budget:
            module = self.build(device, list(self.args), self.kwargs)
        return module, budget.count

    def build(self, device: torch.device, args: list[Any], kwargs: dict[str, Any]) -> nn.Module:
        """The op built with these arguments, lazyspec's device and dtype added (unbounded:
        callers bound it)."""
        params = ops.OpDef(self.cls.__name__, self.cls, "").signature.parameters
        kwargs = dict(kwargs)
        if "device" in params and "device" not in kwargs:
            kwargs["device"] = device
        if "dtype" in params and "dtype" not in kwargs and self.dtype.is_floating_point:
            kwargs["dtype"] = self.dtype
        with device:  # modules without a `device` argument still build in place
            return self.cls(*args, **kwargs)


class StepTracer(Protocol):
    """What runs each step during a traced pass (the dry run's tracer, the symbolic one)."""

    def run(self, owner: SpecModule, step: Step, values: list[Any]) -> Any: ...


@dataclass
class Step:
    info: NodeInfo
    module: nn.Module | None  # None: pass the first input through (or a tensor node)
    inputs: tuple[Pick, ...]
    factory: Factory | None = None  # how `module` was built (ops only, not blocks)
    tensor: TensorDecl | None = None  # a tensor node: the owner's parameter or buffer


class SpecModule(nn.Module):
    """The compiled form of a node list: children registered with the spec's names, run in order.

    Values live in numbered slots: the inputs first, then one per step.
    """

    def __init__(self, input_names: list[str]):
        super().__init__()
        self.input_names = list(input_names)
        self.steps: list[Step] = []
        self.outputs: list[Pick] = []
        self.tracer: StepTracer | None = None  # set by trace.tracing() during a traced pass
        self.block_name: str | None = None  # the spec block it compiles, if any
        self.declared_inputs: list[DeclaredInput] = []  # that block's declared input shapes

    def gather(self, values: list[Any], step: Step) -> list[Any]:
        return [pick(values, p) for p in step.inputs]

    def forward(self, *args: Any) -> Any:
        if len(args) != len(self.input_names):
            raise TypeError(f"expects {len(self.input_names)} input(s) "
                            f"({', '.join(self.input_names)}), got {len(args)}")
        if self.declared_inputs and self.block_name is not None:
            check_block_inputs(self.block_name, self.declared_inputs, args)
        values = list(args)
        for step in self.steps:
            if self.tracer is not None:
                values.append(self.tracer.run(self, step, values))
                continue
            values.append(self.run_step(step, self.gather(values, step)))
        outs = [pick(values, p) for p in self.outputs]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def run_step(self, step: Step, xs: list[Any]) -> Any:
        """What one step does with its inputs."""
        if step.tensor is not None:
            return self.tensor_value(step.tensor, xs)
        return xs[0] if step.module is None else step.module(*xs)

    def tensor_value(self, decl: TensorDecl, xs: list[Any]) -> torch.Tensor:
        """A tensor node's value: the parameter or buffer this module holds under the node's
        name; a parameter with sizes from its input takes them on the first pass."""
        value = getattr(self, decl.name)
        if isinstance(value, nn.parameter.UninitializedParameter):
            value.materialize(decl.shape_for(tuple(xs[0].shape)))
            initialise(value, decl.init)
        assert isinstance(value, torch.Tensor)
        return value


# Names a node cannot take: they are attributes of the module that holds it.
RESERVED_NAMES = frozenset(dir(SpecModule([])))


@dataclass
class Built:
    """A compiled spec: the module, its nodes in spec order, and what the dry run needs."""

    spec: Spec
    module: SpecModule
    nodes: list[NodeInfo]
    params: Mapping[str, Any]
    options: BuildOptions
    ties: list[Tie]
    warnings: list[Diagnostic] = field(default_factory=list)  # unused inputs, dead nodes

    @cached_property
    def owners(self) -> dict[str, NodeInfo]:
        """Module path -> the node that built the module (shares excluded)."""
        return {n.module_path: n for n in self.nodes if n.module_path is not None
                and n.shared_from is None}

    def owner_of(self, module_path: str) -> NodeInfo | None:
        """The innermost node whose module holds `module_path` (a module or parameter owner)."""
        path = module_path
        while True:
            if path in self.owners:
                return self.owners[path]
            if not path:
                return None
            path = path.rpartition(".")[0]


# --- params -------------------------------------------------------------------------------------


class _Need(Exception):
    """Raised inside a param's evaluation: it read `key`, which is not worked out yet."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


class _LazyEnv(Mapping[str, Any]):
    """Params evaluated on first use, so a param may depend on another in any order.

    Without recursion: a param whose evaluation reads one not yet worked out stops (`_Need`);
    that one is worked out first, on a stack of our own, and the reader evaluated again. So a
    chain of thousands (`a: ${b}`, `b: ${c}`, ...) resolves, in the order and with the results a
    recursive evaluation would give: a cycle is what an evaluation really reads (not a branch
    never taken), and a failure fails every param waiting on it, reported once."""

    def __init__(self, raw: Mapping[str, Param], parent: Mapping[str, Any] | None,
                 problems: list[Diagnostic]):
        self.raw, self.parent, self.problems = raw, parent or {}, problems
        self.done: dict[str, Any] = {}
        self.active: dict[str, None] = {}  # waiting on the next, in order (a dict: fast `in`)
        self.failed: set[str] = set()  # reported once, even when several params reach it

    def __getitem__(self, key: str) -> Any:
        if key in self.done:
            return self.done[key]
        if key in self.failed:
            raise AlreadyReported  # reported where it failed; readers of it stay quiet
        if key not in self.raw:
            return self.parent[key]
        if key in self.active:
            chain = list(self.active)
            cycle = _cycle_text([*chain[chain.index(key):], key])
            raise SpecError([Diagnostic("LS145", f"params depend on each other: {cycle}",
                                        self.raw[key].loc, hint="break the cycle")])
        if self.active:  # read by a param being evaluated: work it out first, from the loop
            raise _Need(key)
        return self._resolve(key)

    def _resolve(self, root: str) -> Any:
        stack = [root]
        self.active[root] = None
        try:
            while stack:
                key = stack[-1]
                try:
                    value = resolve(self.raw[key].value, self)
                except _Need as need:  # evaluate `need.key`, then `key` again
                    stack.append(need.key)
                    self.active[need.key] = None
                    continue
                self.done[key] = value
                del self.active[stack.pop()]
        except SpecError:
            self.failed.update(stack)  # every param waiting on the failed one fails with it
            raise
        finally:
            for key in stack:
                self.active.pop(key, None)
        return self.done[root]

    def __contains__(self, key: object) -> bool:
        return key in self.raw or key in self.parent

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(self.parent), **dict.fromkeys(self.raw)})

    def __len__(self) -> int:
        return len(set(self.raw) | set(self.parent))

    def evaluate_all(self) -> dict[str, Any]:
        for key in self.raw:
            if key in self.failed:
                continue
            try:
                self[key]
            except SpecError as e:
                self.problems.extend(e.diagnostics)
        return dict(self.done)


def _cycle_text(names: list[str], shown: int = 8) -> str:
    """`a -> b -> a`; a long cycle with its middle left out, so the message stays a line."""
    if len(names) > 2 * shown:
        names = [*names[:shown], f"... ({len(names) - 2 * shown:,} more)", *names[-shown:]]
    return " -> ".join(names)


def resolve_params(spec: Spec, options: BuildOptions,
                   problems: list[Diagnostic]) -> Mapping[str, Any]:
    """Top-level params with the scale and `--set` applied, all evaluated."""
    raw = dict(spec.params)
    for scale_name, entries in spec.scales.items():  # every scale, chosen or not
        for name, p in entries.items():
            if name not in raw:
                problems.append(Diagnostic("LS124", f"scale '{scale_name}' sets '{name}', "
                                           "which is not a param", p.loc,
                                           hint=did_you_mean(name, raw)))
    if options.scale is not None:
        if options.scale not in spec.scales:
            raise usage_error(f"unknown scale '{options.scale}'",
                              did_you_mean(options.scale, spec.scales)
                              or ("the spec defines: " + ", ".join(spec.scales) if spec.scales
                                  else "the spec defines no `scales:`"))
        for name, p in spec.scales[options.scale].items():
            if name in raw:
                raw[name] = p
    for name, value in options.overrides.items():
        if name not in raw:
            raise usage_error(f"--set {name}: the spec has no param '{name}'",
                              did_you_mean(name, raw) or ("params: " + ", ".join(raw) if raw
                                                          else "the spec has no `params:`"))
        text = value.strip() if isinstance(value, str) else ""
        if text.startswith("${") and text.endswith("}"):
            # `--set d='${2 * base}'` is an expression, as it would be in the spec
            text = text[2:-1]
            try:
                value = parse_expr(Span(text, Location(f"--set {name}", 1, 1), False))
            except SpecError as e:  # a bad flag (exit 2), as an error in evaluating it is
                raise UsageError([Diagnostic("LS301", f"--set {name}: {d.message}", hint=d.hint)
                                  for d in e.diagnostics]) from None
        raw[name] = Param(name, value, raw[name].loc)
    env = _LazyEnv(raw, None, problems)
    env.evaluate_all()
    from_flags = [d for d in problems if d.location and d.location.path.startswith("--set ")]
    if from_flags:  # a bad `--set` expression is a bad flag (exit 2), not a bad spec
        raise UsageError([Diagnostic("LS301", f"{d.location.path}: {d.message}", hint=d.hint)
                          for d in from_flags if d.location])
    return env


# --- the builder --------------------------------------------------------------------------------


@dataclass
class _Scope:
    """One node list being compiled: the module it fills, and what its nodes see."""

    module: SpecModule
    env: Mapping[str, Any]
    prefix: str  # module path of the list, with a trailing `.` (empty at the top)
    trail: tuple[str, ...]
    stack: tuple[str, ...]  # blocks being compiled, outermost first (recursion check)
    modules: dict[str, nn.Module | None] = field(default_factory=dict)  # by name, for share:

    def add(self, step: Step) -> int:
        """Append a step; the slot of its output."""
        self.module.steps.append(step)
        return len(self.module.input_names) + len(self.module.steps) - 1

    def path_of(self, module: nn.Module | None) -> str | None:
        """The path of the first node in this list that holds `module`."""
        for name, m in self.modules.items():
            if m is module and module is not None:
                return f"{self.prefix}{name}"
        return None


class _Overlay(Mapping[str, Any]):
    """Params with a few names laid over them (the copy index of a repeated node)."""

    def __init__(self, base: Mapping[str, Any], over: dict[str, Any]):
        self.base, self.over = base, over

    def __getitem__(self, key: str) -> Any:
        return self.over[key] if key in self.over else self.base[key]

    def __contains__(self, key: object) -> bool:
        return key in self.over or key in self.base

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(self.base), **dict.fromkeys(self.over)})

    def __len__(self) -> int:
        return len(set(self.base) | set(self.over))


@dataclass
class _Names:
    """What references in a node list resolve against, filled as its nodes compile."""

    graph: Graph
    slot_of: dict[str, int] = field(default_factory=dict)  # input and node names -> slot
    by_position: list[int] = field(default_factory=list)  # node position -> slot
    later: dict[str, Node] = field(default_factory=dict)  # every named node, for LS131

    def __post_init__(self) -> None:
        self.slot_of = {name: i for i, name in enumerate(self.graph.input_names)}
        self.later = {n.name: n for n in self.graph.layers if n.name is not None}



class _Builder:
    def __init__(self, spec: Spec, options: BuildOptions):
        self.spec, self.options = spec, options
        self.problems: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.nodes: list[NodeInfo] = []
        self.count = 0
        self.limit_hit = False
        self.created = 0  # modules and tensors the ops' constructors made so far
        self.buffer_elements = 0  # elements of the Buffer(...) nodes made so far
        self.spec_params: Mapping[str, Any] = {}  # the top-level params, set by build()
        self.factories: dict[int, Factory] = {}  # id(module) -> how it was built
        self.device = torch.device(options.device)
        self.dtype = getattr(torch, options.dtype)

    def fail(self, code: str, message: str, loc: Location | None, trail: tuple[str, ...],
             hint: str | None = None) -> None:
        self.problems.append(Diagnostic(code, message, loc, trail=trail, hint=hint))

    def graph(self, graph: Graph, env: Mapping[str, Any], prefix: str, trail: tuple[str, ...],
              stack: tuple[str, ...]) -> SpecModule:
        scope = _Scope(SpecModule(graph.input_names), env, prefix, trail, stack)
        names = _Names(graph)
        index = 0  # the next list index an unnamed node takes
        for node in graph.layers:
            node = self.checked_name(node, names, trail)
            inputs = self.refs(node, names, trail)
            local = node.name if node.name is not None else str(index)
            repeat = self.repeat(node, env, trail)
            # An unnamed node with `repeat: n` takes n indices, as in a hand-written Sequential.
            indices = repeat if (node.name is None and node.call is not None
                                 and repeat != 1) else 1
            index += indices
            out_slot = self.node(scope, node, local, inputs, repeat, indices)
            names.by_position.append(out_slot)
            if node.name is not None:
                names.slot_of[node.name] = out_slot
        module = scope.module
        module.outputs = [x for x in (self.ref(r, names, trail, len(graph.layers))
                                      for r in graph.outputs or []) if x is not None]
        if not graph.outputs:
            module.outputs = [Pick(names.by_position[-1] if names.by_position else 0)]
        self.unused(module, graph, trail)
        return module

    def unused(self, module: SpecModule, graph: Graph, trail: tuple[str, ...]) -> None:
        """Warn (never fail) about inputs nothing reads and nodes whose output nothing reads:
        usually a wrong `in:`."""
        read = {p.slot for step in module.steps for p in step.inputs
                if step.tensor is None or step.tensor.lazy}  # a sized tensor reads nothing
        read |= {p.slot for p in module.outputs}
        for slot, name in enumerate(module.input_names):
            if slot not in read and graph.inputs:
                self.warnings.append(Diagnostic(
                    "LS150", f"input '{name}' is never used", graph.inputs[slot].loc, trail=trail,
                    severity="warning", hint="read it with `in:`, or remove it"))
        first = len(module.input_names)
        tied = [path for tie in self.spec.ties for path in (tie.target, tie.source)]
        for slot, step in enumerate(module.steps, start=first):
            # A skipped node (`when: false`, `repeat: 0`) is not computed: nothing to warn about
            # (T5's causal mask, skipped in the encoder together with the Add that reads it); a
            # node whose parameters are tied is kept for them (T5's `shared`, which the stacks
            # use through their tied copies).
            kept = any(path.startswith(f"{step.info.path}.") for path in tied)
            if slot not in read and not kept and \
                    step.info.kind not in (NodeKind.COPY, NodeKind.SKIP):
                self.warnings.append(Diagnostic(
                    "LS151", f"node '{step.info.local}' ({step.info.op}) is computed but its "
                    "output is never used", step.info.loc, trail=trail, severity="warning",
                    hint="read it with a later node's `in:` or `outputs:`, or remove it"))

    def checked_name(self, node: Node, names: _Names, trail: tuple[str, ...]) -> Node:
        if node.name is not None and node.name in names.slot_of:
            self.fail("LS115", f"name '{node.name}' is used twice in this list", node.loc,
                      trail, "each node and input in a list needs its own name")
        if node.name is not None and node.name in RESERVED_NAMES:
            self.fail("LS115", f"name '{node.name}' clashes with an nn.Module attribute",
                      node.loc, trail, f"rename the node, for example '{node.name}_'")
            return replace(node, broken=True)
        return node

    # references

    def refs(self, node: Node, names: _Names, trail: tuple[str, ...]) -> tuple[Pick, ...]:
        previous = (Pick(names.by_position[-1] if names.by_position else 0),)
        if node.inputs is None:
            return previous
        out = []
        for r in node.inputs:
            resolved = self.ref(r, names, trail, node.position)
            if resolved is not None:
                out.append(resolved)
        return tuple(out) or previous

    def ref(self, r: Ref, names: _Names, trail: tuple[str, ...], position: int) -> Pick | None:
        if isinstance(r.target, int):
            p = position + r.target
            if p >= 0:
                return Pick(names.by_position[p], r.index, r)
            if p == -1 and len(names.graph.input_names) == 1:
                return Pick(0, r.index, r)
            self.fail("LS130", f"'{r.text}' reaches before the first node", r.loc, trail,
                      "use -1 for the previous node, or name the input")
            return None
        if r.target in names.slot_of:
            return Pick(names.slot_of[r.target], r.index, r)
        if r.target in names.later:
            self.fail("LS131", f"'{r.target}' is defined later (line "
                      f"{names.later[r.target].loc.line}); a node can only read earlier nodes",
                      r.loc, trail, "move the node up, so the model stays acyclic")
            return None
        self.fail("LS130", f"unknown reference '{r.target}'", r.loc, trail,
                  did_you_mean(r.target, list(names.slot_of)) or
                  "refer to an earlier node's name, an input's name or -1, -2, ...")
        return None

    # one node

    def repeat(self, node: Node, env: Mapping[str, Any], trail: tuple[str, ...]) -> int:
        if node.repeat is None:
            return 1
        value = self.evaluate(node.repeat, env, trail)
        if value is FAILED:
            return 1
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            self.fail("LS111", f"`repeat` must be a whole number >= 0, got {shown(value)}",
                      node.repeat_loc, trail)
            return 1
        if self.count + value > self.options.max_nodes:
            self.fail("LS126", f"`repeat: {value}` would make more than "
                      f"{self.options.max_nodes:,} nodes (limit)", node.repeat_loc, trail,
                      "lower the repeat count")
            return 0
        return value

    def arguments(self, call: OpCall, env: Mapping[str, Any], trail: tuple[str, ...],
                  ) -> tuple[list[Any], dict[str, Any]] | None:
        """A call's evaluated arguments, or None when one failed (already reported: building
        would only add noise)."""
        args = [self.evaluate(a.value, env, trail) for a in call.args]
        kwargs = {k: self.evaluate(a.value, env, trail) for k, a in call.kwargs}
        if any(v is FAILED for v in [*args, *kwargs.values()]):
            return None
        return args, kwargs

    def evaluate(self, value: Any, env: Mapping[str, Any], trail: tuple[str, ...]) -> Any:
        """The value, or FAILED (reported) when it cannot be evaluated."""
        try:
            return resolve(value, env)
        except SpecError as e:
            for d in e.diagnostics:
                d.trail = d.trail or trail
            self.problems.extend(e.diagnostics)
            return FAILED

    def node(self, scope: _Scope, node: Node, local: str, inputs: tuple[Pick, ...],
             repeat: int, indices: int) -> int:
        """Compile one node of a list into steps of `scope`; the slot of its output. One
        function per kind of node: skipped, shared, spliced copies, repeat container, single."""
        trail = (*scope.trail, node.label if node.name else local)
        when = self.when(node, scope.env, trail)
        if self.path_too_long(f"{scope.prefix}{local}", node.loc, trail):
            return self.passthrough(scope, node, local, trail, inputs, indices, None)
        if node.broken or (node.call is None and node.share is None):
            return self.passthrough(scope, node, local, trail, inputs, indices, None)
        if not when or repeat == 0:
            return self.passthrough(scope, node, local, trail, inputs, indices,
                                    "when: false" if not when else "repeat: 0")
        if node.share is not None:
            return self.share(scope, node, local, trail, inputs)
        assert node.call is not None
        if node.call.name in TENSOR_OPS and node.call.name not in self.spec.blocks:
            return self.tensor_node(scope, node, local, trail, inputs)
        if node.name is None and repeat != 1:
            return self.spliced_copies(scope, node, int(local), inputs, repeat)
        if node.name is not None and node.repeat is not None:
            return self.repeat_container(scope, node, local, trail, inputs, repeat)
        return self.single(scope, node, local, trail, inputs)

    def when(self, node: Node, env: Mapping[str, Any], trail: tuple[str, ...]) -> bool:
        if node.when is None:
            return True
        value = self.evaluate(node.when, env, trail)
        return value is FAILED or bool(value)

    def info(self, scope: _Scope, node: Node, local: str, trail: tuple[str, ...],
             kind: NodeKind, **fields: Any) -> NodeInfo:
        """Record a node of the compiled model (it counts towards the node limit)."""
        op = node.call.name if node.call else (f"share:{node.share[0]}" if node.share else "?")
        block = node.call.name if node.call and node.call.name in self.spec.blocks else None
        info = NodeInfo(f"{scope.prefix}{local}", op, node.loc, trail, len(self.nodes), kind,
                        local, node.name is not None, block=block,
                        share_target=node.share[0] if node.share else None, **fields)
        self.nodes.append(info)
        self.count += 1
        return info

    def passthrough(self, scope: _Scope, node: Node, local: str, trail: tuple[str, ...],
                    inputs: tuple[Pick, ...], indices: int, skipped: str | None) -> int:
        """A node that passes its first input through: skipped by `when: false` or
        `repeat: 0`, or one that failed to parse (`skipped` None; already reported)."""
        if node.name is None and skipped == "repeat: 0":
            local = f"{local}(repeat 0)"  # takes no index: keep clear of the next node
        info = self.info(scope, node, local, trail, NodeKind.SKIP, indices=indices,
                         skipped=skipped)
        if skipped is not None and node.name is not None:
            scope.modules[node.name] = None
        return scope.add(Step(info, None, inputs[:1]))

    def share(self, scope: _Scope, node: Node, local: str, trail: tuple[str, ...],
              inputs: tuple[Pick, ...]) -> int:
        info = self.info(scope, node, local, trail, NodeKind.SHARE)
        module = self.shared(node, scope.modules, trail)
        info.module_path = info.shared_from = scope.path_of(module)
        if node.name is not None:
            scope.modules[node.name] = module  # a later node may share this one in turn
        return scope.add(Step(info, module, inputs))  # no factory: never rebuilt alone

    def spliced_copies(self, scope: _Scope, node: Node, base: int, inputs: tuple[Pick, ...],
                       repeat: int) -> int:
        """Unnamed + repeat: n copies spliced into the enclosing list, each its own index."""
        assert node.call is not None
        prev = inputs
        names = [str(base + i) for i in range(repeat)]
        for info, module in self.copies(node, scope.env, names, scope.prefix, scope.trail,
                                        scope.stack):
            if module is not None:
                scope.module.add_module(info.local, module)
            slot = scope.add(Step(info, module, prev, self.factories.get(id(module))))
            prev = self.next_inputs(node.call, inputs, slot)
        return prev[0].slot

    def repeat_container(self, scope: _Scope, node: Node, local: str, trail: tuple[str, ...],
                         inputs: tuple[Pick, ...], repeat: int) -> int:
        """Named + repeat (even 1): a container `name` holding copies name.0 ... name.{n-1}
        (or as `names:` names them); the first copy takes every input, each later one the copy
        before it (and, from language version 2, the node's other inputs too)."""
        assert node.call is not None
        info = self.info(scope, node, local, trail, NodeKind.REPEAT, copies=repeat,
                         names=node.names)
        container = SpecModule([f"in{i}" for i in range(max(len(inputs), 1))])
        first = tuple(Pick(j) for j in range(len(inputs)))
        chain = first
        names = self.copy_names(node, repeat, scope.env, trail)
        for copy_info, module in self.copies(node, scope.env, names, f"{info.path}.", trail,
                                             scope.stack):
            if module is not None:
                container.add_module(copy_info.local, module)
            container.steps.append(Step(copy_info, module, chain,
                                        self.factories.get(id(module))))
            chain = self.next_inputs(node.call, first,
                                     len(container.input_names) + len(container.steps) - 1)
        container.outputs = [Pick(len(container.input_names) + len(container.steps) - 1)]
        info.op = f"{node.call.name} x{repeat}"
        return self.attach(scope, info, container, inputs)

    def next_inputs(self, call: OpCall, first: tuple[Pick, ...], slot: int) -> tuple[Pick, ...]:
        """A later copy's inputs: the copy before it, and from version 2 the node's other
        inputs too; a block that returns several values threads them all, in place of as many
        inputs."""
        if self.spec.version < 2:
            return (Pick(slot),)
        block = self.spec.blocks.get(call.name)
        returns = len(block.graph.outputs or ()) if block is not None else 1
        head = tuple(Pick(slot, k) for k in range(returns)) if returns > 1 else (Pick(slot),)
        return (*head, *first[len(head):])

    def copy_names(self, node: Node, repeat: int, env: Mapping[str, Any],
                   trail: tuple[str, ...]) -> list[str]:
        """The copies' names: 0 .. n-1, or the `names:` template for each copy."""
        default = [str(i) for i in range(repeat)]
        if node.names is None:
            return default
        names: dict[str, None] = {}  # in order; a dict: counting in a list is quadratic
        for i in range(repeat):
            name = self.template(node, i, env, trail)
            if name is None:
                return default  # reported
            if name in names:
                self.fail("LS115", f"`names:` gives several copies the name '{name}'",
                          node.names_loc, trail, "use the copy index, e.g. layer_{i}")
                return default
            names[name] = None
        return list(names)

    def template(self, node: Node, i: int, env: Mapping[str, Any],
                 trail: tuple[str, ...]) -> str | None:
        """One copy's name from the `names:` template: each `{expr}` is an expression over the
        params and the copy index `i` (and the node's `index:` name)."""
        if not node.names_parts:
            return None  # the template did not parse: reported
        scope = _Overlay(env, {"i": i, **({node.index: i} if node.index else {})})
        out, length = [], 0
        for part in node.names_parts:
            value = self.evaluate(part, scope, trail) if isinstance(part, Expr) else part
            if value is FAILED:
                return None
            out.append(str(value))
            length += len(out[-1])
            if length > MAX_NAME_CHARS:  # checked piece by piece: `{2**255}` x 300 stops here
                self.fail("LS126", f"`names:` gives copy {i} a name longer than "
                          f"{MAX_NAME_CHARS} characters (limit)", node.names_loc, trail,
                          "use shorter names")
                return None
        name = "".join(out)
        if not NAME_RE.fullmatch(name) or name in RESERVED_NAMES:
            self.fail("LS115", f"`names:` gives copy {i} the name {shown(name)}, which is not a "
                      "valid node name", node.names_loc, trail,
                      "names start with a letter or '_' and hold letters, digits and '_'")
            return None
        return name

    def single(self, scope: _Scope, node: Node, local: str, trail: tuple[str, ...],
               inputs: tuple[Pick, ...]) -> int:
        """One op or block call."""
        assert node.call is not None
        kind = NodeKind.BLOCK if node.call.name in self.spec.blocks else NodeKind.OP
        info = self.info(scope, node, local, trail, kind)
        module = self.instantiate(node.call, scope.env, f"{info.path}.", trail, scope.stack)
        self.freeze(module, node, scope.env, trail)
        return self.attach(scope, info, module, inputs)

    def tensor_node(self, scope: _Scope, node: Node, local: str, trail: tuple[str, ...],
                    inputs: tuple[Pick, ...]) -> int:
        """`Parameter(...)` or `Buffer(...)`: a tensor registered on the list's module under the
        node's name, so its state-dict key is the node's path; the node's value is the tensor."""
        assert node.call is not None
        info = self.info(scope, node, local, trail, NodeKind.TENSOR)
        if node.repeat is not None:
            self.fail("LS114", f"a {node.call.name}(...) node cannot repeat", node.repeat_loc,
                      trail, "write one node per tensor, or put it in a block that repeats")
            return scope.add(Step(info, None, inputs[:1]))
        decl = self.tensor_decl(node, scope.env, local, trail)
        if decl is None or self.buffers_too_large(decl, node.call, trail):
            return scope.add(Step(info, None, inputs[:1]))  # reported
        tensor = make_tensor(decl, self.device, self.dtype)
        if decl.kind == "parameter":
            assert isinstance(tensor, nn.Parameter)
            scope.module.register_parameter(local, tensor)
        else:
            scope.module.register_buffer(local, tensor, persistent=decl.persistent)
        info.module_path = info.path
        scope.modules[local] = None  # nothing to share: its value is a tensor
        return scope.add(Step(info, None, inputs, tensor=decl))

    def buffers_too_large(self, decl: TensorDecl, call: OpCall, trail: tuple[str, ...]) -> bool:
        """True (reported once; nothing more is built) when this buffer would take the model's
        buffers past their limit together: checked before its scheme runs."""
        if self.buffer_elements + decl.elements <= MAX_MODEL_BUFFER_ELEMENTS:
            self.buffer_elements += decl.elements
            return False
        if not self.limit_hit:
            self.limit_hit = True
            self.fail("LS126", f"{call.name}('{decl.scheme}', ...) of {decl.elements:,} elements "
                      f"would take the model's buffers past {MAX_MODEL_BUFFER_ELEMENTS:,} "
                      "elements together (limit)", call.loc, trail,
                      f"{self.buffer_elements:,} were made before this one: lower the repeat "
                      "counts or the buffers' sizes")
        return True

    def tensor_decl(self, node: Node, env: Mapping[str, Any], local: str,
                    trail: tuple[str, ...]) -> TensorDecl | None:
        """The node's tensor, its arguments evaluated and checked (None: reported)."""
        call = node.call
        assert call is not None
        evaluated = self.arguments(call, env, trail)
        if evaluated is None:
            return None
        try:
            bound = inspect.signature(SIGNATURES[call.name]).bind(*evaluated[0], **evaluated[1])
            bound.apply_defaults()
            decl = declare(call.name, local, bound.arguments)
        except TypeError as e:
            self.fail("LS127", f"{call.name}: {e}", call.loc, trail,
                      f"signature: {call.name}{inspect.signature(SIGNATURES[call.name])}")
            return None
        except ValueError as e:
            self.fail("LS128", f"{call.name}{_call_text(*evaluated)} failed: {e}", call.loc,
                      trail)
            return None
        trainable = self.trainable(node, env, trail)
        return replace(decl, trainable=decl.trainable and trainable)

    def trainable(self, node: Node, env: Mapping[str, Any], trail: tuple[str, ...]) -> bool:
        """The node's `trainable:` (true when absent or failed: already reported)."""
        if node.trainable is None:
            return True
        value = self.evaluate(node.trainable, env, trail)
        if value is FAILED:
            return True
        if not isinstance(value, bool):
            self.fail("LS111", f"`trainable` must be true or false, got {shown(value)}",
                      node.trainable_loc, trail)
            return True
        return value

    def attach(self, scope: _Scope, info: NodeInfo, module: nn.Module | None,
               inputs: tuple[Pick, ...]) -> int:
        """Register a node's module under its name and add its step (a passthrough when the
        module failed to build: already reported)."""
        if module is None:
            return scope.add(Step(info, None, inputs[:1]))
        scope.module.add_module(info.local, module)
        info.module_path = info.path
        scope.modules[info.local] = module
        return scope.add(Step(info, module, inputs, self.factories.get(id(module))))

    def shared(self, node: Node, modules_by_name: dict[str, nn.Module | None],
               trail: tuple[str, ...]) -> nn.Module | None:
        assert node.share is not None
        target, loc = node.share
        if target not in modules_by_name:
            self.fail("LS133", f"`share: {target}`: no earlier node named '{target}' in this list",
                      loc, trail, did_you_mean(target, modules_by_name))
            return None
        module = modules_by_name[target]
        if module is None:
            self.fail("LS133", f"`share: {target}`: '{target}' has no module (skipped or "
                      "failed)", loc, trail)
        return module

    def path_too_long(self, path: str, loc: Location, trail: tuple[str, ...]) -> bool:
        """True (reported once; nothing more is built) when a node's path passes the limit."""
        if len(path) <= MAX_PATH_CHARS:
            return False
        if not self.limit_hit:
            self.limit_hit = True
            self.fail("LS126", f"the node's path is {len(path):,} characters long (limit: "
                      f"{MAX_PATH_CHARS:,} characters): {shown(path, 40)}", loc, trail,
                      "use shorter names or nest blocks less deeply")
        return True

    def over_limit(self, loc: Location, trail: tuple[str, ...], extra: int = 0) -> bool:
        """True (reported once) when the model would pass the node limit."""
        if self.count + extra <= self.options.max_nodes:
            return False
        if not self.limit_hit:
            self.limit_hit = True
            self.fail("LS126", f"the model has more than {self.options.max_nodes:,} nodes after "
                      "repeats (limit)", loc, trail, "lower the repeat counts or block sizes")
        return True

    def copies(self, node: Node, env: Mapping[str, Any], names: list[str], prefix: str,
               trail: tuple[str, ...], stack: tuple[str, ...],
               ) -> Iterator[tuple[NodeInfo, nn.Module | None]]:
        """Build a fresh copy per name; stops early when the node limit would be passed. The
        copy index is the node's `index:` name in its op's arguments."""
        call = node.call
        assert call is not None
        block = call.name if call.name in self.spec.blocks else None
        for i, name in enumerate(names):
            if self.path_too_long(f"{prefix}{name}", call.loc, (*trail, name)):
                return
            before = self.count
            info = NodeInfo(f"{prefix}{name}", call.name, call.loc, (*trail, name),
                            len(self.nodes), NodeKind.COPY, name, named=node.names is not None,
                            block=block)
            self.nodes.append(info)
            self.count += 1
            copy_env = _Overlay(env, {node.index: i}) if node.index else env
            module = self.instantiate(call, copy_env, f"{info.path}.", info.trail, stack)
            info.module_path = info.path if module is not None else None
            self.freeze(module, node, env, info.trail)
            yield info, module
            if i == 0 and self.over_limit(call.loc, info.trail,
                                          (self.count - before) * (len(names) - 1)):
                return
            if self.limit_hit:
                return

    def freeze(self, module: nn.Module | None, node: Node, env: Mapping[str, Any],
               trail: tuple[str, ...]) -> None:
        """`trainable: false`: every parameter the node made stops taking gradients."""
        if module is not None and not self.trainable(node, env, trail):
            for p in module.parameters():
                p.requires_grad = False  # requires_grad_() refuses uninitialised ones

    def instantiate(self, call: OpCall, env: Mapping[str, Any], prefix: str,
                    trail: tuple[str, ...], stack: tuple[str, ...]) -> nn.Module | None:
        if self.over_limit(call.loc, trail):
            return None
        block = self.spec.blocks.get(call.name)
        if block is not None:
            return self.block(block, call, env, prefix, trail, stack)
        try:
            opdef = ops.resolve(call.name, self.options.allow)
        except ops.OpLookupError as e:
            self.fail(e.code, e.message, call.loc, trail, e.hint)
            return None
        if self.placement_arguments(call, opdef.signature, trail):
            return None
        evaluated = self.arguments(call, env, trail)
        if evaluated is None:
            return None
        args, kwargs = evaluated
        signature = opdef.signature
        try:
            signature.bind(*args, **kwargs)
        except TypeError as e:
            self.fail("LS127", f"{call.name}: {e}", call.loc, trail,
                      f"signature: {call.name}{_public_signature(signature)}")
            return None
        factory = Factory(opdef.cls, tuple(args), kwargs, self.dtype, self.options.max_op_tensors)
        room = self.options.max_model_tensors - self.created  # never below 0: budgets stop it
        try:
            module, made = factory.counted(self.device, min(factory.limit, room))
        except ConstructionLimit as e:
            if e.limit < factory.limit:
                self.model_too_large(call, trail)
            else:
                self.too_large(call, factory, trail)
            return None
        except Exception as e:  # a module's constructor rejecting user values, in any way
            self.fail("LS128", f"{call.name}{_call_text(args, kwargs)} failed: "
                      f"{type(e).__name__}: {e}", call.loc, trail)
            return None
        self.factories[id(module)] = factory
        self.created += made
        return module

    def model_too_large(self, call: OpCall, trail: tuple[str, ...]) -> None:
        """The ops together passed the model's limit here: report once and build no more."""
        if not self.limit_hit:
            self.limit_hit = True
            self.fail("LS126", f"the model's ops create more than "
                      f"{self.options.max_model_tensors:,} modules and tensors (limit)", call.loc,
                      trail, f"{self.created:,} were made before this op: lower the repeat "
                      "counts, block sizes or layer counts")

    def too_large(self, call: OpCall, factory: Factory, trail: tuple[str, ...]) -> None:
        """Report an op whose constructor passed the limit, at the argument that asks for it."""
        meta = torch.device("meta")  # the probes allocate nothing, whatever --device says
        key = responsible_argument(lambda a, k: factory.build(meta, a, k), list(factory.args),
                                   factory.kwargs, factory.limit)
        args: dict[int | str, Arg] = {**dict(enumerate(call.args)), **dict(call.kwargs)}
        where = args[key].loc if key is not None and key in args else call.loc
        shown_call = f"{call.name}{_call_text(list(factory.args), factory.kwargs)}"
        self.fail("LS126", f"{shown_call} creates more than {factory.limit:,} modules and "
                  "tensors (limit per op)", where, trail,
                  f"{_argument_name(key, call, factory)} sets how many it creates: lower it, or "
                  "raise the limit with --max-op-tensors N" if key is not None else
                  "use smaller arguments, or raise the limit with --max-op-tensors N")

    def placement_arguments(self, call: OpCall, signature: inspect.Signature,
                            trail: tuple[str, ...]) -> bool:
        """Report every argument that a spec may not set (see PLACEMENT_ARGS), positional ones
        included, before anything is evaluated or built; True when there was one."""
        found = False
        for name, arg in _named_arguments(call, signature):
            why = PLACEMENT_ARGS.get(name) or (
                "a private argument: torch passes ready-made tensors through it"
                if name.startswith("_") else None)
            if why is not None:
                found = True
                self.fail("LS129", f"{call.name}: `{name}` is not allowed in a spec: {why}",
                          arg.loc, trail, f"leave `{name}` out of the spec")
        return found

    def block(self, block: Block, call: OpCall, env: Mapping[str, Any], prefix: str,
              trail: tuple[str, ...], stack: tuple[str, ...]) -> nn.Module | None:
        if block.name in stack:
            self.fail("LS143", f"block '{block.name}' uses itself: "
                      f"{' -> '.join([*stack, block.name])}", call.loc, trail,
                      "blocks cannot be recursive; use `repeat:` for depth")
            return None
        if len(stack) >= MAX_BLOCK_DEPTH:
            self.fail("LS126", f"blocks nested deeper than {MAX_BLOCK_DEPTH} levels (limit)",
                      call.loc, trail)
            return None
        evaluated = self.arguments(call, env, trail)
        if evaluated is None:
            return None
        args, kwargs = evaluated
        signature = inspect.Signature([inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                       for p in block.params])
        try:
            bound = signature.bind_partial(*args, **kwargs)
        except TypeError as e:
            self.fail("LS127", f"{block.name}: {e}", call.loc, trail,
                      f"block params, in order: {', '.join(block.params) or '(none)'}")
            return None
        raw = {name: (Param(name, bound.arguments[name], p.loc) if name in bound.arguments else p)
               for name, p in block.params.items()}
        # A block sees its own params and the spec's, never its caller's: blocks stay reusable.
        benv = _LazyEnv(raw, self.spec_params, self.problems)
        benv.evaluate_all()
        module = self.graph(block.graph, benv, prefix, (*trail, block.name),
                            (*stack, block.name))
        module.declared_inputs = self.declared(block, benv, trail)
        module.block_name = block.name
        return module

    def declared(self, block: Block, env: Mapping[str, Any],
                        trail: tuple[str, ...]) -> list[DeclaredInput]:
        """The shapes a block's `inputs:` declare, for the check at each call: numbers, params'
        values, and names that must agree."""
        out = []
        for decl in block.graph.inputs:
            shape: tuple[int | str, ...] | None = None
            if decl.shape is not None:
                dims = [d if isinstance(d, int) else env[d] if isinstance(d, str) and d in env
                        else self.evaluate(d, env, trail) if isinstance(d, Expr) else d
                        for d in decl.shape]
                if all(isinstance(d, (int, str)) and not isinstance(d, bool) for d in dims):
                    shape = tuple(dims)
            out.append(DeclaredInput(decl.name, shape))
        return out


def _named_arguments(call: OpCall, signature: inspect.Signature,
                     ) -> Iterator[tuple[str, Arg]]:
    """Each argument of a call with the parameter name it binds to (positional ones by their
    place in the signature; those that land in `*args` have no name)."""
    positional = [p.name for p in signature.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    yield from zip(positional, call.args, strict=False)
    yield from call.kwargs


def _argument_name(key: int | str, call: OpCall, factory: Factory) -> str:
    """`num_layers`, or `argument 3` for a positional one the signature does not name."""
    if isinstance(key, str):
        return f"`{key}`"
    signature = ops.OpDef(factory.cls.__name__, factory.cls, "").signature
    names = [name for name, _ in _named_arguments(call, signature)][:len(call.args)]
    return f"`{names[key]}`" if key < len(names) else f"argument {key + 1}"


def _public_signature(sig: inspect.Signature) -> str:
    params = [p for n, p in sig.parameters.items() if n not in ("device", "dtype")]
    return str(sig.replace(parameters=params))


def _call_text(args: list[Any], kwargs: dict[str, Any]) -> str:
    parts = [shown(a) for a in args]
    parts += [f"{k}={shown(v)}" for k, v in kwargs.items() if k not in ("device", "dtype")]
    return f"({', '.join(parts)})"


def build(spec: Spec, options: BuildOptions) -> Built:
    """Compile a parsed spec. Raises SpecError with every problem found (the spec's own first)."""
    problems = list(spec.problems)
    options = replace(options, device=check_device(options.device))  # the API has no CLI check
    params = resolve_params(spec, options, problems)
    builder = _Builder(spec, options)
    builder.problems = problems
    builder.spec_params = params
    with installed():  # the construction bound's hooks, once for every op
        root = builder.graph(spec.graph, params, "", (), ())
    problems.extend(check_ties(root, spec.ties))
    if problems:
        raise SpecError(problems)
    return Built(spec, root, builder.nodes, params, options, spec.ties,
                 dedupe(builder.warnings))
