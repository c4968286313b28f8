"""The result of a dry run as plain data: what every report format reads. Torch-free."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from lazyspec.errors import Diagnostic, Location
from lazyspec.shapes import ShapeTree, as_lists

# A shape is a tuple of ints; a node returning several tensors has a list of them; a value that
# is not a tensor is shown by its type name (lazyspec.shapes writes them as text).
Shape = tuple[int, ...]

__all__ = ["ShapeTree", "as_lists"]  # the shape helpers, for those who read results


@dataclass
class InputRecord:
    name: str
    shape: Shape
    dtype: str


@dataclass
class ParamRecord:
    path: str  # as in state_dict: layer1.0.conv1.weight
    op: str  # the op that owns it, as the spec names it
    module_type: str  # the class it materialised as (LazyLinear becomes Linear)
    shape: Shape
    count: int
    dtype: str
    bytes: int
    trainable: bool
    location: Location | None
    shared: str | None = None  # "shared by enc_b" / "tied to wte.weight": counted once


@dataclass
class NodeRecord:
    path: str
    op: str
    depth: int
    location: Location | None
    output: ShapeTree = None
    skipped: str | None = None
    shared_from: str | None = None
    params: int = 0  # parameters owned by this node (and its children), counted once
    flops: int | None = 0  # None: an op ran that the counter cannot count (see unknown_ops)
    unknown_ops: list[str] = field(default_factory=list)
    activation_bytes: int = 0  # bytes of the tensors it returned
    symbolic: str | None = None  # its output shape in the input's named dims, e.g. [B, 64, H]
    input: ShapeTree = None  # the shape(s) that reached it


@dataclass
class Totals:
    params: int
    trainable: int
    bytes: int
    buffers: int
    buffer_bytes: int
    flops: int = 0  # counted FLOPs (2 per multiply-accumulate)
    unknown_ops: list[str] = field(default_factory=list)  # ops not counted: flops is a floor
    activation_bytes: int = 0  # outputs of every leaf node, as a training step keeps them
    training_bytes: int = 0  # params + grads + Adam's two moments + buffers + activations

    @property
    def macs(self) -> int:
        return self.flops // 2

    @property
    def non_trainable(self) -> int:
        """Frozen parameters (`trainable: false`): counted, never updated."""
        return self.params - self.trainable


@dataclass
class MoreRun:
    """A later input set run through the parameters the first one fixed."""

    inputs: list[InputRecord]
    outputs: list[ShapeTree]


@dataclass
class RunStats:
    """What a real forward pass cost, next to what the meta pass estimated."""

    estimate_bytes: int  # parameters + buffers + inputs + activations, from the meta pass
    available_bytes: int | None  # free memory on the device before the run
    peak_bytes: int | None  # CUDA: peak allocated; CPU: the process's peak RSS
    forward_seconds: float


@dataclass
class InferResult:
    spec: str
    name: str | None
    device: str
    dtype: str
    inputs: list[InputRecord]
    outputs: list[ShapeTree]
    params: list[ParamRecord]
    nodes: list[NodeRecord]
    totals: Totals
    notes: list[str] = field(default_factory=list)
    run: RunStats | None = None  # measured on a real device (cpu, cuda); None on meta
    more_runs: list[MoreRun] = field(default_factory=list)  # later input sets, same parameters
    symbols: dict[str, int] = field(default_factory=dict)  # named dims -> size in the concrete pass
    symbolic_outputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class InferOutcome:
    """What `infer` reports: the result when the dry run got through, and every problem found
    (spec errors, the failing node, failed assertions)."""

    spec: str
    result: InferResult | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    ran: list[str] | None = None  # nodes that ran before a failing one

    @property
    def exit_code(self) -> int:
        return max((d.exit_code for d in self.diagnostics), default=0)
