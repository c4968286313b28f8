"""nn.Module + input shapes + device -> InferResult. The tracer is removed in `finally`."""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from lazyspec import explain
from lazyspec.compile import (
    BuildOptions,
    Built,
    NodeInfo,
    OutputIndexError,
    SpecModule,
    Step,
    apply_ties,
    build,
)
from lazyspec.cost import CostMode
from lazyspec.errors import (
    Diagnostic,
    DryRunError,
    SpecError,
    UsageError,
    did_you_mean,
    usage_error,
)
from lazyspec.inputs import DTYPES, InputShape
from lazyspec.memory import available_memory
from lazyspec.result import (
    InferResult,
    InputRecord,
    MoreRun,
    NodeRecord,
    ParamRecord,
    RunStats,
    ShapeTree,
    Totals,
)
from lazyspec.spec.expr import Expr, evaluate
from lazyspec.spec.model import DEFAULT_INPUT, InputDecl, Spec

MAX_RAN_SHOWN = 8


def shape_tree(value: Any) -> ShapeTree:
    if isinstance(value, torch.Tensor):
        return tuple(int(d) for d in value.shape)
    if isinstance(value, (tuple, list)):
        return [shape_tree(v) for v in value]
    return type(value).__name__


class NodeFailure(Exception):
    """A step raised during the dry run; carries what reached it."""

    def __init__(self, step: Step, inputs: list[Any] | None, cause: BaseException):
        super().__init__(str(cause))
        self.step, self.inputs, self.cause = step, inputs, cause


@dataclass
class NodeTrace:
    output: ShapeTree
    flops: int | None
    unknown_ops: list[str]
    activation_bytes: int
    leaf: bool  # an op, not a block or a pass-through: its output is a real activation


class Tracer:
    """Runs each step, records its output shape and cost, and pins a failure to the innermost
    node."""

    def __init__(self, cost: CostMode) -> None:
        self.cost = cost
        self.nodes: dict[int, NodeTrace] = {}  # NodeInfo.order -> what it did
        self.ran: list[str] = []
        self.notes: list[str] = []
        self.seconds = 0.0  # the forward pass, as measured

    def run(self, owner: SpecModule, step: Step, values: list[Any]) -> Any:
        xs: list[Any] | None = None
        frame = self.cost.open_frame()
        try:
            xs = owner.gather(values, step)
            if step.module is None:
                out = xs[0]
            else:
                try:
                    out = step.module(*xs)
                except Exception as e:
                    if not _lacks_meta_kernel(e, xs, step):
                        raise
                    out = self.run_on_cpu(owner, step, xs, e)
        except (NodeFailure, UsageError):
            raise
        except Exception as e:  # any op failing on user shapes becomes a located report
            raise NodeFailure(step, xs, e) from e
        finally:
            self.cost.close_frame(frame)
        leaf = step.module is not None and not isinstance(step.module, SpecModule)
        self.nodes[step.info.order] = NodeTrace(
            shape_tree(out), None if frame.unknown else frame.flops, sorted(frame.unknown),
            _bytes(out), leaf)
        self.ran.append(step.info.path)
        return out


    def run_on_cpu(self, owner: SpecModule, step: Step, xs: list[Any], why: Exception) -> Any:
        """Run one node whose op has no `meta` kernel on the CPU, then carry on in `meta`.

        The node is rebuilt on the CPU from its spec, run on stand-in data, and its
        materialised module moved back to `meta` in place of the lazy one.
        """
        assert step.factory is not None and step.module is not None
        from torch.utils._pytree import tree_leaves, tree_map

        # The stand-ins are real tensors: a meta run must not allocate what the machine lacks.
        needed = sum(_bytes(x) for x in tree_leaves(xs) if isinstance(x, torch.Tensor)) * 3
        available = free_memory("cpu")
        if available is not None and needed > available:
            raise UsageError([Diagnostic(
                "LS306", f"node '{step.info.path}' ({step.info.op}) has no meta kernel and would "
                f"run on the CPU, which needs about {_gib(needed)} but {_gib(available)} is free",
                step.info.loc, hint="give a smaller input")])
        cpu_module = step.factory(torch.device("cpu"))
        cpu_module.eval()
        cpu_out = cpu_module(*tree_map(_on_cpu, xs))
        meta_module = cpu_module.to("meta")  # no lazy parameters are left: moving is safe
        for name, child in owner._modules.items():
            if child is step.module:
                owner._modules[name] = meta_module
        step.module = meta_module
        reason = str(why).splitlines()[0][:120]
        self.notes.append(f"node '{step.info.path}' ({step.info.op}) ran on the CPU: its op has "
                          f"no meta kernel ({reason})")
        return tree_map(lambda t: torch.empty_like(t, device="meta")
                        if isinstance(t, torch.Tensor) else t, cpu_out)


