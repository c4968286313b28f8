"""`lazyspec.summary`: the dry run of any nn.Module a user already has (torchinfo's core use),
as the same InferResult a spec's dry run gives: a record per submodule call with its output
shape, parameters and FLOPs, parameters counted once (ties too), the totals, the budgets, and a
failure reported at the module path and its class.

The user's module is never modified:

- `device="meta"` (the default) runs a *meta twin*: a deep copy whose parameters, buffers and
  tensor attributes were replaced beforehand by meta tensors of the same shapes, dtypes and
  `requires_grad` (a tied parameter stays one tensor). Nothing the size of the weights is
  allocated, so a model built on the CPU costs no second copy of its weights; lazy layers
  materialise on the twin only. A module already on `meta` runs as it is.
- `device="cpu"` or `"cuda[:N]"` runs the module itself where it is: it must already be there
  (lazyspec never moves it), a meta pass first estimates what the run needs (LS306 past the
  device's free memory), and a module with lazy parameters is refused (the run would
  materialise them).

Either way the run is in eval mode under `torch.no_grad()`, each submodule's own training flag is
restored afterwards, and every hook lazyspec registered is removed in `finally`.
"""

from __future__ import annotations

import copy
import functools
import inspect
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from lazyspec import memory
from lazyspec.budgets import check_budgets
from lazyspec.config import Budgets
from lazyspec.cost import CostMode, Frame
from lazyspec.dryrun import describe_failure, out_of_memory
from lazyspec.errors import BudgetError, Diagnostic, DryRunError, UsageError, usage_error
from lazyspec.inputs import DTYPES, InputShape, canonical_dtype, to_input
from lazyspec.options import check_device
from lazyspec.result import InferResult, InputRecord, NodeRecord, ParamRecord, RunStats
from lazyspec.summarize import totals
from lazyspec.trace import shape_tree, tensor_bytes


@dataclass
class Summary(InferResult):
    """The InferResult of `lazyspec.summary`: the same plain data the reports read, whose text
    (`str(result)`, what printing it shows) is lazyspec's table."""

    def report(self, format: str = "table", depth: int | None = None,
               width: int | None = None) -> str:
        """The report `lazyspec infer --format FORMAT` would print: table, json, markdown or
        github; `depth` keeps the nodes nested at most that deep."""
        from lazyspec.report import FORMATS, reporter
        from lazyspec.result import InferOutcome

        if format not in FORMATS:
            raise usage_error(f"unknown format '{format}'", "use " + ", ".join(FORMATS))
        return reporter(format, width=width, depth=depth).infer(InferOutcome(self.spec, self))

    def __str__(self) -> str:
        return self.report()


@dataclass
class _Call:
    """One call of one submodule, in call order (parents before their children)."""

    path: str
    module: nn.Module
    again: bool  # a later call of a module that already ran (a shared module)
    frame: Frame
    inputs: tuple[Any, ...]
    output: Any = None  # its output's shapes, once it returned
    activation_bytes: int = 0
    done: bool = False


