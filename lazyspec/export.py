"""The materialised model in explicit forms: a spec with every inferred size written out, standalone
PyTorch code, and an initialised state dict.

Each reads the compiled module after a successful dry run (`dryrun.run` materialises it): every
lazy layer has become its non-lazy class with its input size fixed, and the steps of every
SpecModule still say how data flows. Both text forms keep the spec's parameter names.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import itertools
import keyword
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from lazyspec import ops
from lazyspec.builtin_ops import BUILTIN_OPS
from lazyspec.compile import Built, SpecModule, Step
from lazyspec.errors import did_you_mean
from lazyspec.result import InferResult
from lazyspec.spec.expr import MAX_EXPR_CHARS, MAX_EXPR_NODES
from lazyspec.spec.parse import NAME_RE
from lazyspec.textsafe import visible


class ExportError(ValueError):
    """The model holds something an explicit form cannot write (a bug or an exotic layer)."""


# --- the plan: the materialised model as explicit nodes ------------------------------------------

Pick = tuple[int, int | None]  # (slot, output index for `name.K`): slots as in SpecModule


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
    """One step of a SpecModule. kind: op, block, repeat (identical copies), share or skip."""

    local: str  # its name in the parent: "fc", "3", "3(repeat 0)"
    named: bool
    inputs: tuple[Pick, ...]
    kind: Literal["op", "block", "repeat", "share", "skip"]
    call: Call | None = None  # op; repeat of an op
    block: str | None = None  # block: its generated block; repeat of a block
    count: int = 1  # repeat: copies; skip: list indices it takes (0 for `repeat: 0`)
    share: str | None = None  # share (and a skipped share): the target's name
    skipped: str | None = None  # skip: "when: false" or "repeat: 0"
    shown_op: str = ""  # skip: the op as the spec named it


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


_REPEAT_OP = re.compile(r".+ x\d+")  # NodeInfo.op of a named `repeat:` container
_INDEX = re.compile(r"(\d+)(\(repeat 0\))?")  # the local name of an unnamed node
_SPEC_RESERVED = frozenset(ops.known_names())  # a block named so would hide the op
# Names the generated code uses: no block class or variable may take them.
_PY_RESERVED = frozenset({*keyword.kwlist, *keyword.softkwlist, "torch", "nn", "F", "Chain",
                          "self", "annotations", "getattr", "setattr", "range", "super", "float"})


def _plan(built: Built, reserved: frozenset[str]) -> Plan:
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
        nodes = [self.node(module, i) for i in range(len(module.steps))]
        return Body(tuple(module.input_names), tuple(nodes),
                    tuple((s, k) for s, k, _ in module.outputs))

    def node(self, owner: SpecModule, i: int) -> Node:
        step = owner.steps[i]
        local = step.info.path.rsplit(".", 1)[-1]
        named = NAME_RE.match(local) is not None  # "3" and "3(repeat 0)" are positions
        inputs = tuple((s, k) for s, k, _ in step.inputs)
        if step.module is None:
            if step.info.skipped is None:
                raise ExportError(f"node '{step.info.path}' has no module: export a spec that "
                                  "compiles and runs")
            op = step.info.op
            taken = 1 if named else _indices_taken(owner.steps, i)
            return Node(local, named, inputs[:1], "skip", count=taken, skipped=step.info.skipped,
                        share=op.removeprefix("share:") if op.startswith("share:") else None,
                        shown_op=op)
        if step.info.shared_from is not None:
            return Node(local, named, inputs, "share",
                        share=step.info.shared_from.rsplit(".", 1)[-1])
        if isinstance(step.module, SpecModule):
            if _REPEAT_OP.fullmatch(step.info.op):
                return self.repeat(step.module, local, named, inputs)
            return Node(local, named, inputs, "block",
                        block=self.block(self.body(step.module), step.info.op))
        return Node(local, named, inputs, "op", call=_explicit_call(step))

    def repeat(self, container: SpecModule, local: str, named: bool,
               inputs: tuple[Pick, ...]) -> Node:
        """A named `repeat:`: one node with `repeat: n` when every copy is the same, else a
        generated block holding the copies as its nodes 0 .. n-1 (same parameter names)."""
        body = self.body(container)
        first = body.nodes[0]
        if all((c.kind, c.call, c.block) == (first.kind, first.call, first.block)
               for c in body.nodes):
            return Node(local, named, inputs, "repeat", call=first.call, block=first.block,
                        count=len(body.nodes))
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


def _indices_taken(steps: list[Step], i: int) -> int:
    """List indices a skipped unnamed node takes: `repeat: n` takes n even when `when:` is false.

    Read from the next position-named node: the nodes between are named, one index each."""
    m = _INDEX.fullmatch(steps[i].info.path.rsplit(".", 1)[-1])
    if m is None or m.group(2):
        return 0
    for named_between, step in enumerate(steps[i + 1:]):
        later = _INDEX.fullmatch(step.info.path.rsplit(".", 1)[-1])
        if later:
            return int(later.group(1)) - int(m.group(1)) - named_between
    return 1  # nothing after it shows the numbering


def _explicit_call(step: Step) -> Call:
    """The op of a step with literal arguments; a materialised lazy layer becomes its non-lazy
    class, with the input size it inferred (LazyLinear(256) -> Linear(20, 256))."""
    factory, module = step.factory, step.module
    if factory is None or module is None:
        raise ExportError(f"node '{step.info.path}' has no op to write")
    cls = factory.cls
    if not issubclass(cls, LazyModuleMixin):
        inside = _op_name(cls, "") != cls.__name__ and any(
            isinstance(m, LazyModuleMixin) for m in factory(torch.device("meta")).modules())
        return Call(_op_name(cls, step.info.op), cls, factory.args, tuple(factory.kwargs.items()),
                    inside)
    if isinstance(module, LazyModuleMixin) and module.has_uninitialized_params():
        raise ExportError(f"node '{step.info.path}' ({step.info.op}) is still lazy: export after "
                          "a dry run that reaches it")
    target = type(module) if type(module) is not cls else cls.cls_to_become
    if target is None or issubclass(target, LazyModuleMixin):
        # A lazy class with no non-lazy form: keep it as written (it still infers its sizes).
        return Call(_op_name(cls, step.info.op), cls, factory.args, tuple(factory.kwargs.items()))
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
    return Call(_op_name(target, ""), target, tuple(args), tuple(kwargs))


def _op_name(cls: type[nn.Module], written: str) -> str:
    """The name a spec resolves to this class."""
    if BUILTIN_OPS.get(cls.__name__) is cls or ops.torch_nn_ops().get(cls.__name__) is cls:
        return cls.__name__
    return written or f"{cls.__module__}.{cls.__qualname__}"


# --- literals ----------------------------------------------------------------------------------


class _Unwritable(Exception):
    """A value the op-call syntax cannot write (a mapping, a non-finite float)."""


def _spec_literal(value: Any) -> str:
    """A value in the spec's expression syntax."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        raise _Unwritable
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, tuple):
        items = ", ".join(_spec_literal(v) for v in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, list):
        return "[" + ", ".join(_spec_literal(v) for v in value) + "]"
    raise _Unwritable