_NO_META = ("Meta tensors", "'Meta' backend", "Meta kernel", "fake impl", "meta kernel")


def _lacks_meta_kernel(e: Exception, xs: list[Any], step: Step) -> bool:
    """True when an op failed only because it cannot run on `meta` (and can be rebuilt)."""
    on_meta = any(isinstance(x, torch.Tensor) and x.device.type == "meta" for x in xs)
    return (on_meta and step.factory is not None
            and any(marker in str(e) for marker in _NO_META))


def _on_cpu(x: Any) -> Any:
    """A CPU stand-in for a meta tensor: random floats, zero integers (valid indices)."""
    if not isinstance(x, torch.Tensor) or x.device.type != "meta":
        return x
    if x.dtype.is_floating_point or x.dtype.is_complex:
        return torch.randn(x.shape, dtype=x.dtype)
    return torch.zeros(x.shape, dtype=x.dtype)


def _bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(_bytes(v) for v in value)
    return 0


@dataclass
class BoundInput:
    name: str
    shape: tuple[int, ...]  # concrete: named dims take their hint
    dtype: str
    dim_names: tuple[str | None, ...] = ()  # a name for each symbolic dim, None for a number

    @property
    def symbolic(self) -> bool:
        return any(n is not None for n in self.dim_names)


# Sizes a named dimension takes in the concrete pass that precedes the symbolic one.
BATCH_HINT, DIM_HINT = 2, 64  # not 0 or 1, which torch specialises away


def bind_inputs(built: Built, given: Sequence[InputShape]) -> list[BoundInput]:
    """Match `--input` flags to the model's inputs and check them against declared shapes."""
    decls = built.spec.graph.inputs or [InputDecl(DEFAULT_INPUT, None, None, built.spec.graph.loc)]
    names = [d.name for d in decls]
    by_name: dict[str, InputShape] = {}
    unnamed = [g for g in given if g.name is None]
    for g in given:
        if g.name is None:
            continue
        if g.name not in names:
            raise usage_error(f"--input {g}: the model has no input '{g.name}'",
                              did_you_mean(g.name, names) or "inputs: " + ", ".join(names))
        if g.name in by_name:
            raise usage_error(f"--input given twice for '{g.name}'")
        by_name[g.name] = g
    free = [n for n in names if n not in by_name]
    if len(unnamed) > len(free):
        raise usage_error(f"{len(given)} --input flags for {len(names)} input(s) "
                          f"({', '.join(names)})", "name each one: --input NAME=2,20")
    for name, g in zip(free, unnamed, strict=False):  # fewer flags than inputs: checked below
        by_name[name] = g
    bound: list[BoundInput] = []
    problems: list[Diagnostic] = []
    dims: dict[str, tuple[int | str, str]] = {}
    hints: dict[str, int] = {}
    for decl in decls:
        declared = _declared_shape(decl, built.params)
        flag = by_name.get(decl.name)
        if flag is None:
            if declared is None or not all(isinstance(d, (int, str)) for d in declared):
                raise usage_error(f"no shape for input '{decl.name}'",
                                  f"give one, for example --input "
                                  f"{decl.name + '=' if len(decls) > 1 else ''}2,20")
            wanted: tuple[int | str, ...] = tuple(declared)  # declared names stay symbolic
        else:
            wanted = flag.shape
            if declared is not None:
                problems.extend(_check_declared(decl, declared, wanted, dims))
        dtype = (flag.dtype if flag and flag.dtype else decl.dtype) or built.options.dtype
        if dtype not in DTYPES:
            problems.append(Diagnostic("LS146", f"input '{decl.name}': unknown dtype '{dtype}'",
                                       decl.loc, hint=did_you_mean(dtype, DTYPES)))
            continue
        shape = tuple(d if isinstance(d, int) else
                      hints.setdefault(d, BATCH_HINT if i == 0 else DIM_HINT)
                      for i, d in enumerate(wanted))
        too_large = _size_problem(shape, DTYPES[dtype][1])
        if too_large and flag is not None:
            raise usage_error(f"--input {flag}: {too_large}", "give a smaller shape")
        if too_large:
            problems.append(Diagnostic("LS146", f"input '{decl.name}': {too_large}", decl.loc))
            continue
        dim_names = tuple(d if isinstance(d, str) else None for d in wanted)
        bound.append(BoundInput(decl.name, shape, DTYPES[dtype][0], dim_names))
    if problems:
        raise SpecError(problems)
    return bound


