"""One traced forward pass of a compiled model: the input shapes bound to the model's inputs,
the tracer installed, a failure pinned to the node where it happened and turned into a located
diagnostic (LS201 with the shapes that reached it), the ties applied after the pass."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lazyspec import explain, memory, progress
from lazyspec.builtin_ops import OpInputError
from lazyspec.checks import CheckFailed
from lazyspec.compile import Built, NodeInfo, OutputIndexError, SpecModule
from lazyspec.cost import CostMode
from lazyspec.errors import Diagnostic, DryRunError, SpecError, UsageError
from lazyspec.inputs import BoundInput, InputShape, bind_inputs
from lazyspec.result import InferResult, RunStats, ShapeTree
from lazyspec.summarize import summarize
from lazyspec.ties import apply_ties
from lazyspec.trace import NodeFailure, Tracer, shape_tree, tracing


@dataclass
class Forward:
    """What one traced pass gave: the inputs as bound, the output shapes, the trace."""

    bound: list[BoundInput]
    outputs: list[ShapeTree]
    tracer: Tracer


def run(built: Built, given: Sequence[InputShape], symbolic: bool = True) -> InferResult:
    """Dry-run a compiled model: one traced pass, then its result; named input dimensions add a
    symbolic pass after the concrete one (unless `symbolic` is False). Raises DryRunError at the
    first failing node. On a real device the result carries the measured forward time and peak
    memory."""
    done = forward(built, given)
    result = summarize(built, done.bound, done.outputs, done.tracer)
    device = built.options.device
    if device != "meta":
        result.run = RunStats(0, None, memory.peak_bytes(device), done.tracer.seconds)
    if symbolic and any(b.symbolic for b in done.bound):
        progress.note(f"{built.spec.path}: {len(built.nodes):,} nodes: symbolic pass")
        _add_symbolic(result, built, done.bound)
    return result


def make_inputs(bound: Sequence[BoundInput], device: torch.device) -> list[torch.Tensor]:
    tensors = []
    for b in bound:
        dtype = getattr(torch, b.dtype)
        if device.type == "meta":
            tensors.append(torch.empty(b.shape, dtype=dtype, device=device))
        elif dtype.is_floating_point or dtype.is_complex:
            tensors.append(torch.randn(b.shape, dtype=dtype, device=device))
        else:  # zeros are valid indices for any Embedding
            tensors.append(torch.zeros(b.shape, dtype=dtype, device=device))
    return tensors


def _add_symbolic(result: InferResult, built: Built, bound: Sequence[BoundInput]) -> None:
    from lazyspec.symbolic import symbolic_pass

    sym = symbolic_pass(built, bound)
    order = {n.path: n.order for n in built.nodes}
    for node in result.nodes:
        node.symbolic = sym.outputs.get(order[node.path])
    result.symbols = sym.symbols
    result.symbolic_outputs = sym.model_outputs
    result.notes += sym.constraints
    if sym.error:
        result.notes.append(f"symbolic shapes unavailable: {sym.error}")


def forward(built: Built, given: Sequence[InputShape]) -> Forward:
    """One traced pass, then the ties; raise DryRunError at the first failing node."""
    bound = bind_inputs(built.spec, built.params, built.options.dtype, given)
    device = torch.device(built.options.device)
    tensors = make_inputs(bound, device)
    model = built.module
    tracer = Tracer(CostMode())
    tracer.ranges.update({id(t): b.range for b, t in zip(bound, tensors, strict=True) if b.range})
    was_training = model.training
    try:
        model.eval()  # a dry run is inference: dropout off, batch norm on running stats
        with tracing(model, tracer), torch.no_grad(), tracer.cost:
            start = time.perf_counter()
            out = model(*tensors)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            tracer.seconds = time.perf_counter() - start
    except NodeFailure as failure:
        raise _failure_error(failure, built, tracer) from None
    except OutputIndexError as e:  # the model's own `outputs:` picked a missing output
        raise DryRunError(Diagnostic("LS132", f"`outputs:` reads an output that does not exist: "
                                     f"{e}", e.where), tracer.ran) from None
    finally:
        model.train(was_training)
    problems = apply_ties(model, built.ties)
    if problems:
        raise SpecError(problems)
    outputs = out if isinstance(out, tuple) else (out,)
    return Forward(bound, [shape_tree(o) for o in outputs], tracer)


def _failure_error(failure: NodeFailure, built: Built, tracer: Tracer) -> Exception:
    if out_of_memory(failure.cause):  # the machine's limit, not the spec's fault: exit 2
        return UsageError([Diagnostic(
            "LS306", f"node '{failure.step.info.path}' ran out of memory on "
            f"{built.options.device}: {str(failure.cause).splitlines()[0][:160]}",
            failure.step.info.loc, hint="use --device meta (the default) or a smaller input")])
    return DryRunError(_failure_diagnostic(failure, built), tracer.ran)


def out_of_memory(e: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", MemoryError)
    return isinstance(e, (MemoryError, oom)) or (
        isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


def _failure_diagnostic(f: NodeFailure, built: Built) -> Diagnostic:
    """LS201 at the failing node: the shapes that reached it, its parameters, what it expected
    and torch's own message."""
    info: NodeInfo = f.step.info
    if isinstance(f.cause, OutputIndexError):
        return Diagnostic("LS132", f"node '{info.path}' ({info.op}) reads an output that does not "
                          f"exist: {f.cause}", f.cause.where or info.loc, trail=info.trail,
                          hint="`name.K` picks output K of a node that returns several tensors "
                          "(Chunk, Split, a block with several outputs)")
    module = f.step.module
    if isinstance(f.cause, CheckFailed):  # lazyspec's own check: its words, no torch message
        notes = input_notes(module, f.inputs)
        notes.append(f"expected: {f.cause.message}")
        return Diagnostic(f.cause.code, f"{f.cause.kind} in node '{info.path}' ({info.op})",
                          info.loc, trail=info.trail, notes=notes, hint=f.cause.hint)
    what, notes, hint = describe_failure(module, f.inputs, f.cause)
    return Diagnostic("LS201", f"{what} in node '{info.path}' ({info.op})", info.loc,
                      trail=info.trail, notes=notes, hint=hint)