def _yaml_value(value: Any) -> Any:
    """A value for the long form's `args:`/`kwargs:` (plain YAML; `${...}` for what YAML lacks)."""
    if isinstance(value, tuple):
        return "${" + _spec_literal(value) + "}"
    if isinstance(value, list):
        return _Flow(_yaml_value(v) for v in value)
    if isinstance(value, dict):
        return {str(k): _yaml_value(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return "${" + {math.inf: "1e999", -math.inf: "-1e999"}.get(value, "1e999 - 1e999") + "}"
    if isinstance(value, str) and value.strip().startswith("${"):
        return "${" + repr(value) + "}"  # a string that would read as an expression
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ExportError(f"cannot write the argument {value!r} ({type(value).__name__}) in a spec")


def _identifier(name: str) -> str:
    """A keyword to write into generated code: only a plain Python name passes (no injection)."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ExportError(f"keyword {name!r} is not a Python name")
    return name


def _py_literal(value: Any) -> str:
    """A value as Python source."""
    if isinstance(value, float) and not math.isfinite(value):
        return f'float("{value}")'
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    if isinstance(value, tuple):
        items = ", ".join(_py_literal(v) for v in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, list):
        return "[" + ", ".join(_py_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_py_literal(k)}: {_py_literal(v)}"
                               for k, v in value.items()) + "}"
    raise ExportError(f"cannot write the argument {value!r} ({type(value).__name__}) in Python")


def _call_text(call: Call) -> str | None:
    """`Op(args)` in the op-call syntax, or None when only the long form can write it."""
    try:
        parts = [_spec_literal(a) for a in call.args]
        parts += [f"{_identifier(k)}={_spec_literal(v)}" for k, v in call.kwargs]
    except _Unwritable:
        return None
    if not parts:
        return call.op
    text = f"{call.op}({', '.join(parts)})"
    if len(text) > MAX_EXPR_CHARS or _ast_size(text) > MAX_EXPR_NODES:
        return None
    return text


def _ast_size(text: str) -> int:
    return sum(1 for _ in ast.walk(ast.parse(text, mode="eval")))


# --- the explicit spec -------------------------------------------------------------------------


class _Flow(list[Any]):
    """A short list written in flow style: `[2, 20]`, `in: [a, b]`."""


class _Dumper(yaml.SafeDumper):
    """Safe YAML, never with anchors or aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # `  - node` under its key, as specs are written


def _represent_flow(dumper: yaml.SafeDumper, data: _Flow) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)


class _Empty:
    """A key with nothing after it: `enc_b:` (then `share:`), a block input `x:`."""


def _represent_empty(dumper: yaml.SafeDumper, data: _Empty) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:null", "")


_Dumper.add_representer(_Flow, _represent_flow)
_Dumper.add_representer(_Empty, _represent_empty)
EMPTY = _Empty()


def explicit_spec(built: Built, result: InferResult) -> str:
    """YAML of a spec that needs no laziness: every lazy layer replaced by its non-lazy class with
    the sizes the dry run inferred, every argument a literal, the inputs declared with the shapes
    (and non-default dtypes) that ran. `lazyspec infer` on it gives the same parameter and node
    table as the lazy spec at that input."""
    plan = _plan(built, _SPEC_RESERVED | _PY_RESERVED)
    spec = built.spec
    doc: dict[str, Any] = {"lazyspec": 1}
    if spec.name is not None:
        doc["name"] = spec.name
    if spec.description is not None:
        doc["description"] = spec.description
    inputs: dict[str, Any] = {}
    for rec in result.inputs:
        shape = list(rec.shape)
        same = rec.dtype == built.options.dtype  # a float input that follows --dtype
        inputs[rec.name] = _Flow(shape) if same else {"shape": _Flow(shape), "dtype": rec.dtype}
    doc["inputs"] = inputs
    shown = _ShownOps(built, plan)
    if plan.blocks:
        doc["blocks"] = {name: _yaml_body(body, shown, block=True)
                         for name, body in plan.blocks.items()}
    doc.update(_yaml_body(plan.root, shown, block=False))
    if built.ties:
        doc["tie"] = [_Flow([t.target, t.source]) for t in built.ties]
    text = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10**9,
                     default_flow_style=False)
    return _header(built, result, "# ", plan.notes()) + _spaced(text)


