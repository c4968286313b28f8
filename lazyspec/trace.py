"""The tracer of a dry run: runs each step, records its output shape, FLOPs and bytes, pins a
failure to the innermost node, and runs an op without a `meta` kernel on the CPU for that node
only. `tracing()` installs a tracer on a compiled model and removes it in `finally`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lazyspec import checks, memory
from lazyspec.compile import SpecModule, Step, StepTracer
from lazyspec.cost import CostMode
from lazyspec.errors import Diagnostic, UsageError
from lazyspec.result import ShapeTree


def shape_tree(value: Any) -> ShapeTree:
    """The shapes of a node's output: a tuple per tensor, a list for several."""
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
    input: ShapeTree = None  # what reached it: one shape, or a list for several inputs


class Tracer:
    """Runs each step, records its output shape and cost, and pins a failure to the innermost
    node."""

    def __init__(self, cost: CostMode) -> None:
        self.cost = cost
        self.nodes: dict[int, NodeTrace] = {}  # NodeInfo.order -> what it did
        self.ran: list[str] = []
        self.notes: list[str] = []
        self.seconds = 0.0  # the forward pass, as measured
        # id(tensor) -> the values it is known to hold (declared input ranges, positions): the
        # tensors live in the pass's slots until it ends, so their ids stay theirs
        self.ranges: dict[int, checks.Range] = {}

    def run(self, owner: SpecModule, step: Step, values: list[Any]) -> Any:
        xs: list[Any] | None = None
        frame = self.cost.open_frame()
        try:
            xs = owner.gather(values, step)
            checks.check_dtypes(step.module, xs)
            checks.check_index_range(step.module, xs, self.ranges)
            try:
                out = owner.run_step(step, xs)
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
        self.track_range(step, xs, out)
        leaf = step.module is not None and not isinstance(step.module, SpecModule)
        self.nodes[step.info.order] = NodeTrace(
            shape_tree(out), None if frame.unknown else frame.flops, sorted(frame.unknown),
            tensor_bytes(out), leaf, shape_tree(xs[0] if len(xs) == 1 else xs))
        self.ran.append(step.info.path)
        return out


    def track_range(self, step: Step, xs: list[Any], out: Any) -> None:
        """Values known to lie in a range: what an op says of its output (`Positions`), and
        what a pass-through node hands on."""
        value_range = getattr(step.module, "value_range", None)
        if callable(value_range) and isinstance(out, torch.Tensor):
            known = value_range(*xs)
            if known is not None:
                self.ranges[id(out)] = known
        elif step.module is None and xs and id(xs[0]) in self.ranges:
            self.ranges[id(out)] = self.ranges[id(xs[0])]

    def run_on_cpu(self, owner: SpecModule, step: Step, xs: list[Any], why: Exception) -> Any:
        """Run one node whose op has no `meta` kernel on the CPU, then carry on in `meta`.

        The node is rebuilt on the CPU from its spec, run on stand-in data, and its
        materialised module moved back to `meta` in place of the lazy one.
        """
        assert step.factory is not None and step.module is not None
        from torch.utils._pytree import tree_leaves, tree_map

        # The stand-ins are real tensors: a meta run must not allocate what the machine lacks.
        needed = sum(tensor_bytes(x) for x in tree_leaves(xs) if isinstance(x, torch.Tensor)) * 3
        available = memory.free_memory("cpu")
        if available is not None and needed > available:
            raise UsageError([Diagnostic(
                "LS306", f"node '{step.info.path}' ({step.info.op}) has no meta kernel and would "
                f"run on the CPU, which needs about {memory.gib(needed)} but "
                f"{memory.gib(available)} is free", step.info.loc, hint="give a smaller input")])
        cpu_module = step.factory(torch.device("cpu"))
        cpu_module.eval()
        cpu_out = cpu_module(*tree_map(_on_cpu, xs))
        meta_module = cpu_module.to("meta")  # no lazy parameters are left: moving is safe
        for name, child in list(owner.named_children()):
            if child is step.module:
                owner.add_module(name, meta_module)  # replaces the lazy module under its name
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


def tensor_bytes(value: Any) -> int:
    """Bytes of the tensors in a value (tuples and lists walked)."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(tensor_bytes(v) for v in value)
    return 0


@contextlib.contextmanager
def tracing(model: nn.Module, tracer: StepTracer) -> Iterator[None]:
    """Install `tracer` on every SpecModule of the model; removed again whatever happens."""
    spec_modules = [m for m in model.modules() if isinstance(m, SpecModule)]
    try:
        for m in spec_modules:
            m.tracer = tracer
        yield
    finally:
        for m in spec_modules:
            m.tracer = None
