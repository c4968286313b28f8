"""`lazyspec export --to spec`: a spec that needs no laziness, every inferred size written out."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch.nn.modules.lazy import LazyModuleMixin

from lazyspec import ops
from lazyspec.compile import Built, Pick
from lazyspec.export.literals import call_text, spec_literal
from lazyspec.export.plan import (
    PY_RESERVED,
    SPEC_RESERVED,
    Body,
    ExportError,
    Plan,
    header,
    make_plan,
    op_name,
)
from lazyspec.result import InferResult
from lazyspec.spec.yamlwrite import EMPTY, Flow, dump, is_empty
from lazyspec.tensors import TensorDecl


def _yaml_value(value: Any) -> Any:
    """A value for the long form's `args:`/`kwargs:` (plain YAML; `${...}` for what YAML lacks)."""
    if isinstance(value, tuple):
        return "${" + spec_literal(value) + "}"
    if isinstance(value, list):
        return Flow(_yaml_value(v) for v in value)
    if isinstance(value, dict):
        return {str(k): _yaml_value(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return "${" + {math.inf: "1e999", -math.inf: "-1e999"}.get(value, "1e999 - 1e999") + "}"
    if isinstance(value, str) and value.strip().startswith("${"):
        return "${" + repr(value) + "}"  # a string that would read as an expression
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ExportError(f"cannot write the argument {value!r} ({type(value).__name__}) in a spec")


def explicit_spec(built: Built, result: InferResult) -> str:
    """YAML of a spec that needs no laziness: every lazy layer replaced by its non-lazy class with
    the sizes the dry run inferred, every argument a literal, the inputs declared with the shapes
    (and non-default dtypes) that ran. `lazyspec infer` on it gives the same parameter and node
    table as the lazy spec at that input."""
    plan = make_plan(built, SPEC_RESERVED | PY_RESERVED)
    spec = built.spec
    doc: dict[str, Any] = {"lazyspec": spec.version}
    if spec.name is not None:
        doc["name"] = spec.name
    if spec.description is not None:
        doc["description"] = spec.description
    inputs: dict[str, Any] = {}
    for rec in result.inputs:
        shape = list(rec.shape)
        same = rec.dtype == built.options.dtype  # a float input that follows --dtype
        inputs[rec.name] = Flow(shape) if same else {"shape": Flow(shape), "dtype": rec.dtype}
    doc["inputs"] = inputs
    shown = _ShownOps(built, plan)
    if plan.blocks:
        doc["blocks"] = {name: _yaml_body(body, shown, block=True)
                         for name, body in plan.blocks.items()}
    doc.update(_yaml_body(plan.root, shown, block=False))
    if built.ties:
        doc["tie"] = [Flow([t.target, t.source]) for t in built.ties]
    return header(built, result, "# ", plan.notes()) + dump(doc, ascii_only=True)


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
            return "Identity" if target is None else op_name(target, "Identity")
        return op


def _yaml_body(body: Body, shown: Callable[[str], str], block: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if block and body.input_names != ("input",):
        out["inputs"] = {name: EMPTY for name in body.input_names}
    out["layers"] = [_yaml_node(body, i, shown) for i in range(len(body.nodes))]
    n_in = len(body.input_names)
    if body.outputs != (Pick(n_in + len(body.nodes) - 1),):
        refs = [_ref(body, p.slot, p.output, len(body.nodes)) for p in body.outputs]
        out["outputs"] = refs[0] if len(refs) == 1 else Flow(refs)
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
    extra = _yaml_keys(body, i)
    op: Any
    long_form: dict[str, Any] = {}
    if node.share is not None:
        op = EMPTY
    elif node.kind == "skip":
        op = shown(node.shown_op)
    elif node.tensor is not None:
        op = tensor_text(node.tensor)
    elif node.call is None:  # a block, or a repeat of one
        op = node.block
    else:
        op = call_text(node.call)
        if op is None:
            long_form = {"op": node.call.op, "args": Flow(_yaml_value(a) for a in node.call.args),
                         "kwargs": {k: _yaml_value(v) for k, v in node.call.kwargs}}
    if long_form:
        name = {"name": node.local} if node.named else {}
        return {"op": long_form.pop("op"), **name, **long_form, **extra}
    if node.named:
        return {node.local: op, **extra}
    if not extra:
        return op
    return extra if is_empty(op) else {"op": op, **extra}


def _yaml_keys(body: Body, i: int) -> dict[str, Any]:
    """A node's keys beside its op: share, in, repeat (and its copies' names), when,
    trainable."""
    node = body.nodes[i]
    extra: dict[str, Any] = {}
    if node.share is not None:  # a share node, skipped or not
        extra["share"] = node.share
    default = (Pick(len(body.input_names) + i - 1),) if i else (Pick(0),)
    if node.inputs != default:
        refs = [_ref(body, p.slot, p.output, i) for p in node.inputs]
        extra["in"] = refs[0] if len(refs) == 1 else Flow(refs)
    if node.kind == "repeat":
        extra["repeat"] = node.count
        if node.copy_names:
            extra["names"] = node.names
    elif node.skipped == "repeat: 0":
        extra["repeat"] = 0
    elif node.skipped == "when: false":
        if not node.named and node.count != 1:
            extra["repeat"] = node.count  # keeps the indices of the nodes after it
        extra["when"] = False
    if node.frozen:
        extra["trainable"] = False
    return extra


def tensor_text(decl: TensorDecl) -> str:
    """`Parameter(1, 1, 768, init='normal:0.02')`, `Buffer('arange', 7)`: every size written."""
    if decl.kind == "parameter":
        parts = [spec_literal(d) for d in decl.shape] + [f"init={spec_literal(decl.init)}"]
        if not decl.trainable:
            parts.append("trainable=false")
        return f"Parameter({', '.join(parts)})"
    parts = [spec_literal(decl.scheme), *(spec_literal(a) for a in decl.args)]
    if not decl.persistent:
        parts.append("persistent=false")
    return f"Buffer({', '.join(parts)})"