def _spaced(text: str) -> str:
    """A blank line before each section and each block, for reading."""
    out: list[str] = []
    section = ""
    for line in text.splitlines():
        top = re.match(r"[A-Za-z_]\w*:", line)
        if top:
            section = top.group(0)
            if section in ("blocks:", "layers:", "outputs:", "tie:"):
                out.append("")
        elif section == "blocks:" and re.fullmatch(r"  [A-Za-z_]\w*:", line) \
                and not out[-1].startswith("blocks:"):
            out.append("")
        out.append(line)
    return "\n".join(out) + "\n"


def _header(built: Built, result: InferResult, prefix: str, notes: list[str]) -> str:
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


class _ShownOps:
    """The op a skipped node shows: the spec's name where it still resolves to the same kind of
    thing (a generated block of the same spec block, a non-lazy class), else Identity. A skipped
    node never builds its op, so the name only keeps the table readable."""

    def __init__(self, built: Built, plan: Plan):
        self.built, self.plan = built, plan

    def __call__(self, op: str) -> str:
        if op in self.built.spec.blocks:
            return self.plan.first_block.get(op, "Identity")
        try:
            cls = ops.resolve(op, self.built.options.allow).cls
        except ops.OpLookupError:
            return "Identity"
        if issubclass(cls, LazyModuleMixin):
            target = cls.cls_to_become
            return "Identity" if target is None else _op_name(target, "Identity")
        return op


