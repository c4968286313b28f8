"""Tracing a user's module for `lazyspec import module`: torch.fx, one module instance at a time,
then its shapes under fake tensors with symbolic input sizes.

Why torch.fx and not torch.export: export lowers a model to aten operators and flattens its
module tree (an nn.Linear becomes `aten.linear` plus metadata), while a spec is written in
torch.nn layers and the user's own module structure. fx with every submodule call kept as a call
(`is_leaf_module` is always true here) gives each module instance's forward as a graph of its own
submodule calls and functions: a spec's node list. Each submodule that must become a block is
traced the same way, so the module tree is kept. fx's limits are reported, not worked around:
data-dependent control flow (`if x.sum() > 0`) is fx's TraceError, named at the module. Factory
functions given traced sizes (`torch.ones(t, t)`, `torch.arange(x.shape[1])`) are recorded as
calls while tracing.

The shape pass then runs the graphs under FakeTensorMode with every input dimension symbolic (the
machinery of torch.export's dynamic shapes; input sizes are the given ones as hints), so a size
the module reads from its input (`b, t, d = x.shape`) is known as that input dimension, or as the
number a guard pinned it to (a channel count), not as a number that happened to match. Where the
symbolic pass fails, a pass with every size fixed at the given input takes over, and the spec is
specialised to that input (said in a note).
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from lazyspec.importers import cannot

# Factory functions that fx cannot trace with a traced size (`torch.ones(t, t)` raises a
# TypeError): while tracing, a call with a traced argument is recorded as a graph node.
FACTORIES = ("ones", "zeros", "full", "empty", "arange", "eye", "rand", "randn", "randint",
             "tensor")


@dataclass
class Traced:
    """One module instance's forward as a graph of its submodule calls and functions."""

    path: str  # from the root ("" for the root)
    module: nn.Module
    graph: fx.Graph
    inputs: list[str]  # forward's arguments that are graph inputs (the others were fixed)
    values: dict[fx.Node, Any] = field(default_factory=dict)  # from the shape pass


@dataclass
class Trace:
    """Every traced module instance, and the shape pass's symbolic environment."""

    root: Traced
    children: dict[tuple[int, str], Traced] = field(default_factory=dict)  # (id(parent), node)
    env: Any = None  # torch's ShapeEnv of the shape pass
    specialised: str | None = None  # why sizes are fixed at the given input (None: symbolic)

    def child(self, parent: Traced, node: fx.Node) -> Traced | None:
        return self.children.get((id(parent), node.name))


class _Tracer(fx.Tracer):
    """Every submodule call stays a call; factory functions with traced sizes are recorded."""

    def __init__(self) -> None:
        super().__init__(autowrap_modules=(math,))

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True

    def trace(self, root: Any, concrete_args: dict[str, Any] | None = None) -> fx.Graph:
        with _factories_recorded(self):
            return super().trace(root, concrete_args)


@contextlib.contextmanager
def _factories_recorded(tracer: fx.Tracer) -> Iterator[None]:
    originals = {name: getattr(torch, name) for name in FACTORIES}

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def factory(*args: Any, **kwargs: Any) -> Any:
            leaves = torch.utils._pytree.tree_leaves((args, kwargs))
            if any(isinstance(x, fx.Proxy) for x in leaves):
                return tracer.create_proxy("call_function", fn, args, kwargs)
            return fn(*args, **kwargs)
        return factory

    try:
        for name, fn in originals.items():
            setattr(torch, name, wrap(fn))
        yield
    finally:
        for name, fn in originals.items():
            setattr(torch, name, fn)


def where(path: str, module: nn.Module) -> str:
    """`module 'h.0.attn' (CausalSelfAttention)`, or the model itself."""
    cls = type(module).__name__
    return f"module '{path}' ({cls})" if path else f"the model ({cls})"


