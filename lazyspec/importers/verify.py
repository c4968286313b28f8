"""The importer's last step: the written spec must rebuild the module, or nothing is written.

1. The spec text runs through the engine (`engine.run(Request(path, text=...))`) at the given
   input on `meta`: lazyspec reads back what it wrote.
2. Its state-dict names and shapes must equal the module's, key for key.
3. Where the module holds real tensors on the CPU, the spec is built on the CPU too (the
   engine's memory check first), the module's `state_dict()` loaded into it strictly, and both
   run on the same seeded input in eval mode: the outputs must agree (within float rounding: a
   spec writes `x / c` as `Scale(1 / c)`). Float inputs are random normal; integer inputs are
   random below the smallest `nn.Embedding` table of the module (zeros without one).

Any difference is LS161 with the names or the output that differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lazyspec import engine
from lazyspec.errors import UsageError
from lazyspec.importers import cannot
from lazyspec.inputs import InputShape
from lazyspec.options import BuildOptions

RTOL, ATOL = 1e-4, 1e-5


@dataclass
class Checked:
    params: int
    summary: str  # what was compared, for the message and the spec's header


def verify(module: nn.Module, text: str, path: str, inputs: Sequence[InputShape], dtype: str,
           names: list[str], shapes: list[tuple[int, ...]],
           dtypes: list[torch.dtype]) -> Checked:
    outcome = _run(text, path, inputs, dtype, "meta")
    assert outcome.built is not None and outcome.result is not None
    mine, theirs = _state(outcome.built.module), _state(module)
    if mine != theirs:
        raise cannot("LS161", "the written spec's state dict differs from the module's: "
                     + _difference(mine, theirs),
                     "this is a gap in lazyspec's importer: please report it with the module")
    summary = f"the same state-dict names and shapes ({len(theirs):,} tensors)"
    reason = _why_not_on_cpu(module)
    if reason is None:
        try:
            cpu = _run(text, path, inputs, dtype, "cpu")
        except UsageError as e:  # the machine's memory, not the spec: say so and carry on
            reason = e.diagnostics[0].message
        else:
            assert cpu.built is not None
            _compare_outputs(module, cpu.built.module, shapes, dtypes)
            summary += " and the same outputs on cpu"
    if reason is not None:
        summary += f"; outputs not compared: {reason}"
    return Checked(outcome.result.totals.params, summary)


def _run(text: str, path: str, inputs: Sequence[InputShape], dtype: str,
         device: str) -> engine.Outcome:
    outcome = engine.run(engine.Request(path, text=text, inputs=tuple(inputs),
                                        options=BuildOptions(device=device, dtype=dtype)))
    if outcome.error is not None:
        first, *rest = outcome.error.diagnostics
        if first.code == "LS126":  # the model is larger than a spec may be, not a wrong spec
            raise cannot("LS160", f"the module is larger than a spec may be: {first.message}",
                         first.hint)
        raise cannot("LS161", f"the written spec fails lazyspec's own dry run: {first.code} "
                     f"{first.message}" + (f" ({first.location})" if first.location else ""),
                     "this is a gap in lazyspec's importer: please report it with the module",
                     notes=[*first.notes, *(f"{d.code} {d.message}" for d in rest[:4])])
    return outcome


def _state(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _difference(mine: dict[str, tuple[int, ...]], theirs: dict[str, tuple[int, ...]]) -> str:
    missing = [k for k in theirs if k not in mine]
    extra = [k for k in mine if k not in theirs]
    shapes = [f"{k} {list(mine[k])} (module: {list(theirs[k])})" for k in theirs
              if k in mine and mine[k] != theirs[k]]
    parts = []
    for what, items in (("missing", missing), ("extra", extra), ("other shapes", shapes)):
        if items:
            parts.append(f"{what}: {', '.join(items[:5])}" + (" ..." if len(items) > 5 else ""))
    return "; ".join(parts)


def _why_not_on_cpu(module: nn.Module) -> str | None:
    devices = {t.device.type for t in [*module.parameters(), *module.buffers()]}
    if devices - {"cpu"}:
        return f"the module is on {', '.join(sorted(devices - {'cpu'}))}, not the CPU"
    return None


def _compare_outputs(module: nn.Module, spec_module: nn.Module,
                     shapes: list[tuple[int, ...]], dtypes: list[torch.dtype]) -> None:
    try:
        spec_module.load_state_dict(module.state_dict(), strict=True)
    except RuntimeError as e:
        raise cannot("LS161", f"the module's state dict does not load into the spec's: "
                     f"{str(e).splitlines()[0]}") from None
    xs = _inputs(module, shapes, dtypes)
    theirs, mine = _forward(module, xs), _forward(spec_module, xs)
    a, b = _tensors(theirs), _tensors(mine)
    if len(a) != len(b):
        raise cannot("LS161", f"the spec returns {len(b)} tensor(s), the module {len(a)}")
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x.shape != y.shape:
            raise cannot("LS161", f"output {i} is {list(y.shape)} from the spec but "
                         f"{list(x.shape)} from the module")
        if not torch.allclose(x.float(), y.float(), rtol=RTOL, atol=ATOL, equal_nan=True):
            worst = float((x.float() - y.float()).abs().nan_to_num(float("inf")).max())
            raise cannot("LS161", f"output {i} differs between the spec and the module (largest "
                         f"difference {worst:.3g}) after load_state_dict, on the same input",
                         "this is a gap in lazyspec's importer: please report it with the "
                         "module")


def _inputs(module: nn.Module, shapes: list[tuple[int, ...]],
            dtypes: list[torch.dtype]) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    tables = [m.num_embeddings for m in module.modules() if isinstance(m, nn.Embedding)]
    high = min(tables, default=1)
    out = []
    for shape, dtype in zip(shapes, dtypes, strict=True):
        if dtype.is_floating_point:
            out.append(torch.randn(shape, generator=generator).to(dtype))
        elif dtype == torch.bool:
            out.append(torch.zeros(shape, dtype=dtype))
        else:
            out.append(torch.randint(0, high, shape, generator=generator).to(dtype))
    return out


def _forward(module: nn.Module, xs: list[torch.Tensor]) -> Any:
    """One eval-mode pass; every submodule's training flag restored afterwards."""
    modes = {m: m.training for m in module.modules()}
    try:
        module.eval()
        with torch.no_grad():
            return module(*xs)
    finally:
        for m, training in modes.items():
            m.training = training


def _tensors(value: Any) -> list[torch.Tensor]:
    return [v for v in torch.utils._pytree.tree_leaves(value) if isinstance(v, torch.Tensor)]