def _yaml_body(body: Body, shown: Callable[[str], str], block: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if block and body.input_names != ("input",):
        out["inputs"] = {name: EMPTY for name in body.input_names}
    out["layers"] = [_yaml_node(body, i, shown) for i in range(len(body.nodes))]
    n_in = len(body.input_names)
    if body.outputs != ((n_in + len(body.nodes) - 1, None),):
        refs = [_ref(body, s, k, len(body.nodes)) for s, k in body.outputs]
        out["outputs"] = refs[0] if len(refs) == 1 else _Flow(refs)
    return out


def _ref(body: Body, slot: int, index: int | None, position: int) -> str | int:
    """A reference from the node at `position` (as `in:` and `outputs:` write it)."""
    n_in = len(body.input_names)
    if slot < n_in:
        base: str | int = body.input_names[slot]
    else:
        target = body.nodes[slot - n_in]
        base = target.local if target.named else (slot - n_in) - position  # -k
    return base if index is None else f"{base}.{index}"


def _yaml_node(body: Body, i: int, shown: Callable[[str], str]) -> Any:
    node = body.nodes[i]
    extra: dict[str, Any] = {}
    if node.share is not None:  # a share node, skipped or not
        extra["share"] = node.share
    default = ((len(body.input_names) + i - 1, None),) if i else ((0, None),)
    if node.inputs != default:
        refs = [_ref(body, s, k, i) for s, k in node.inputs]
        extra["in"] = refs[0] if len(refs) == 1 else _Flow(refs)
    op: str | _Empty | None = None
    long_form: dict[str, Any] = {}
    if node.share is not None:
        op = EMPTY
    elif node.kind == "skip":
        op = shown(node.shown_op)
    elif node.call is None:  # a block, or a repeat of one
        op = node.block
    else:
        op = _call_text(node.call)
        if op is None:
            long_form = {"op": node.call.op, "args": _Flow(_yaml_value(a) for a in node.call.args),
                         "kwargs": {k: _yaml_value(v) for k, v in node.call.kwargs}}
    if node.kind == "repeat":
        extra["repeat"] = node.count
    elif node.skipped == "repeat: 0":
        extra["repeat"] = 0
    elif node.skipped == "when: false":
        if not node.named and node.count != 1:
            extra["repeat"] = node.count  # keeps the indices of the nodes after it
        extra["when"] = False
    if long_form:
        name = {"name": node.local} if node.named else {}
        return {"op": long_form.pop("op"), **name, **long_form, **extra}
    if node.named:
        return {node.local: op, **extra}
    if not extra:
        return op
    return extra if isinstance(op, _Empty) else {"op": op, **extra}


# --- PyTorch code ------------------------------------------------------------------------------


def _inline_ops() -> dict[str, Callable[[list[str], dict[str, Any]], str]]:
    """Each built-in op as a torch expression over its inputs' variables and bound arguments."""
    return {
        "Add": lambda xs, a: " + ".join(xs),
        "Mul": lambda xs, a: " * ".join(xs),
        "Concat": lambda xs, a: f"torch.cat([{', '.join(xs)}], dim={a['dim']!r})",
        "Chunk": lambda xs, a: f"torch.chunk({xs[0]}, {a['n']!r}, dim={a['dim']!r})",
        "Split": lambda xs, a: f"torch.split({xs[0]}, {_py_literal(a['sizes'])}, dim={a['dim']!r})",
        "Reshape": lambda xs, a: f"torch.reshape({xs[0]}, {_py_literal(tuple(a['shape']))})",
        "Permute": lambda xs, a: f"{xs[0]}.permute({_py_literal(tuple(a['dims']))})",
        "Transpose": lambda xs, a: f"{xs[0]}.transpose({a['a']!r}, {a['b']!r})",
        "MatMul": lambda xs, a: f"torch.matmul({xs[0]}, {xs[1]})",
        "Mean": lambda xs, a: (f"{xs[0]}.mean(dim={_py_literal(_dims(a['dim']))}, "
                               f"keepdim={a['keepdim']!r})"),
        "ScaledDotProductAttention": _sdpa,
        "Positions": lambda xs, a: (f"torch.arange({xs[0]}.shape[-1], dtype=torch.long, "
                                    f"device={xs[0]}.device)"),
    }


def _dims(dim: Any) -> Any:
    return tuple(dim) if isinstance(dim, (list, tuple)) else dim


def _sdpa(xs: list[str], a: dict[str, Any]) -> str:
    dropout = f"{a['dropout']!r} if self.training else 0.0" if a["dropout"] else "0.0"
    gqa = ", enable_gqa=True" if a["enable_gqa"] else ""
    return (f"F.scaled_dot_product_attention({', '.join(xs[:3])}, is_causal={a['is_causal']!r}, "
            f"scale={_py_literal(a['scale'])}, dropout_p={dropout}{gqa})")


INLINE_OPS = _inline_ops()


def _is_inline(call: Call | None) -> bool:
    return call is not None and BUILTIN_OPS.get(call.cls.__name__) is call.cls


def _inline(call: Call, xs: list[str]) -> str:
    bound = inspect.signature(call.cls).bind(*call.args, **dict(call.kwargs))
    bound.apply_defaults()
    return INLINE_OPS[call.cls.__name__](xs, dict(bound.arguments))


CHAIN = '''class Chain(nn.ModuleList):
    """Copies applied in sequence (a named `repeat:`): the first takes every input."""

    def forward(self, *xs):
        out = self[0](*xs)
        for layer in self[1:]:
            out = layer(out)
        return out
'''


def pytorch_code(built: Built, result: InferResult, class_name: str = "Model") -> str:
    """A standalone Python module: one nn.Module class (and one per generated block) that builds
    the non-lazy layers with the spec's parameter names and shapes, and whose forward runs the
    spec's data flow, with the built-in ops written as torch calls. It needs torch only."""
    if not class_name.isidentifier() or keyword.iskeyword(class_name):
        raise ValueError(f"class name {class_name!r} is not a Python identifier")
    plan = _plan(built, _SPEC_RESERVED | _PY_RESERVED | {class_name})
    writer = _CodeWriter()
    classes = [writer.cls(name, body, f"Block {name} of the exported spec.", [])
               for name, body in plan.blocks.items()]
    shapes = ", ".join(f"{r.name} {list(r.shape)} {r.dtype}" for r in result.inputs)
    outs = ", ".join(str(list(o)) if isinstance(o, tuple) else str(o) for o in result.outputs)
    doc = f"{built.spec.name or 'The model'}: inputs {shapes}; output {outs}."
    ties = [_tie_line(t.target, t.source) for t in built.ties]
    classes.append(writer.cls(class_name, plan.root, doc, ties))
    head = [_doc(line) for line in _header(built, result, "", plan.notes()).splitlines()]
    lines = ['"""' + head[0], "", *head[1:-1], head[-1] + '"""', "",
             "from __future__ import annotations", ""]
    imports = ["import torch"]
    if writer.uses_f:
        imports.append("import torch.nn.functional as F")
    imports += [f"import {m}" for m in sorted(writer.modules)]
    lines += [*imports, "from torch import nn", "", "", ""]
    return "\n".join(lines) + "\n\n".join([CHAIN] * writer.uses_chain + classes)


def _doc(text: str) -> str:
    """Text that is safe inside a triple-quoted docstring: no quote can close it, and control
    characters, NUL and lone surrogates show as escapes (`\\x00`) in the docstring itself:
    Python source cannot hold a NUL, UTF-8 cannot write a surrogate, nor can a class's
    docstring hold one. `##[` is written `#\\x23[`, the same text to Python but no GitHub
    workflow command to a log that shows the file."""
    return visible(text).replace("\\", "\\\\").replace('"', '\\"').replace("##[", "#\\x23[")


def _tie_line(target: str, source: str) -> str:
    def owner(path: str) -> tuple[str, str]:
        sub, _, attr = path.rpartition(".")
        return (f'self.get_submodule("{sub}")' if sub else "self"), attr

    (t_mod, t_attr), (s_mod, s_attr) = owner(target), owner(source)
    src = f"{s_mod}.{s_attr}" if _attr_ok(s_attr) else f"getattr({s_mod}, {s_attr!r})"
    comment = f"# tie: {target} is {source}\n        "
    if _attr_ok(t_attr):
        return f"{comment}{t_mod}.{t_attr} = {src}"
    return f"{comment}setattr({t_mod}, {t_attr!r}, {src})"


def _attr_ok(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


class _CodeWriter:
    def __init__(self) -> None:
        self.modules: set[str] = set()  # imports for classes outside torch.nn
        self.uses_f = False
        self.uses_chain = False

    def cls(self, name: str, body: Body, doc: str, ties: list[str]) -> str:
        built = [self.register(node) for node in body.nodes]
        init = [line for line in built if line] + ties
        lines = [f"class {name}(nn.Module):", f'    """{_doc(doc)}"""', "",
                 "    def __init__(self) -> None:", "        super().__init__()",
                 *(f"        {line}" for line in init), "",
                 *(f"    {line}" for line in self.forward(body))]
        return "\n".join(lines) + "\n"

    def build(self, node: Node) -> str:
        """The expression that builds the node's module."""
        if node.call is not None:
            call = node.call
            if ops.torch_nn_ops().get(call.cls.__name__) is call.cls:
                where = f"nn.{call.cls.__name__}"
            else:
                self.modules.add(call.cls.__module__)
                where = f"{call.cls.__module__}.{call.cls.__qualname__}"
            parts = [_py_literal(a) for a in call.args]
            parts += [f"{_identifier(k)}={_py_literal(v)}" for k, v in call.kwargs]
            return f"{where}({', '.join(parts)})"
        return f"{node.block}()"

    def register(self, node: Node) -> str | None:
        if node.kind in ("share", "skip") or _is_inline(node.call):
            return None  # built-in ops are written inline in forward
        value = self.build(node)
        if node.kind == "repeat":
            self.uses_chain = True
            value = f"Chain({value} for _ in range({node.count}))"
        if _attr_ok(node.local):
            return f"self.{node.local} = {value}"
        return f'self.add_module("{node.local}", {value})'

    def forward(self, body: Body) -> list[str]:
        taken = set(_PY_RESERVED) | {"self"}
        names: list[str] = []
        for name in body.input_names:
            names.append(_fresh_var(name, taken))
        lines = [f"def forward(self, {', '.join(names)}):"]
        for i, node in enumerate(body.nodes):
            xs = [_pick(names, s, k) for s, k in node.inputs]
            if node.kind == "skip":
                names.append(xs[0])
                lines.append(f"    # {node.local}: skipped ({node.skipped}), passes "
                             f"{xs[0]} through")
                continue
            var = _fresh_var(node.local if node.named else f"x{node.local}", taken)
            names.append(var)
            lines.append(f"    {var} = {self.apply(body, i, xs)}")
        outs = [_pick(names, s, k) for s, k in body.outputs]
        lines.append(f"    return {', '.join(outs)}")
        return lines

    def apply(self, body: Body, i: int, xs: list[str]) -> str:
        node = body.nodes[i]
        if node.kind == "share":
            node = next(n for n in body.nodes if n.local == node.share)
        if node.call is not None and _is_inline(node.call):
            self.uses_f |= node.call.cls.__name__ == "ScaledDotProductAttention"
            out = _inline(node.call, xs)
            for _ in range(node.count - 1 if node.kind == "repeat" else 0):
                out = _inline(node.call, [f"({out})"])
            return out
        module = f"self.{node.local}" if _attr_ok(node.local) else f'getattr(self, "{node.local}")'
        return f"{module}({', '.join(xs)})"


def _fresh_var(base: str, taken: set[str]) -> str:
    name = base if base.isidentifier() else "x"
    while name in taken or keyword.iskeyword(name):
        name += "_"
    taken.add(name)
    return name


def _pick(names: list[str], slot: int, index: int | None) -> str:
    return names[slot] if index is None else f"{names[slot]}[{index}]"


# --- initialised state dicts ---------------------------------------------------------------------


@dataclass(frozen=True)
class InitScheme:
    name: str
    value: float | None = None  # normal: std; uniform: the bound a of U(-a, a)


# name -> (what it does, its default value or None when it takes none)
INIT_SCHEMES: dict[str, tuple[str, float | None]] = {
    "default": ("each layer's own reset_parameters(), as PyTorch builds it", None),
    "xavier_uniform": ("Glorot uniform", None),
    "xavier_normal": ("Glorot normal", None),
    "kaiming_uniform": ("He uniform (fan_in, ReLU gain)", None),
    "kaiming_normal": ("He normal (fan_in, ReLU gain)", None),
    "normal": ("normal with mean 0 and std STD", 0.01),
    "uniform": ("uniform on [-A, A]", 0.05),
    "zeros": ("all zeros", None),
    "ones": ("all ones", None),
}


def init_choices() -> str:
    return ", ".join(f"{n}[:{'STD' if n == 'normal' else 'A'}] (default {d})" if d is not None
                     else n for n, (_, d) in INIT_SCHEMES.items())


def parse_init(text: str) -> InitScheme:
    """`xavier_uniform`, `normal:0.02`, ...; a ValueError lists the choices."""
    name, sep, raw = text.strip().partition(":")
    if name not in INIT_SCHEMES:
        hint = did_you_mean(name, INIT_SCHEMES)
        raise ValueError(f"unknown init '{text}'{f' ({hint})' if hint else ''}; choose one of: "
                         f"{init_choices()}")
    default = INIT_SCHEMES[name][1]
    if not sep:
        return InitScheme(name, default)
    if default is None:
        raise ValueError(f"init '{name}' takes no value (got '{text}'); only normal:STD and "
                         "uniform:A do")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"init '{text}': the value after ':' must be a number >= 0, "
                         f"for example {name}:{default}")
    return InitScheme(name, value)


def _weight_init(scheme: InitScheme) -> Callable[[torch.Tensor], Any]:
    init = nn.init
    value = scheme.value if scheme.value is not None else 0.0
    table: dict[str, Callable[[torch.Tensor], Any]] = {
        "xavier_uniform": init.xavier_uniform_,
        "xavier_normal": init.xavier_normal_,
        "kaiming_uniform": lambda t: init.kaiming_uniform_(t, nonlinearity="relu"),
        "kaiming_normal": lambda t: init.kaiming_normal_(t, nonlinearity="relu"),
        "normal": lambda t: init.normal_(t, 0.0, value),
        "uniform": lambda t: init.uniform_(t, -value, value),
        "zeros": init.zeros_,
        "ones": init.ones_,
    }
    return table[scheme.name]


def init_state_dict(module: nn.Module, init: str, seed: int | None) -> dict[str, torch.Tensor]:
    """Initialise a materialised model (built and dry-run on a real device) and return its state
    dict: the spec's parameter and buffer names, real values.

    Every layer is first reset as PyTorch builds it (`reset_parameters()`, children before
    parents; batch-norm running statistics too; a parameter of a layer with no reset method is
    set as nn.Linear sets its own). Then, unless `init` is `default`, every weight (a parameter
    with two or more dimensions: linear, convolution, embedding) gets the scheme and every bias
    is zero, as D2L's `apply_init` does; norm layers keep their scale of one. With a seed, the
    values depend only on the seed and the model (the global RNG is left untouched).
    """
    scheme = parse_init(init)
    tensors = [*module.parameters(), *module.buffers()]
    if any(isinstance(t, nn.parameter.UninitializedParameter) or t.device.type == "meta"
           for t in tensors):
        raise ValueError("the model has no real values: build it on cpu (or cuda) and dry-run it "
                         "before initialising")
    cuda = sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})
    rng = torch.random.fork_rng(devices=cuda) if seed is not None else contextlib.nullcontext()
    with rng, torch.no_grad():
        if seed is not None:
            torch.manual_seed(seed)
        covered = _reset(module)
        apply = None if scheme.name == "default" else _weight_init(scheme)
        for name, p in module.named_parameters():  # a shared or tied parameter once
            leaf = name.rpartition(".")[2]
            if apply is not None and (leaf == "bias" or leaf.endswith("_bias")):
                p.zero_()
            elif apply is not None and p.dim() >= 2:
                apply(p)
            elif id(p) not in covered:  # no reset method: as nn.Linear would, so a seed fixes it
                _fallback_init(leaf, p)
    return dict(module.state_dict())


