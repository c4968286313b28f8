"""The model before any data (`lazyspec show`): each parameter with the dimensions it already
knows and `?` for those that wait for the input, as MXNet's `collect_params()` shows `-1`.

Nothing is guessed per layer type: a copy of each lazy module is initialised twice, from probe
inputs of two different sizes, and a dimension that changes between the two depends on the input.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin

from lazyspec.compile import Built, Factory, SpecModule
from lazyspec.errors import Location

# Two probe sizes with many divisors, so that grouped convolutions accept both.
PROBES = (60, 120)
RANKS = (2, 4, 3, 5, 1)  # the usual ranks first: (N, C), (N, C, H, W), ...

Dim = int | None  # None: unknown until data flows


@dataclass
class PreviewParam:
    path: str
    op: str
    shape: tuple[Dim, ...]
    location: Location | None
    tied: str | None = None  # `tie:` makes it this parameter after the first pass

    @property
    def count(self) -> int | None:
        if any(d is None for d in self.shape):
            return None
        n = 1
        for d in self.shape:
            n *= d or 0
        return n


@dataclass
class Preview:
    spec: str
    name: str | None
    params: list[PreviewParam] = field(default_factory=list)
    lazy_modules: int = 0

    @property
    def known_params(self) -> int:
        """Parameters whose shape is known now (tied ones are counted with their source)."""
        return sum(p.count or 0 for p in self.params if p.tied is None)

    @property
    def unknown(self) -> list[str]:
        return [p.path for p in self.params if p.count is None]


def preview(built: Built) -> Preview:
    """Parameters of a compiled (not yet run) model, unknown dimensions as None."""
    model = built.module
    result = Preview(built.spec.path, built.spec.name)
    factories = {id(step.module): step.factory for m in model.modules()
                 if isinstance(m, SpecModule) for step in m.steps if step.factory is not None}
    probed: dict[int, dict[str, tuple[Dim, ...]]] = {}
    for module in model.modules():
        if isinstance(module, LazyModuleMixin) and module.has_uninitialized_params():
            probed[id(module)] = _probe(module, factories.get(id(module)))
            result.lazy_modules += 1
    declared = {(id(m), step.tensor.name): step.tensor.shape for m in model.modules()
                if isinstance(m, SpecModule) for step in m.steps if step.tensor is not None}
    tied = {t.target: t.source for t in built.ties}
    seen: set[int] = set()
    for path, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue  # shared or tied: listed once, under its first name
            seen.add(id(p))
            full = f"{path}.{name}" if path else name
            if (id(module), name) in declared:  # a Parameter(...) node: None waits for data
                shape = declared[id(module), name]
            elif isinstance(p, nn.parameter.UninitializedParameter):
                shape = probed.get(id(module), {}).get(name, (None,))
            else:
                shape = tuple(int(d) for d in p.shape)
            node = built.owner_of(full)
            result.params.append(PreviewParam(full, node.op if node else type(module).__name__,
                                              shape, node.loc if node else None,
                                              tied.get(full)))
    return result


def _probe(module: nn.Module, factory: Factory | None) -> dict[str, tuple[Dim, ...]]:
    """Initialise two copies from probe inputs of two sizes; dims that differ are unknown.

    Copies are rebuilt from the spec where lazyspec built the module (lazy buffers cannot be
    deep-copied), else deep-copied.
    """
    for rank in RANKS:
        shapes = []
        for size in PROBES:
            try:
                trial = factory(torch.device("meta")) if factory else copy.deepcopy(module)
                probe = torch.empty((size,) * rank, device="meta")
                trial.initialize_parameters(probe)  # type: ignore[operator]
            except Exception:  # this rank does not suit the module: try the next one
                break
            shapes.append({n: tuple(int(d) for d in p.shape)
                           for n, p in trial.named_parameters(recurse=False)})
        if len(shapes) == 2:
            first, second = shapes
            return {n: tuple(a if a == b else None
                             for a, b in zip(first[n], second[n], strict=True))
                    for n in first if n in second and len(first[n]) == len(second[n])}
    return {}