@dataclass
class _Recorder:
    """The forward hooks' state: the calls so far and the ones still running."""

    cost: CostMode
    calls: list[_Call] = field(default_factory=list)
    running: list[_Call] = field(default_factory=list)
    called: set[int] = field(default_factory=set)
    ran: list[str] = field(default_factory=list)

    def pre(self, path: str, module: nn.Module, args: tuple[Any, ...]) -> None:
        call = _Call(path, module, id(module) in self.called, self.cost.open_frame(), args)
        self.called.add(id(module))
        self.calls.append(call)
        self.running.append(call)

    def post(self, path: str, module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        # A module that caught an exception of one of its children left that child running.
        while self.running and self.running[-1].module is not module:
            self.running.pop()
        if not self.running:
            return
        call = self.running.pop()
        while self.cost.frames[-1] is not call.frame and len(self.cost.frames) > 1:
            self.cost.frames.pop()
        self.cost.close_frame(call.frame)
        call.output, call.activation_bytes, call.done = shape_tree(out), tensor_bytes(out), True
        self.ran.append(path or type(module).__name__)


def summarize_module(module: nn.Module, inputs: Sequence[Any], device: str = "meta",
                     dtype: str | None = None, budgets: Budgets | None = None) -> Summary:
    """The dry run of `module` with these inputs (shapes, `"2,64:int64"` strings or tensors);
    raises DryRunError at the failing submodule, UsageError for what cannot run, BudgetError
    (holding the result) for failed assertions."""
    if not isinstance(module, nn.Module):
        raise usage_error(f"lazyspec.summary takes an nn.Module, not {type(module).__name__}")
    device = check_device(device)
    if device == "meta":
        result = _run(on_meta(module), inputs, "meta", dtype)
    else:
        result = _run_on_device(module, inputs, device, dtype)
    problems = [replace(d, location=None) for d in check_budgets(result, budgets or Budgets())]
    if problems:
        raise BudgetError(problems, result)
    return result


def _run_on_device(module: nn.Module, inputs: Sequence[Any], device: str,
                   dtype: str | None) -> Summary:
    """A real run of the module where it lives, after a meta pass says it fits."""
    where = _devices(module)
    wanted = torch.device(device)
    if any(d.type != wanted.type or (d.index or 0) != (wanted.index or 0) for d in where):
        shown = ", ".join(sorted(str(d) for d in where))
        raise usage_error(f"the module is on {shown}, not {device}: lazyspec.summary runs a "
                          "module where it is and never moves it",
                          f"move it yourself (module.to('{device}')) or use device='meta', "
                          "which runs a meta twin and allocates nothing")
    lazy = [n for n, p in module.named_parameters()
            if isinstance(p, nn.parameter.UninitializedParameter)]
    if lazy:
        raise usage_error(f"the module has lazy parameters ({lazy[0]}, ...) that a run on "
                          f"{device} would materialise, changing your module",
                          "use device='meta' (the default): it runs a copy")
    planned = _run(on_meta(module), inputs, "meta", dtype)
    estimate = memory.forward_bytes(planned)
    available = memory.refuse_if_too_large(estimate, device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(wanted)
    result = _run(module, inputs, device, dtype)
    if result.run is not None:
        result.run.estimate_bytes, result.run.available_bytes = estimate, available
    return result


def _devices(module: nn.Module) -> set[torch.device]:
    return {t.device for t in _tensors(module)}


def _tensors(module: nn.Module) -> Iterator[torch.Tensor]:
    yield from module.parameters()
    yield from module.buffers()


def on_meta(module: nn.Module) -> nn.Module:
    """The module itself when it is all on meta already, else its meta twin."""
    if all(t.device.type == "meta" for t in _tensors(module)):
        return module
    return meta_twin(module)


def meta_twin(module: nn.Module) -> nn.Module:
    """A deep copy with every parameter, buffer and tensor attribute replaced by an empty meta
    tensor of the same shape and dtype, made without copying any tensor's data."""
    memo: dict[int, Any] = {}
    for m in module.modules():
        for p in m._parameters.values():
            if p is not None and id(p) not in memo:
                memo[id(p)] = _meta_parameter(p)
        for b in m._buffers.values():
            if b is not None and id(b) not in memo:
                memo[id(b)] = torch.empty_like(b, device="meta")
        for value in vars(m).values():
            if isinstance(value, torch.Tensor) and id(value) not in memo:
                memo[id(value)] = torch.empty_like(value, device="meta")
    try:
        twin = copy.deepcopy(module, memo)
    except Exception as e:  # an attribute that cannot be copied (a lock, an open file)
        raise usage_error(f"cannot make a meta copy of the module: {type(e).__name__}: {e}",
                          "build it on meta yourself (with torch.device('meta'): model = ...) "
                          "and pass that, or run where it is with device='cpu'") from None
    assert isinstance(twin, nn.Module)
    return twin


def _meta_parameter(p: nn.Parameter) -> torch.Tensor:
    if isinstance(p, nn.parameter.UninitializedParameter):  # a lazy layer's: stays lazy
        return nn.parameter.UninitializedParameter(  # type: ignore[call-arg]
            p.requires_grad, device="meta", dtype=p.dtype)  # type: ignore[arg-type]
    return nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)


def _run(module: nn.Module, inputs: Sequence[Any], device: str, dtype: str | None,
         ) -> Summary:
    """One traced forward pass of the module; the result as plain data."""
    tensors, records = _inputs(module, inputs, torch.device(device), dtype)
    recorder = _Recorder(CostMode())
    modes = {m: m.training for m in module.modules()}
    handles = []
    start = time.perf_counter()
    try:
        for path, m in module.named_modules():
            handles.append(m.register_forward_pre_hook(functools.partial(_pre, recorder, path)))
            handles.append(m.register_forward_hook(functools.partial(_post, recorder, path)))
        module.eval()
        with torch.no_grad(), recorder.cost:
            start = time.perf_counter()
            out = module(*tensors)
            if device.startswith("cuda"):
                torch.cuda.synchronize(torch.device(device))
    except Exception as e:
        raise _failure(recorder, module, device, e) from None
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    seconds = time.perf_counter() - start
    result = _result(module, recorder, records, out, device)
    if device != "meta":
        result.run = RunStats(0, None, memory.peak_bytes(device), seconds)
    return result


def _pre(recorder: _Recorder, path: str, module: nn.Module, args: tuple[Any, ...]) -> None:
    recorder.pre(path, module, args)


def _post(recorder: _Recorder, path: str, module: nn.Module, args: tuple[Any, ...],
          out: Any) -> None:
    recorder.post(path, module, args, out)


def _inputs(module: nn.Module, inputs: Sequence[Any], device: torch.device,
            dtype: str | None) -> tuple[list[torch.Tensor], list[InputRecord]]:
    """Input tensors on the run's device (random floats, zero integers, or the caller's own
    tensors on a real device) and their records, named after `forward`'s arguments."""
    if not inputs:
        raise usage_error("lazyspec.summary needs the model's inputs",
                          "for example lazyspec.summary(model, (2, 3, 224, 224)) or "
                          "lazyspec.summary(model, '2,64:int64')")
    names = _input_names(module, len(inputs))
    float_dtype = canonical_dtype(dtype) if dtype else _param_dtype(module)
    tensors, records = [], []
    for name, value in zip(names, inputs, strict=True):
        tensor = _input_tensor(value, device, float_dtype)
        tensors.append(tensor)
        records.append(InputRecord(name, tuple(tensor.shape),
                                   str(tensor.dtype).removeprefix("torch.")))
    return tensors, records


def _input_tensor(value: Any, device: torch.device, float_dtype: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        if device.type == "meta":
            return torch.empty(value.shape, dtype=value.dtype, device=device)
        if value.device != device:
            raise usage_error(f"an input tensor is on {value.device}, not {device}: "
                              "lazyspec.summary does not move tensors")
        return value
    shape = to_input(value) if isinstance(value, (str, InputShape)) else _shape(value)
    if not all(isinstance(d, int) for d in shape.shape):
        raise usage_error(f"input '{shape}': lazyspec.summary takes sizes, not names",
                          "named (symbolic) dimensions are for specs")
    dims = tuple(int(d) for d in shape.shape)
    torch_dtype = getattr(torch, DTYPES[shape.dtype or float_dtype][0])
    if device.type == "meta":
        return torch.empty(dims, dtype=torch_dtype, device=device)
    if torch_dtype.is_floating_point or torch_dtype.is_complex:
        return torch.randn(dims, dtype=torch_dtype, device=device)
    return torch.zeros(dims, dtype=torch_dtype, device=device)  # valid indices for Embedding


def _shape(value: Any) -> InputShape:
    try:
        return to_input(value)
    except (TypeError, ValueError):
        raise usage_error(f"cannot read the input {value!r}",
                          "give a shape (2, 20), a string '2,64:int64' or a tensor") from None


def _input_names(module: nn.Module, count: int) -> list[str]:
    """`forward`'s argument names where it has that many, else input0, input1, ..."""
    try:
        params = [p.name for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    if len(params) >= count:
        return params[:count]
    return ["input"] if count == 1 else [f"input{i}" for i in range(count)]


def _param_dtype(module: nn.Module) -> str:
    for p in module.parameters():
        if p.dtype.is_floating_point:
            return str(p.dtype).removeprefix("torch.")
    return "float32"


def _failure(recorder: _Recorder, root: nn.Module, device: str,
             cause: Exception) -> Exception:
    """The failing submodule (the innermost one still running) as a located diagnostic."""
    if isinstance(cause, (UsageError, DryRunError)):
        return cause
    call = recorder.running[-1] if recorder.running else None
    module = call.module if call else root
    path = call.path if call else ""
    where = f"module '{path}' ({type(module).__name__})" if path else \
        f"the model's own forward ({type(module).__name__})"
    if out_of_memory(cause):
        return UsageError([Diagnostic("LS306", f"{where} ran out of memory on {device}: "
                                      f"{str(cause).splitlines()[0][:160]}",
                                      hint="use device='meta' (the default) or a smaller input")])
    what, notes, hint = describe_failure(module, call.inputs if call else None, cause)
    if any(True for _ in module.children()):  # a container's parameters are its children's
        notes = [n for n in notes if not n.startswith("parameters: ")]
    return DryRunError(Diagnostic("LS201", f"{what} in {where}", None, notes=notes, hint=hint),
                       recorder.ran)


def _result(module: nn.Module, recorder: _Recorder, inputs: list[InputRecord], out: Any,
            device: str) -> Summary:
    params = _param_records(module)
    outputs = list(out.values()) if isinstance(out, dict) else \
        list(out) if isinstance(out, tuple) else [out]
    leaves = {id(m) for m in module.modules() if not any(True for _ in m.children())}
    activations = sum(c.activation_bytes for c in recorder.calls
                      if c.done and id(c.module) in leaves)
    cls = type(module)
    return Summary(
        spec=f"{cls.__module__}.{cls.__qualname__}", name=cls.__name__, device=device,
        dtype=_param_dtype(module), inputs=inputs, outputs=[shape_tree(o) for o in outputs],
        params=params, nodes=_node_records(module, recorder, params),
        totals=totals(params, list(module.buffers()), activations, recorder.cost.total.flops,
                      recorder.cost.total.unknown))


def _param_records(module: nn.Module) -> list[ParamRecord]:
    """Every parameter once, under its first name; a tied one marked with its other names."""
    first: dict[int, str] = {}
    tied: dict[str, list[str]] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        if id(p) in first:
            tied.setdefault(first[id(p)], []).append(name)
        else:
            first[id(p)] = name
    records = []
    for name, p in module.named_parameters():
        owner = module.get_submodule(name.rpartition(".")[0])
        op = type(owner).__name__
        records.append(ParamRecord(
            path=name, op=op, module_type=op, shape=tuple(p.shape), count=p.numel(),
            dtype=str(p.dtype).removeprefix("torch."), bytes=p.numel() * p.element_size(),
            trainable=p.requires_grad, location=None,
            shared=f"tied to {', '.join(tied[name])}" if name in tied else None))
    return records


def _node_records(module: nn.Module, recorder: _Recorder,
                  params: list[ParamRecord]) -> list[NodeRecord]:
    """A record per submodule call, in call order; the root only when it has no submodules."""
    counts: dict[str, int] = {}
    for rec in params:
        parts = rec.path.split(".")
        for i in range(1, len(parts)):
            key = ".".join(parts[:i])
            counts[key] = counts.get(key, 0) + rec.count
    has_children = any(True for _ in module.children())
    nodes: list[NodeRecord] = []
    shown: set[str] = set()
    for c in recorder.calls:
        if not c.path and has_children:
            continue
        nodes += _containers(module, c.path, shown, counts)
        shown.add(c.path)
        path = c.path or type(module).__name__
        total = sum(r.count for r in params) if not c.path else counts.get(c.path, 0)
        nodes.append(NodeRecord(
            path=path, op=type(c.module).__name__, depth=path.count("."), location=None,
            output=c.output, shared_from=c.path if c.again else None,
            params=0 if c.again else total,
            flops=None if c.frame.unknown else c.frame.flops,
            unknown_ops=sorted(c.frame.unknown), activation_bytes=c.activation_bytes))
    return nodes


def _containers(module: nn.Module, path: str, shown: set[str],
                counts: dict[str, int]) -> list[NodeRecord]:
    """Rows for the modules above `path` that were never called themselves (a ModuleList whose
    members the parent calls one by one), so the table nests `h.0` under `h`."""
    parts = path.split(".")
    rows = []
    for i in range(1, len(parts)):
        above = ".".join(parts[:i])
        if above not in shown:
            shown.add(above)
            rows.append(NodeRecord(
                path=above, op=type(module.get_submodule(above)).__name__, depth=i - 1,
                location=None, params=counts.get(above, 0)))
    return rows