def input_notes(module: nn.Module | None, inputs: Sequence[Any] | None) -> list[str]:
    """`inputs: ...` and `parameters: ...` lines of a failure report."""
    notes: list[str] = []
    if inputs is not None:
        notes.append("inputs: " + ", ".join(_describe(x) for x in inputs))
    params = _param_shapes(module)
    if params:
        notes.append("parameters: " + ", ".join(params))
    return notes


def describe_failure(module: nn.Module | None, inputs: Sequence[Any] | None,
                     cause: BaseException) -> tuple[str, list[str], str | None]:
    """What failed (`shape mismatch`, ...), the report's lines (the inputs that reached the
    module, its parameters, what it expected, torch's own message) and a hint: for a spec's node
    and for a module of `lazyspec.summary` alike."""
    notes = input_notes(module, inputs)
    why = explain.explain(module, inputs or [], cause)
    if why:
        notes.append(f"expected: {why[0]}")
    if not isinstance(cause, OpInputError):  # a built-in op's own message is `expected:`
        text = f"{type(cause).__name__}: {cause}".strip()
        notes.append(f"torch: {text.splitlines()[0] if text else type(cause).__name__}")
    what = explain.headline(module, inputs or [], cause) or _what_failed(cause, why)
    hint = why[1] if why else None
    if hint is None and any(isinstance(x, (tuple, list)) for x in inputs or []):
        hint = ("an input is a tuple (a node that returns several values, such as LSTM's "
                "(output, (h, c)) or MultiheadAttention's (output, weights)): pick one with "
                "`in: NAME.0`")
    return what, notes, hint


def _what_failed(cause: BaseException, why: explain.Explanation | None) -> str:
    """The report's title: what kind of mismatch torch's error shows."""
    text = str(cause)
    if isinstance(cause, IndexError) and "index out of range in self" in text:
        return "index out of range"  # a real run reading past an Embedding's table
    if why is None and re.search(r"dtype|scalar type|must have the same type|type \(.*\) and "
                                 r".* type \(.*\) should be the same|expected scalar type", text):
        return "dtype mismatch"
    is_shape = why is not None or isinstance(cause, (RuntimeError, ValueError, IndexError))
    return "shape mismatch" if is_shape else "failure"


def _describe(x: Any, depth: int = 0) -> str:
    if isinstance(x, torch.Tensor):
        return f"{list(x.shape)} {str(x.dtype).removeprefix('torch.')}"
    if isinstance(x, (tuple, list)) and depth < 3:  # LSTM's (output, (h, c)): its shapes
        shown = ", ".join(_describe(v, depth + 1) for v in x[:4])
        return f"{type(x).__name__} ({shown}{', ...' if len(x) > 4 else ''})"
    return type(x).__name__


def _param_shapes(module: nn.Module | None) -> list[str]:
    if module is None or isinstance(module, SpecModule):
        return []
    out = []
    for name, p in module.named_parameters():
        shape = "[?]" if isinstance(p, nn.parameter.UninitializedParameter) else str(list(p.shape))
        out.append(f"{name} {shape}")
    return out


