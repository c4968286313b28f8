"""Output shapes as expressions of the input's named dimensions (`--input B,3,H,W`).

After the concrete pass has materialised every parameter (named dims at a hint size), the model
runs once more under torch's fake tensors with a symbolic shape environment (the machinery
behind `torch.export`'s dynamic dimensions). Each node's output shape comes out as a SymPy
expression of torch's symbols, which are mapped back to the user's names. A parameter that
depends on a named dimension shows up as an equality guard, reported with the node that made it.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from lazyspec.compile import Built, SpecModule, Step
from lazyspec.inputs import BoundInput
from lazyspec.shapes import ShapeTree, format_shape
from lazyspec.trace import tracing


@dataclass
class SymbolicShapes:
    symbols: dict[str, int]  # name -> the size it had in the concrete pass
    outputs: dict[int, str] = field(default_factory=dict)  # NodeInfo.order -> "[B, 64, ...]"
    model_outputs: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)  # where a name got pinned down
    error: str | None = None  # the symbolic pass could not run (the concrete one did)


def symbolic_pass(built: Built, bound: Sequence[BoundInput]) -> SymbolicShapes:
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import (
        DimDynamic,
        ShapeEnv,
        StatelessSymbolicContext,
    )

    result = SymbolicShapes({n: d for b in bound for n, d in zip(b.dim_names, b.shape,
                                                                strict=True) if n is not None})
    env = ShapeEnv(duck_shape=False)  # equal sizes under different names stay apart
    _skip_source_locations(env)
    mode = FakeTensorMode(shape_env=env, allow_non_fake_inputs=True)
    names: dict[str, str] = {}  # torch's symbol -> the user's name
    inputs = []
    for b in bound:
        dynamic = [DimDynamic.DYNAMIC if n else DimDynamic.STATIC for n in b.dim_names]
        meta = torch.empty(b.shape, dtype=getattr(torch, b.dtype), device="meta")
        fake = mode.from_tensor(meta, symbolic_context=StatelessSymbolicContext(
            dynamic_sizes=dynamic))
        for size, name in zip(fake.shape, b.dim_names, strict=True):
            if name is not None:
                names[str(size)] = name
        inputs.append(fake)
    tracer = _SymbolicTracer(result, env, names)
    try:
        with tracing(built.module, tracer), mode, torch.no_grad(), _torch_logs_quiet():
            out = built.module(*inputs)
    except Exception as e:  # the concrete pass already succeeded: report, do not fail
        result.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        return result
    outs = out if isinstance(out, tuple) else (out,)
    result.model_outputs = [tracer.shape(o) for o in outs]
    return result


def _skip_source_locations(env: Any) -> None:
    """Make `env` record no Python source location for its symbols and guards.

    For each one torch walks the stack to find the user's frame, and the first walk imports
    torch.export, the AOT autograd and inductor packages (about 0.5 s) only to tell torch's frames
    from the user's. lazyspec never shows those locations: it names the node itself. Private
    torch API, so only where it exists as expected.
    """
    from torch.fx.experimental import symbolic_shapes

    sloc = getattr(symbolic_shapes, "SLoc", None)
    if sloc is not None and callable(getattr(env, "_get_stack_summary", None)):
        def summary(is_debug: bool = False, framework_loc: str | None = None) -> tuple[Any, str]:
            return sloc(framework_loc, None), ""

        env._get_stack_summary = summary


@contextlib.contextmanager
def _torch_logs_quiet() -> Iterator[None]:
    """torch logs an op that fails on fake tensors, traceback and all, to stderr; the failure is
    reported as a note instead."""
    logger = logging.getLogger("torch._subclasses.fake_tensor")
    before = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = before


class _SymbolicTracer:
    def __init__(self, result: SymbolicShapes, env: Any, names: dict[str, str]):
        self.result, self.env, self.names = result, env, names
        self.seen_guards = 0

    def run(self, owner: SpecModule, step: Step, values: list[Any]) -> Any:
        out = owner.run_step(step, owner.gather(values, step))
        self.result.outputs[step.info.order] = self.shape(out)
        if not isinstance(step.module, SpecModule):  # blocks report through their own nodes
            self.new_constraints(step)
        return out

    def new_constraints(self, step: Step) -> None:
        import sympy

        guards = self.env.guards[self.seen_guards:]
        self.seen_guards = len(self.env.guards)
        for guard in guards:
            # An equality pins a name down; `== 0` and `== 1` are torch's own size
            # specialisations, not a parameter's doing.
            if isinstance(guard.expr, sympy.Eq) and guard.expr.rhs not in (0, 1):
                used = sorted({self.names[str(s)] for s in guard.expr.free_symbols
                               if str(s) in self.names})
                if used:
                    self.result.constraints.append(
                        f"node '{step.info.path}' ({step.info.op}) needs "
                        f"{self.text(guard.expr.lhs)} == {self.text(guard.expr.rhs)}: its "
                        f"parameters depend on {', '.join(used)} (fixed in the concrete pass at "
                        + ", ".join(f"{n}={self.result.symbols[n]}" for n in used) + ")")

    def shape(self, value: Any) -> str:
        return format_shape(self.tree(value))

    def tree(self, value: Any) -> ShapeTree:
        """A value's shapes with every size as an expression of the user's names."""
        if isinstance(value, torch.Tensor):
            return tuple(self.text(d) for d in value.shape)
        if isinstance(value, (tuple, list)):
            return [self.tree(v) for v in value]
        return type(value).__name__

    def text(self, size: Any) -> str:
        """A size as an expression of the user's names: `((H - 1)//2) + 1`."""
        node = getattr(size, "node", None)
        expr = str(node.expr) if node is not None and hasattr(node, "expr") else str(size)
        expr = re.sub(r"\b[su]\d+\b", lambda m: self.names.get(m.group(0), m.group(0)), expr)
        return _drop_double_parens(expr)


def _drop_double_parens(text: str) -> str:
    """`(((H - 1)//4)) + 1` -> `((H - 1)//4) + 1`: SymPy's printer doubles some parentheses."""
    while True:
        match = _matching(text)
        for i in range(len(text) - 1):
            if text[i] == "(" and text[i + 1] == "(" and match.get(i + 1) == match.get(i, -1) - 1:
                text = text[:i] + text[i + 1:match[i]] + text[match[i] + 1:]
                break
        else:
            return text


def _matching(text: str) -> dict[int, int]:
    stack, pairs = [], {}
    for i, c in enumerate(text):
        if c == "(":
            stack.append(i)
        elif c == ")" and stack:
            pairs[stack.pop()] = i
    return pairs