def trace_all(root: nn.Module, is_leaf: Callable[[nn.Module], bool], inputs: list[str],
              fixed: dict[str, Any]) -> Trace:
    """Trace the root (`inputs` its forward's arguments given shapes, `fixed` the defaults of
    the others) and, below it, every called submodule that is not a leaf."""
    trace = Trace(_trace_one("", root, inputs, fixed))
    queue = [trace.root]
    while queue:
        parent = queue.pop(0)
        for node in parent.graph.nodes:
            if node.op != "call_module":
                continue
            child = parent.module.get_submodule(node.target)
            if is_leaf(child):
                continue
            path = f"{parent.path}.{node.target}" if parent.path else str(node.target)
            inputs, fixed = _call_arguments(child, node, path)
            traced = _trace_one(path, child, inputs, fixed)
            trace.children[(id(parent), node.name)] = traced
            queue.append(traced)
    return trace


def _call_arguments(child: nn.Module, node: fx.Node, path: str,
                    ) -> tuple[list[str], dict[str, Any]]:
    """forward's arguments at this call: those the call passes traced values to (graph inputs)
    and those fixed for the trace (literals the call passes, defaults it leaves out)."""
    try:
        signature = inspect.signature(child.forward)
        bound = signature.bind(*node.args, **node.kwargs)
    except (TypeError, ValueError) as e:
        raise cannot("LS160", f"{where(path, child)}: its call does not match its forward: "
                     f"{e}") from None
    inputs, fixed = [], {}
    for name, p in signature.parameters.items():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            stars = "*" if p.kind == p.VAR_POSITIONAL else "**"
            raise cannot("LS160", f"{where(path, child)}: forward takes {stars}{name}: a spec "
                         "block takes named inputs", "give forward named arguments")
        if name not in bound.arguments:
            fixed[name] = p.default
            continue
        value = bound.arguments[name]
        if isinstance(value, fx.Node):
            inputs.append(name)
        elif any(isinstance(x, fx.Node) for x in torch.utils._pytree.tree_leaves(value)):
            raise cannot("LS160", f"{where(path, child)} is called with a list or dict of "
                         f"tensors for '{name}': a spec passes tensors one by one")
        else:
            fixed[name] = value
    return inputs, fixed


def _trace_hint(module: nn.Module) -> str:
    """What to do when torch.fx cannot trace `module`'s forward."""
    if type(module).__module__.split(".")[0] == "transformers":
        return ("a Hugging Face model's forward is not written for torch.fx: `lazyspec import "
                "hf` writes the spec from its config.json")
    try:
        kinds = {p.kind for p in inspect.signature(module.forward).parameters.values()}
    except (TypeError, ValueError):
        kinds = set()
    if inspect.Parameter.VAR_KEYWORD in kinds or inspect.Parameter.VAR_POSITIONAL in kinds:
        return ("its forward takes *args or **kwargs, which torch.fx follows only partly: give "
                "it named arguments, or import a module that calls it with named arguments")
    return ("torch.fx traces forward with stand-in values: Python that needs real tensor values "
            "(len(), .item(), numpy) cannot become a spec; import the modules around it")


def _trace_one(path: str, module: nn.Module, inputs: list[str],
               fixed: dict[str, Any]) -> Traced:
    tracer = _Tracer()
    was_training = {m: m.training for m in module.modules()}
    try:
        module.eval()  # as the dry run: `if self.training` takes the inference branch
        graph = tracer.trace(module, concrete_args=fixed or None)
    except fx.proxy.TraceError as e:
        raise cannot("LS160", f"{where(path, module)} has data-dependent control flow: {e}",
                     "a spec's data flow cannot depend on tensor values: write the branch with "
                     "tensor operations, or import the modules around it") from None
    except Exception as e:  # anything the user's forward does that tracing cannot follow
        raise cannot("LS160", f"{where(path, module)} cannot be traced: {type(e).__name__}: "
                     f"{str(e).splitlines()[0] if str(e) else ''}"[:400],
                     _trace_hint(module)) from None
    finally:
        for m, training in was_training.items():
            m.training = training
    return Traced(path, module, graph, list(inputs))