def _size_problem(shape: tuple[int, ...], itemsize: float) -> str | None:
    """Why torch cannot make a tensor of this shape, even on `meta`; None when it can."""
    from lazyspec.inputs import MAX_DIM

    for d in shape:
        if d < 0:
            return f"dimension {d} is negative"
        if d > MAX_DIM:
            return f"dimension {d:,} is over the limit of 2**40"
    if math.prod(shape) * itemsize >= 2**63:
        return (f"a tensor of shape {list(shape)} holds {math.prod(shape):,} elements, more "
                "than torch can address (2**63 bytes)")
    return None


def _declared_shape(decl: InputDecl, params: Mapping[str, Any]) -> list[Any] | None:
    if decl.shape is None:
        return None
    out: list[Any] = []
    for d in decl.shape:
        if isinstance(d, Expr):
            d = evaluate(d, params)
        elif isinstance(d, str) and d in params:
            d = params[d]  # a dimension named after a param takes its value
        out.append(d)
    return out


def _check_declared(decl: InputDecl, declared: list[Any], shape: tuple[int | str, ...],
                    dims: dict[str, tuple[int | str, str]]) -> list[Diagnostic]:
    shown = "[" + ", ".join(map(str, declared)) + "]"
    if len(declared) != len(shape):
        return [Diagnostic("LS202", f"input '{decl.name}' is declared {shown} "
                           f"({len(declared)}-d) but was given {list(shape)} ({len(shape)}-d)",
                           decl.loc, hint=f"give {len(declared)} dimensions")]
    out = []
    for i, (want, got) in enumerate(zip(declared, shape, strict=True)):
        if isinstance(want, int) and isinstance(got, int) and want != got:
            out.append(Diagnostic("LS202", f"input '{decl.name}' dimension {i} is declared "
                                  f"{want} but was given {got}", decl.loc))
        elif isinstance(want, str):
            if want in dims and dims[want][0] != got:
                first, where = dims[want]
                out.append(Diagnostic("LS202", f"dimension '{want}' is {first} in {where} but "
                                      f"{got} in input '{decl.name}'", decl.loc,
                                      hint="a named dimension has one size across all inputs"))
            dims.setdefault(want, (got, f"input '{decl.name}'"))
    return out


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


def run(built: Built, given: Sequence[InputShape]) -> InferResult:
    """Dry-run a compiled model; raise DryRunError at the first failing node. Named input
    dimensions add a symbolic pass after the concrete one."""
    bound, outputs, tracer = _forward(built, given)
    result = _result(built, bound, outputs, tracer)
    if any(b.symbolic for b in bound):
        _add_symbolic(result, built, bound)
    return result


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


