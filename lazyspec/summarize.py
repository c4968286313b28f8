"""A dry run's result as plain data: parameters (shared and tied ones marked, counted once),
nodes with their output shapes, FLOPs and activations, and the totals."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lazyspec.compile import Built, NodeKind
from lazyspec.inputs import BoundInput
from lazyspec.result import (
    InferResult,
    InputRecord,
    NodeRecord,
    ParamRecord,
    ShapeTree,
    Totals,
)
from lazyspec.trace import Tracer


def summarize(built: Built, bound: Sequence[BoundInput], outputs: list[ShapeTree],
              tracer: Tracer) -> InferResult:
    """The result of a traced pass over a compiled (and now materialised) model."""
    params = _param_records(built)
    return InferResult(
        spec=built.spec.path, name=built.spec.name, device=built.options.device,
        dtype=built.options.dtype, inputs=[InputRecord(b.name, b.shape, b.dtype) for b in bound],
        outputs=outputs, params=params, nodes=_node_records(built, tracer, params),
        totals=_totals(built, tracer, params), notes=list(tracer.notes))


def _param_records(built: Built) -> list[ParamRecord]:
    """Every parameter once, under its first name; shared and tied ones marked."""
    model = built.module
    shared_by: dict[str, list[str]] = {}
    for n in built.nodes:
        if n.shared_from:
            shared_by.setdefault(n.shared_from, []).append(n.path)
    first_name: dict[int, str] = {}
    tied: dict[str, list[str]] = {}  # first name -> every other name of the same tensor
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first_name:
            tied.setdefault(first_name[id(p)], []).append(name)
        else:
            first_name[id(p)] = name
    params: list[ParamRecord] = []
    for name, p in model.named_parameters():
        owner_path = name.rpartition(".")[0]
        node = built.owner_of(name)  # a Parameter(...) node owns its tensor by its own path
        module = model.get_submodule(owner_path) if owner_path else model
        module_type = "Parameter" if node and node.kind is NodeKind.TENSOR \
            else type(module).__name__
        count = p.numel()
        marks = []
        sharers = [s for prefix in _prefixes(owner_path) for s in shared_by.get(prefix, [])]
        if sharers:
            marks.append("shared by " + ", ".join(sharers))
        if name in tied:
            marks.append(f"tied to {', '.join(tied[name])}")
        params.append(ParamRecord(
            path=name, op=node.op if node else type(module).__name__,
            module_type=module_type, shape=tuple(p.shape), count=count,
            dtype=str(p.dtype).removeprefix("torch."), bytes=int(count * p.element_size()),
            trainable=p.requires_grad, location=node.loc if node else None,
            shared="; ".join(marks) or None))
    return params


def _node_records(built: Built, tracer: Tracer, params: list[ParamRecord]) -> list[NodeRecord]:
    """Every node in spec order, with what the trace saw it do."""
    counts: dict[str, int] = {}  # module path -> parameters under it
    for rec in params:
        parts = rec.path.split(".")
        for i in range(1, len(parts) + 1):  # the whole path too: a Parameter(...) node's own
            counts[".".join(parts[:i])] = counts.get(".".join(parts[:i]), 0) + rec.count
    nodes = []
    for n in sorted(built.nodes, key=lambda n: n.order):
        trace = tracer.nodes.get(n.order)
        nodes.append(NodeRecord(
            path=n.path, op=n.op, depth=n.depth, location=n.loc,
            output=trace.output if trace else None, skipped=n.skipped,
            shared_from=n.shared_from, params=0 if n.shared_from else counts.get(n.path, 0),
            flops=trace.flops if trace else 0, unknown_ops=trace.unknown_ops if trace else [],
            activation_bytes=trace.activation_bytes if trace else 0,
            input=trace.input if trace else None))
    return nodes


def _totals(built: Built, tracer: Tracer, params: list[ParamRecord]) -> Totals:
    activations = sum(t.activation_bytes for t in tracer.nodes.values() if t.leaf)
    return totals(params, list(built.module.buffers()), activations, tracer.cost.total.flops,
                  tracer.cost.total.unknown)


def totals(params: list[ParamRecord], buffers: list[torch.Tensor], activations: int,
           flops: int, unknown: set[str]) -> Totals:
    """Totals of a traced pass: parameters counted once, buffers, FLOPs, activations and the
    training-memory estimate (also for `lazyspec.summary` of any nn.Module)."""
    param_bytes = sum(r.bytes for r in params)
    trainable_bytes = sum(r.bytes for r in params if r.trainable)
    buffer_bytes = sum(b.numel() * b.element_size() for b in buffers)
    return Totals(
        params=sum(r.count for r in params),
        trainable=sum(r.count for r in params if r.trainable),
        bytes=param_bytes, buffers=sum(b.numel() for b in buffers), buffer_bytes=buffer_bytes,
        flops=flops, unknown_ops=sorted(unknown), activation_bytes=activations,
        # Adam keeps two moments per trainable parameter, gradients one more copy.
        training_bytes=param_bytes + 3 * trainable_bytes + buffer_bytes + activations)


def _prefixes(path: str) -> list[str]:
    """`a.b.c` -> [a.b.c, a.b, a]: a parameter belongs to every module above it."""
    parts = path.split(".") if path else []
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