def _reset(module: nn.Module) -> set[int]:
    """Reset every layer as PyTorch builds it; the ids of the parameters that were reset."""
    covered: set[int] = set()
    for m in _children_first(module):
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()
            covered.update(id(p) for p in m.parameters(recurse=False))
            continue
        reset = getattr(m, "_reset_parameters", None)  # nn.MultiheadAttention, nn.Transformer
        if callable(reset):
            reset()
            covered.update(id(p) for p in m.parameters())
    return covered


def _fallback_init(leaf: str, p: torch.Tensor) -> None:
    if leaf == "bias" or leaf.endswith("_bias"):
        nn.init.zeros_(p)
    elif p.dim() >= 2:
        nn.init.kaiming_uniform_(p, a=math.sqrt(5))
    else:
        nn.init.ones_(p)


def _children_first(module: nn.Module, seen: set[int] | None = None) -> Iterator[nn.Module]:
    """Every module once, children before their parent (the order in which they are built)."""
    seen = set() if seen is None else seen
    if id(module) in seen:
        return
    seen.add(id(module))
    for child in module.children():
        yield from _children_first(child, seen)
    yield module


def write_state_dict(path: str | os.PathLike[str], state: dict[str, torch.Tensor]) -> None:
    """torch.save the state dict atomically: a temporary file in the same folder, then a rename,
    so a failure leaves any old file as it was."""
    from lazyspec.fileio import atomic_write_with

    atomic_write_with(Path(path), "state dict", lambda f: torch.save(state, f))