def split_runs(spec: Spec, given: Sequence[InputShape]) -> list[list[InputShape]]:
    """`--input 2,20 --input 8,20` on a one-input model: two runs. A flag for an input that the
    current run already has starts the next run (D2L 6.4, exercise 3)."""
    names = spec.graph.input_names
    runs: list[list[InputShape]] = [[]]
    for flag in given:
        current = runs[-1]
        taken = [f.name for f in current if f.name] + \
            names[:sum(1 for f in current if f.name is None)]
        target = flag.name or next((n for n in names if n not in taken), None)
        if target is None or target in taken:
            runs.append([])
        runs[-1].append(flag)
    return runs


def infer(spec: Spec, options: BuildOptions, given: Sequence[InputShape]) -> InferResult:
    """Compile and dry-run. Several input sets run in turn on the module the first one
    materialised, and a later set that its parameters cannot take fails at the node."""
    first, *later = split_runs(spec, given)
    built, result = run_spec(spec, options, first)
    if later and options.device != "meta":
        _check_later_runs_fit(spec, options, first, later)
    for inputs in later:
        try:
            bound, outputs, _ = _forward(built, inputs)
        except DryRunError as e:
            shapes = ", ".join(f"{i.name} {list(i.shape)}" for i in result.inputs)
            for d in e.diagnostics:
                d.notes.append(f"its parameters were fixed by the first input ({shapes}): a lazy "
                               "layer takes the sizes of the first data it sees")
                d.hint = ("every input set must fit the sizes the first one fixed; to compare "
                          "shapes that need different parameters, run them separately")
            raise
        result.more_runs.append(
            MoreRun([InputRecord(b.name, b.shape, b.dtype) for b in bound], outputs))
    return result