# --- the shape pass ----------------------------------------------------------------------------


class _Shapes(fx.Interpreter):
    """Runs one traced graph; a call of a traced submodule runs that submodule's graph."""

    def __init__(self, trace: Trace, traced: Traced):
        super().__init__(traced.module, garbage_collect_values=False, graph=traced.graph)
        self.trace_, self.traced = trace, traced

    def run_node(self, n: fx.Node) -> Any:
        child = self.trace_.child(self.traced, n) if n.op == "call_module" else None
        if child is None:
            value = super().run_node(n)
        else:
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            bound = inspect.signature(child.module.forward).bind_partial(*args, **kwargs)
            value = _Shapes(self.trace_, child).run(*(bound.arguments[a] for a in child.inputs))
        self.traced.values.setdefault(n, value)  # a second call keeps the first's shapes
        return value


def shape_pass(trace: Trace, shapes: Sequence[tuple[int, ...]],
               dtypes: Sequence[torch.dtype]) -> None:
    """Fill every traced node's value: symbolic sizes first, fixed sizes where that fails."""
    from torch.fx.experimental.symbolic_shapes import DimDynamic

    try:
        _run_fake(trace, shapes, dtypes, DimDynamic.DYNAMIC)
        return
    except Exception as e:
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
    for t in _all(trace):
        t.values.clear()
    try:
        _run_fake(trace, shapes, dtypes, DimDynamic.STATIC)
    except Exception as e:
        raise cannot("LS160", f"{_failing(trace)} fails at the given input: "
                     f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:400],
                     _shape_hint(e)) from None
    trace.specialised = why


def _shape_hint(e: Exception) -> str:
    """What to do when the shape pass (a meta copy of the model, fake inputs) fails."""
    name = type(e).__name__
    if "DeviceMismatch" in name or "meta and cpu" in str(e):
        return ("the model runs as a meta copy: a tensor forward makes without `device=` (torch."
                "arange(n), torch.ones(...)) is on the CPU; make it on its input's device "
                "(device=x.device)")
    if "DataDependent" in name:
        return ("forward needs a tensor's values (a mask built from data, a nonzero(), an "
                "item()): a spec cannot depend on them; pass the mask as an input or import the "
                "modules around it")
    return "check --input: its shapes and dtypes must be what the model takes"


def _all(trace: Trace) -> list[Traced]:
    return [trace.root, *trace.children.values()]


def _failing(trace: Trace) -> str:
    """The innermost traced module that did not finish (its output has no value)."""
    unfinished = [t for t in _all(trace) if t.values and not any(
        n.op == "output" for n in t.values)]
    t = max(unfinished, key=lambda t: t.path.count("."), default=trace.root)
    return where(t.path, t.module)


def _run_fake(trace: Trace, shapes: Sequence[tuple[int, ...]], dtypes: Sequence[torch.dtype],
              dynamic: Any) -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv, StatelessSymbolicContext

    from lazyspec.symbolic import _skip_source_locations, _torch_logs_quiet

    env = ShapeEnv(duck_shape=False)  # equal sizes of different dimensions stay apart
    _skip_source_locations(env)
    mode = FakeTensorMode(shape_env=env, allow_non_fake_inputs=True)
    inputs = [mode.from_tensor(torch.empty(s, dtype=d, device="meta"),
                               symbolic_context=StatelessSymbolicContext(
                                   dynamic_sizes=[dynamic] * len(s)))
              for s, d in zip(shapes, dtypes, strict=True)]
    root = trace.root.module
    was_training = {m: m.training for m in root.modules()}
    try:
        root.eval()
        with mode, torch.no_grad(), _torch_logs_quiet():
            _Shapes(trace, trace.root).run(*inputs)
    finally:
        for m, training in was_training.items():
            m.training = training
    trace.env = env
