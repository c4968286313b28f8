"""Spec -> nn.Module of lazy modules. No I/O, no printing.

Evaluates params, op arguments, `repeat` and `when`; binds every op call to its signature before
any tensor exists; builds each module directly on the target device. All problems are collected
and raised together as one SpecError.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import torch
from torch import nn

from lazyspec import ops
from lazyspec.construction import (
    MAX_OP_TENSORS,
    ConstructionLimit,
    bounded,
    installed,
    responsible_argument,
)
from lazyspec.errors import (
    Diagnostic,
    Location,
    SpecError,
    UsageError,
    did_you_mean,
    shown,
    usage_error,
)
from lazyspec.spec.expr import Arg, OpCall, Span, parse_expr, resolve
from lazyspec.spec.model import Block, Graph, Node, Param, Ref, Spec, Tie

# Work is bounded by what a spec asks for, measured by bench/hostile.py: a spec at these limits
# is compiled and dry-run in well under a minute on a 2-core machine. 100,000 nodes took ~160 s.
MAX_NODES = 20_000  # after repeats, across all blocks
MAX_MODEL_TENSORS = 20_000  # modules and tensors all ops' constructors create together
MAX_BLOCK_DEPTH = 32
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


@dataclass(frozen=True)
class BuildOptions:
    device: str = "meta"
    dtype: str = "float32"  # parameter dtype
    allow: tuple[str, ...] = ()
    overrides: Mapping[str, Any] = field(default_factory=dict)  # --set
    scale: str | None = None
    max_nodes: int = MAX_NODES
    max_op_tensors: int = MAX_OP_TENSORS  # modules and tensors one op's constructor may create
    max_model_tensors: int = MAX_MODEL_TENSORS  # ... and all of them together


@dataclass
class NodeInfo:
    """One node of the compiled model, as reports show it."""

    path: str  # module path from the root, e.g. layer2.0.conv1
    op: str  # the op as the spec names it (block name for a block call)
    loc: Location
    trail: tuple[str, ...]  # e.g. ("layer2", "Stage", "0", "BasicBlock", "conv1")
    order: int  # pre-order position, for printing nested nodes in spec order
    module_path: str | None = None  # where its module is registered; None: passthrough
    shared_from: str | None = None  # `share:` target's path
    skipped: str | None = None  # why it passes its input through (when false, repeat 0)

    @property
    def depth(self) -> int:
        return self.path.count(".")


# Where a step's input comes from: (slot, output index for `name.K`, the reference as written).
Pick = tuple[int, int | None, Ref | None]


class OutputIndexError(Exception):
    """`name.K` where the node does not return a K-th output."""

    def __init__(self, message: str, where: Location | None):
        super().__init__(message)
        self.where = where


def pick(values: list[Any], p: Pick) -> Any:
    slot, index, ref = p
    value = values[slot]
    if index is None:
        return value
    text, where = (ref.text, ref.loc) if ref else (f".{index}", None)
    if not isinstance(value, (tuple, list)):
        shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise OutputIndexError(f"'{text}': the node returns one tensor {shape}, not several "
                               "outputs", where)
    if not -len(value) <= index < len(value):
        raise OutputIndexError(f"'{text}': the node returns {len(value)} outputs "
                               f"(0..{len(value) - 1})", where)
    return value[index]


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


@dataclass
class Step:
    info: NodeInfo
    module: nn.Module | None  # None: pass the first input through
    inputs: tuple[Pick, ...]
    factory: Factory | None = None  # how `module` was built (ops only, not blocks)


class SpecModule(nn.Module):
    """The compiled form of a node list: children registered with the spec's names, run in order.

    Values live in numbered slots: the inputs first, then one per step.
    """

    def __init__(self, input_names: list[str]):
        super().__init__()
        self.input_names = list(input_names)
        self.steps: list[Step] = []
        self.outputs: list[Pick] = []
        self.tracer: Any = None  # set by the dry run only, and removed in its `finally`

    def gather(self, values: list[Any], step: Step) -> list[Any]:
        return [pick(values, p) for p in step.inputs]

    def forward(self, *args: Any) -> Any:
        if len(args) != len(self.input_names):
            raise TypeError(f"expects {len(self.input_names)} input(s) "
                            f"({', '.join(self.input_names)}), got {len(args)}")
        values = list(args)
        for step in self.steps:
            if self.tracer is not None:
                values.append(self.tracer.run(self, step, values))
                continue
            xs = self.gather(values, step)
            values.append(xs[0] if step.module is None else step.module(*xs))
        outs = [pick(values, p) for p in self.outputs]
        return outs[0] if len(outs) == 1 else tuple(outs)


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


class _LazyEnv(Mapping[str, Any]):
    """Params evaluated on first use, so a param may depend on another in any order."""

    def __init__(self, raw: Mapping[str, Param], parent: Mapping[str, Any] | None,
                 problems: list[Diagnostic]):
        self.raw, self.parent, self.problems = raw, parent or {}, problems
        self.done: dict[str, Any] = {}
        self.active: list[str] = []
        self.failed: set[str] = set()  # reported once, even when several params reach it

    def __getitem__(self, key: str) -> Any:
        if key in self.done:
            return self.done[key]
        if key in self.failed:
            raise SpecError([])  # reported where it failed; readers of it stay quiet
        if key not in self.raw:
            return self.parent[key]
        if key in self.active:
            cycle = " -> ".join([*self.active[self.active.index(key):], key])
            raise SpecError([Diagnostic("LS145", f"params depend on each other: {cycle}",
                                        self.raw[key].loc, hint="break the cycle")])
        self.active.append(key)
        try:
            self.done[key] = resolve(self.raw[key].value, self)
        except SpecError:
            self.failed.add(key)
            raise
        finally:
            self.active.pop()
        return self.done[key]

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


class _Builder:
    def __init__(self, spec: Spec, options: BuildOptions):
        self.spec, self.options = spec, options
        self.problems: list[Diagnostic] = []
        self.nodes: list[NodeInfo] = []
        self.count = 0
        self.limit_hit = False
        self.created = 0  # modules and tensors the ops' constructors made so far
        self.spec_params: Mapping[str, Any] = {}  # the top-level params, set by build()
        self.factories: dict[int, Factory] = {}  # id(module) -> how it was built
        self.device = torch.device(options.device)
        self.dtype = getattr(torch, options.dtype)

    def fail(self, code: str, message: str, loc: Location | None, trail: tuple[str, ...],
             hint: str | None = None) -> None:
        self.problems.append(Diagnostic(code, message, loc, trail=trail, hint=hint))

    def graph(self, graph: Graph, env: Mapping[str, Any], prefix: str, trail: tuple[str, ...],
              stack: tuple[str, ...]) -> SpecModule:
        module = SpecModule(graph.input_names)
        slot_of: dict[str, int] = {name: i for i, name in enumerate(graph.input_names)}
        slot_by_position: list[int] = []
        later = {n.name: n for n in graph.layers if n.name is not None}
        modules_by_name: dict[str, nn.Module | None] = {}
        index = 0
        for node in graph.layers:
            if node.name is not None and (node.name in slot_of):
                self.fail("LS115", f"name '{node.name}' is used twice in this list", node.loc,
                          trail, "each node and input in a list needs its own name")
            if node.name is not None and node.name in RESERVED_NAMES:
                self.fail("LS115", f"name '{node.name}' clashes with an nn.Module attribute",
                          node.loc, trail, f"rename the node, for example '{node.name}_'")
                node = replace(node, broken=True)
            inputs = self.refs(node, graph, slot_of, slot_by_position, later, trail)
            local = node.name if node.name is not None else str(index)
            # An unnamed node with `repeat: n` takes n indices, as in a hand-written Sequential.
            repeat = self.repeat(node, env, trail)
            index += repeat if (node.name is None and node.call is not None and repeat != 1) else 1
            out_slot = self.node(module, node, env, prefix, local, trail, stack, inputs, repeat,
                                 modules_by_name)
            slot_by_position.append(out_slot)
            if node.name is not None:
                slot_of[node.name] = out_slot
        module.outputs = [x for x in (self.ref(r, graph, slot_of, slot_by_position, later, trail,
                                                len(graph.layers)) for r in graph.outputs or [])
                          if x is not None]
        if not graph.outputs:
            last = slot_by_position[-1] if slot_by_position else 0
            module.outputs = [(last, None, None)]
        return module

    # references

    def refs(self, node: Node, graph: Graph, slot_of: dict[str, int], by_pos: list[int],
             later: dict[str, Node], trail: tuple[str, ...]) -> tuple[Pick, ...]:
        if node.inputs is None:
            return ((by_pos[-1] if by_pos else 0, None, None),)
        out = []
        for r in node.inputs:
            resolved = self.ref(r, graph, slot_of, by_pos, later, trail, node.position)
            if resolved is not None:
                out.append(resolved)
        return tuple(out) or ((by_pos[-1] if by_pos else 0, None, None),)

    def ref(self, r: Ref, graph: Graph, slot_of: dict[str, int], by_pos: list[int],
            later: dict[str, Node], trail: tuple[str, ...],
            position: int) -> Pick | None:
        if isinstance(r.target, int):
            p = position + r.target
            if p >= 0:
                return (by_pos[p], r.index, r)
            if p == -1 and len(graph.input_names) == 1:
                return (0, r.index, r)
            self.fail("LS130", f"'{r.text}' reaches before the first node", r.loc, trail,
                      "use -1 for the previous node, or name the input")
            return None
        if r.target in slot_of:
            return (slot_of[r.target], r.index, r)
        if r.target in later:
            self.fail("LS131", f"'{r.target}' is defined later (line {later[r.target].loc.line}); "
                      "a node can only read earlier nodes", r.loc, trail,
                      "move the node up, so the model stays acyclic")
            return None
        self.fail("LS130", f"unknown reference '{r.target}'", r.loc, trail,
                  did_you_mean(r.target, list(slot_of)) or
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

    def node(self, parent: SpecModule, node: Node, env: Mapping[str, Any], prefix: str,
             local: str, trail: tuple[str, ...], stack: tuple[str, ...],
             inputs: tuple[Pick, ...], repeat: int,
             modules_by_name: dict[str, nn.Module | None]) -> int:
        path = f"{prefix}{local}"
        if node.name is None and repeat == 0:
            path = f"{prefix}{local}(repeat 0)"  # takes no index: keep clear of the next node
        node_trail = (*trail, node.label if node.name else local)
        op_name = node.call.name if node.call else (f"share:{node.share[0]}" if node.share else "?")
        info = NodeInfo(path, op_name, node.loc, node_trail, len(self.nodes))
        self.nodes.append(info)
        self.count += 1
        when = True
        if node.when is not None:
            value = self.evaluate(node.when, env, node_trail)
            when = value is FAILED or bool(value)
        slot = len(parent.input_names) + len(parent.steps)
        if node.broken or (node.call is None and node.share is None):
            parent.steps.append(Step(info, None, inputs[:1]))
            return slot
        if not when or repeat == 0:
            info.skipped = "when: false" if not when else "repeat: 0"
            parent.steps.append(Step(info, None, inputs[:1]))
            if node.name is not None:
                modules_by_name[node.name] = None
            return slot
        if node.share is not None:
            module = self.shared(node, modules_by_name, node_trail)
            info.module_path = info.shared_from = self.path_of(module, prefix, modules_by_name)
            if node.name is not None:
                modules_by_name[node.name] = module  # a later node may share this one in turn
            parent.steps.append(Step(info, module, inputs))  # no factory: never rebuilt alone
            return slot
        assert node.call is not None
        if node.name is None and repeat != 1:
            # Unnamed + repeat: n copies spliced into the enclosing list, each its own index.
            base = int(local)
            self.nodes.pop()
            self.count -= 1
            prev = inputs
            for copy_info, module in self.copies(
                    node.call, env, repeat, lambda i: f"{prefix}{base + i}",
                    lambda i: (*trail, str(base + i)), stack):
                if module is not None:
                    parent.add_module(copy_info.path.rsplit(".", 1)[-1], module)
                parent.steps.append(Step(copy_info, module, prev, self.factories.get(id(module))))
                prev = ((len(parent.input_names) + len(parent.steps) - 1, None, None),)
            return prev[0][0]
        if node.name is not None and node.repeat is not None:
            # Named + repeat (even 1): a container `name` holding copies name.0 ... name.{n-1}.
            container = SpecModule([f"in{i}" for i in range(max(len(inputs), 1))])
            first: tuple[Pick, ...] = tuple((j, None, None) for j in range(len(inputs)))
            for i, (copy_info, module) in enumerate(self.copies(
                    node.call, env, repeat, lambda i: f"{path}.{i}",
                    lambda i: (*node_trail, str(i)), stack)):
                if module is not None:
                    container.add_module(str(i), module)
                chain = first if i == 0 else ((len(inputs) + i - 1, None, None),)
                container.steps.append(Step(copy_info, module, chain,
                                           self.factories.get(id(module))))
            container.outputs = [(len(container.input_names) + len(container.steps) - 1, None,
                                  None)]
            module = container
            info.op = f"{node.call.name} x{repeat}"
        else:
            module = self.instantiate(node.call, env, f"{path}.", node_trail, stack)
        if module is None:
            parent.steps.append(Step(info, None, inputs[:1]))
            return slot
        parent.add_module(local, module)
        info.module_path = path
        modules_by_name[local] = module
        parent.steps.append(Step(info, module, inputs, self.factories.get(id(module))))
        return slot

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

    @staticmethod
    def path_of(module: nn.Module | None, prefix: str,
                modules_by_name: dict[str, nn.Module | None]) -> str | None:
        for name, m in modules_by_name.items():
            if m is module and module is not None:
                return f"{prefix}{name}"
        return None

    def over_limit(self, loc: Location, trail: tuple[str, ...], extra: int = 0) -> bool:
        """True (reported once) when the model would pass the node limit."""
        if self.count + extra <= self.options.max_nodes:
            return False
        if not self.limit_hit:
            self.limit_hit = True
            self.fail("LS126", f"the model has more than {self.options.max_nodes:,} nodes after "
                      "repeats (limit)", loc, trail, "lower the repeat counts or block sizes")
        return True

    def copies(self, call: OpCall, env: Mapping[str, Any], repeat: int, path_of: Any,
               trail_of: Any, stack: tuple[str, ...],
               ) -> Iterator[tuple[NodeInfo, nn.Module | None]]:
        """Build `repeat` fresh copies; stops early when the node limit would be passed."""
        for i in range(repeat):
            before = self.count
            info = NodeInfo(path_of(i), call.name, call.loc, trail_of(i), len(self.nodes))
            self.nodes.append(info)
            self.count += 1
            module = self.instantiate(call, env, f"{info.path}.", info.trail, stack)
            info.module_path = info.path if module is not None else None
            yield info, module
            if i == 0 and self.over_limit(call.loc, trail_of(i),
                                          (self.count - before) * (repeat - 1)):
                return
            if self.limit_hit:
                return

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
        return self.graph(block.graph, benv, prefix, (*trail, block.name), (*stack, block.name))


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


def check_ties(built_module: nn.Module, ties: list[Tie]) -> list[Diagnostic]:
    """Both sides of every tie must name a parameter of the built model."""
    problems = []
    for tie in ties:
        for path, loc in ((tie.target, tie.loc), (tie.source, tie.source_loc or tie.loc)):
            if _find_param(built_module, path) is None:
                names = [n for n, _ in built_module.named_parameters(remove_duplicate=False)]
                problems.append(Diagnostic("LS203", f"tie: '{path}' is not a parameter of the "
                                           "model", loc, hint=did_you_mean(path, names)))
    return problems


def _find_param(module: nn.Module, path: str) -> nn.Parameter | None:
    owner, _, attr = path.rpartition(".")
    try:
        sub = module.get_submodule(owner) if owner else module
    except AttributeError:
        return None
    p = sub._parameters.get(attr)
    return p


def apply_ties(module: nn.Module, ties: list[Tie]) -> list[Diagnostic]:
    """Make each tie's target the same Parameter as its source (after materialisation)."""
    problems = []
    for tie in ties:
        a, b = _find_param(module, tie.target), _find_param(module, tie.source)
        if a is None or b is None:
            continue  # reported by check_ties
        if tuple(a.shape) != tuple(b.shape):
            problems.append(Diagnostic("LS203", f"tie: '{tie.target}' {list(a.shape)} and "
                                       f"'{tie.source}' {list(b.shape)} have different shapes",
                                       tie.loc, hint="tied parameters must have the same shape"))
            continue
        owner, _, attr = tie.target.rpartition(".")
        sub = module.get_submodule(owner) if owner else module
        setattr(sub, attr, b)
    return problems


def build(spec: Spec, options: BuildOptions) -> Built:
    """Compile a parsed spec. Raises SpecError with every problem found (the spec's own first)."""
    problems = list(spec.problems)
    try:
        device = torch.device(options.device)
    except RuntimeError as e:
        raise usage_error(f"bad device '{options.device}': {e}", "use meta, cpu, cuda or cuda:N") \
            from None
    if device.type == "cuda" and not torch.cuda.is_available():  # the API has no CLI check
        raise usage_error(f"device '{options.device}' is not available: torch sees no CUDA "
                          "device", "use device='meta' (the default) or 'cpu'", code="LS302")
    params = resolve_params(spec, options, problems)
    builder = _Builder(spec, options)
    builder.problems = problems
    builder.spec_params = params
    with installed():  # the construction bound's hooks, once for every op
        root = builder.graph(spec.graph, params, "", (), ())
    problems.extend(check_ties(root, spec.ties))
    if problems:
        raise SpecError(problems)
    return Built(spec, root, builder.nodes, params, options, spec.ties)