def run_spec(spec: Spec, options: BuildOptions,
               given: Sequence[InputShape]) -> tuple[Built, InferResult]:
    """Compile and run one input set; the module comes back materialised. On a real device, a
    `meta` pass first estimates the memory the run needs, and a run that would not fit in the
    device's free memory is refused (exit 2)."""
    if options.device == "meta":
        built = build(spec, options)
        return built, run(built, given)
    planned = run(build(spec, replace(options, device="meta")), given)
    estimate = forward_bytes(planned)
    available = _refuse_if_too_large(estimate, options.device)
    device = torch.device(options.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    built = build(spec, options)
    bound, outputs, tracer = _forward(built, given)
    result = _result(built, bound, outputs, tracer)
    result.run = RunStats(estimate, available, _peak_bytes(device), tracer.seconds)
    if any(b.symbolic for b in bound):
        _add_symbolic(result, built, bound)
    return built, result


def _refuse_if_too_large(estimate: int, device: str) -> int | None:
    """The device's free memory; LS306 (exit 2) when the estimate does not fit in it."""
    available = free_memory(device)
    if available is not None and estimate > available:
        raise UsageError([Diagnostic(
            "LS306", f"a dry run on {device} needs about {_gib(estimate)} (parameters, "
            f"inputs and activations, from the meta pass) but {_gib(available)} is free",
            hint="use --device meta (the default), which allocates nothing, or a smaller input")])
    return available


def _check_later_runs_fit(spec: Spec, options: BuildOptions, first: Sequence[InputShape],
                          later: Sequence[Sequence[InputShape]]) -> None:
    """Each later input set on a real device is estimated on `meta` first, as the first one is.
    A set that fails on `meta` fails at its node in the real run too, after its inputs are made:
    those must fit."""
    planned = build(spec, replace(options, device="meta"))
    _forward(planned, first)
    for inputs in later:
        bound = bind_inputs(planned, inputs)
        needed = sum(math.prod(b.shape) * DTYPES[b.dtype][1] for b in bound)
        try:
            bound, outputs, tracer = _forward(planned, inputs)
            needed = forward_bytes(_result(planned, bound, outputs, tracer))
        except DryRunError:
            pass  # the real run reports it, with the first input's context
        _refuse_if_too_large(int(needed), options.device)


def forward_bytes(result: InferResult) -> int:
    """Memory a forward pass holds at its peak: every output stays alive until the end."""
    inputs = sum(math.prod(i.shape) * DTYPES[i.dtype][1] for i in result.inputs)
    t = result.totals
    return int(t.bytes + t.buffer_bytes + inputs + t.activation_bytes)


def free_memory(device: str) -> int | None:
    """Free memory on the device, or None when it cannot be told. On the host: the smaller of
    MemAvailable and the room under this process's cgroup limit (lazyspec.memory)."""
    if device.startswith("cuda"):
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    return available_memory()


def _peak_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


def _gib(n: float) -> str:
    return f"{n / 2**30:,.2f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"


def materialize(built: Built, given: Sequence[InputShape]) -> nn.Module:
    """The compiled module after one pass of data: every size fixed, ties applied."""
    _forward(built, given)
    return built.module


def _forward(built: Built, given: Sequence[InputShape],
             ) -> tuple[list[BoundInput], list[ShapeTree], Tracer]:
    """One traced pass, then the ties; raise DryRunError at the first failing node."""
    bound = bind_inputs(built, given)
    device = torch.device(built.options.device)
    tensors = make_inputs(bound, device)
    model = built.module
    cost = CostMode()
    tracer = Tracer(cost)
    spec_modules = [m for m in model.modules() if isinstance(m, SpecModule)]
    was_training = model.training
    try:
        for m in spec_modules:
            m.tracer = tracer
        model.eval()  # a dry run is inference: dropout off, batch norm on running stats
        with torch.no_grad(), cost:
            start = time.perf_counter()
            out = model(*tensors)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            tracer.seconds = time.perf_counter() - start
    except NodeFailure as failure:
        if _out_of_memory(failure.cause):  # the machine's limit, not the spec's fault: exit 2
            raise UsageError([Diagnostic(
                "LS306", f"node '{failure.step.info.path}' ran out of memory on "
                f"{built.options.device}: {str(failure.cause).splitlines()[0][:160]}",
                failure.step.info.loc, hint="use --device meta (the default) or a smaller input")
            ]) from None
        raise DryRunError(_failure_diagnostic(failure, built), tracer.ran) from None
    except OutputIndexError as e:  # the model's own `outputs:` picked a missing output
        raise DryRunError(Diagnostic("LS132", f"`outputs:` reads an output that does not exist: "
                                     f"{e}", e.where), tracer.ran) from None
    finally:
        for m in spec_modules:
            m.tracer = None
        model.train(was_training)
    problems = apply_ties(model, built.ties)
    if problems:
        raise SpecError(problems)
    outputs = out if isinstance(out, tuple) else (out,)
    return bound, [shape_tree(o) for o in outputs], tracer


def _out_of_memory(e: BaseException) -> bool:
    oom = getattr(torch, "OutOfMemoryError", MemoryError)
    return isinstance(e, (MemoryError, oom)) or (
        isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


def _failure_diagnostic(f: NodeFailure, built: Built) -> Diagnostic:
    info: NodeInfo = f.step.info
    if isinstance(f.cause, OutputIndexError):
        return Diagnostic("LS132", f"node '{info.path}' ({info.op}) reads an output that does not "
                          f"exist: {f.cause}", f.cause.where or info.loc, trail=info.trail,
                          hint="`name.K` picks output K of a node that returns several tensors "
                          "(Chunk, Split, a block with several outputs)")
    module = f.step.module
    notes: list[str] = []
    if f.inputs is not None:
        listed = ", ".join(f"{_describe(x)}" for x in f.inputs)
        notes.append(f"inputs: {listed}")
    params = _param_shapes(module)
    if params:
        notes.append("parameters: " + ", ".join(params))
    why = explain.explain(module, f.inputs or [])
    if why:
        notes.append(f"expected: {why[0]}")
    cause = f"{type(f.cause).__name__}: {f.cause}".strip()
    notes.append(f"torch: {cause.splitlines()[0] if cause else type(f.cause).__name__}")
    is_shape = why is not None or isinstance(f.cause, (RuntimeError, ValueError, IndexError))
    what = "shape mismatch" if is_shape else "failure"
    if why is None and re.search(r"dtype|scalar type|must have the same type", str(f.cause)):
        what = "dtype mismatch"
    return Diagnostic("LS201", f"{what} in node '{info.path}' ({info.op})", info.loc,
                      trail=info.trail, notes=notes, hint=why[1] if why else None)


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"{list(x.shape)} {str(x.dtype).removeprefix('torch.')}"
    return type(x).__name__


def _param_shapes(module: nn.Module | None) -> list[str]:
    if module is None or isinstance(module, SpecModule):
        return []
    out = []
    for name, p in module.named_parameters():
        shape = "[?]" if isinstance(p, nn.parameter.UninitializedParameter) else str(list(p.shape))
        out.append(f"{name} {shape}")
    return out


def _result(built: Built, bound: Sequence[BoundInput], outputs: list[ShapeTree],
            tracer: Tracer) -> InferResult:
    model = built.module
    shared_by: dict[str, list[str]] = {}
    for n in built.nodes:
        if n.shared_from:
            shared_by.setdefault(n.shared_from, []).append(n.path)
    first_name: dict[int, str] = {}
    tied: dict[str, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first_name:
            tied[first_name[id(p)]] = name
        else:
            first_name[id(p)] = name
    params: list[ParamRecord] = []
    for name, p in model.named_parameters():
        owner_path = name.rpartition(".")[0]
        node = built.owner_of(owner_path)
        module = model.get_submodule(owner_path) if owner_path else model
        count = p.numel()
        marks = []
        sharers = [s for prefix in _prefixes(owner_path) for s in shared_by.get(prefix, [])]
        if sharers:
            marks.append("shared by " + ", ".join(sharers))
        if name in tied:
            marks.append(f"tied to {tied[name]}")
        params.append(ParamRecord(
            path=name, op=node.op if node else type(module).__name__,
            module_type=type(module).__name__, shape=tuple(p.shape), count=count,
            dtype=str(p.dtype).removeprefix("torch."), bytes=int(count * p.element_size()),
            trainable=p.requires_grad, location=node.loc if node else None,
            shared="; ".join(marks) or None))
    counts: dict[str, int] = {}
    for rec in params:
        parts = rec.path.split(".")
        for i in range(1, len(parts)):
            counts[".".join(parts[:i])] = counts.get(".".join(parts[:i]), 0) + rec.count
    nodes = []
    for n in sorted(built.nodes, key=lambda n: n.order):
        trace = tracer.nodes.get(n.order)
        nodes.append(NodeRecord(
            path=n.path, op=n.op, depth=n.depth, location=n.loc,
            output=trace.output if trace else None, skipped=n.skipped,
            shared_from=n.shared_from, params=0 if n.shared_from else counts.get(n.path, 0),
            flops=trace.flops if trace else 0, unknown_ops=trace.unknown_ops if trace else [],
            activation_bytes=trace.activation_bytes if trace else 0))
    buffers = list(model.buffers())
    param_bytes = sum(r.bytes for r in params)
    trainable_bytes = sum(r.bytes for r in params if r.trainable)
    buffer_bytes = sum(b.numel() * b.element_size() for b in buffers)
    activations = sum(t.activation_bytes for t in tracer.nodes.values() if t.leaf)
    totals = Totals(
        params=sum(r.count for r in params),
        trainable=sum(r.count for r in params if r.trainable),
        bytes=param_bytes, buffers=sum(b.numel() for b in buffers), buffer_bytes=buffer_bytes,
        flops=tracer.cost.total.flops, unknown_ops=sorted(tracer.cost.total.unknown),
        activation_bytes=activations,
        # Adam keeps two moments per trainable parameter, gradients one more copy.
        training_bytes=param_bytes + 3 * trainable_bytes + buffer_bytes + activations)
    return InferResult(
        spec=built.spec.path, name=built.spec.name, device=built.options.device,
        dtype=built.options.dtype, inputs=[InputRecord(b.name, b.shape, b.dtype) for b in bound],
        outputs=outputs, params=params, nodes=nodes, totals=totals, notes=list(tracer.notes))


def _prefixes(path: str) -> list[str]:
    """`a.b.c` -> [a.b.c, a.b, a]: a parameter belongs to every module above it."""
    parts = path.split(".") if path else []
    return [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
