"""`lazyspec export --to state-dict`: a materialised model initialised by a named scheme (seeded,
reproducible) and saved atomically with torch.save."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lazyspec.compile import SpecModule
from lazyspec.export.init_schemes import InitScheme, parse_init
from lazyspec.tensors import initialise


def _weight_init(scheme: InitScheme) -> Callable[[torch.Tensor], Any]:
    init = nn.init
    value = scheme.value if scheme.value is not None else 0.0
    table: dict[str, Callable[[torch.Tensor], Any]] = {
        "xavier_uniform": init.xavier_uniform_,
        "xavier_normal": init.xavier_normal_,
        "kaiming_uniform": lambda t: init.kaiming_uniform_(t, nonlinearity="relu"),
        "kaiming_normal": lambda t: init.kaiming_normal_(t, nonlinearity="relu"),
        "normal": lambda t: init.normal_(t, 0.0, value),
        "uniform": lambda t: init.uniform_(t, -value, value),
        "zeros": init.zeros_,
        "ones": init.ones_,
    }
    return table[scheme.name]


def init_state_dict(module: nn.Module, init: str, seed: int | None) -> dict[str, torch.Tensor]:
    """Initialise a materialised model (built and dry-run on a real device) and return its state
    dict: the spec's parameter and buffer names, real values.

    Every layer is first reset as PyTorch builds it (`reset_parameters()`, children before
    parents; batch-norm running statistics too; a parameter of a layer with no reset method is
    set as nn.Linear sets its own). Then, unless `init` is `default`, every weight (a parameter
    with two or more dimensions: linear, convolution, embedding) gets the scheme and every bias
    is zero, as D2L's `apply_init` does; norm layers keep their scale of one. With a seed, the
    values depend only on the seed and the model (the global RNG is left untouched).
    """
    scheme = parse_init(init)
    tensors = [*module.parameters(), *module.buffers()]
    if any(isinstance(t, nn.parameter.UninitializedParameter) or t.device.type == "meta"
           for t in tensors):
        raise ValueError("the model has no real values: build it on cpu (or cuda) and dry-run it "
                         "before initialising")
    cuda = sorted({t.device.index or 0 for t in tensors if t.device.type == "cuda"})
    rng = torch.random.fork_rng(devices=cuda) if seed is not None else contextlib.nullcontext()
    with rng, torch.no_grad():
        if seed is not None:
            torch.manual_seed(seed)
        covered = _reset(module)
        apply = None if scheme.name == "default" else _weight_init(scheme)
        for name, p in module.named_parameters():  # a shared or tied parameter once
            leaf = name.rpartition(".")[2]
            if apply is not None and (leaf == "bias" or leaf.endswith("_bias")):
                p.zero_()
            elif apply is not None and p.dim() >= 2:
                apply(p)
            elif id(p) not in covered:  # no reset method: as nn.Linear would, so a seed fixes it
                _fallback_init(leaf, p)
        _declared_inits(module)
    return dict(module.state_dict())


def _declared_inits(module: nn.Module) -> None:
    """A `Parameter(...)` node's own `init=` wins over every scheme: the spec says it."""
    for m in module.modules():
        if isinstance(m, SpecModule):
            for step in m.steps:
                if step.tensor is not None and step.tensor.kind == "parameter":
                    initialise(getattr(m, step.tensor.name), step.tensor.init)


def _reset(module: nn.Module) -> set[int]:
    """Reset every layer as PyTorch builds it; the ids of the parameters that were reset."""
    covered: set[int] = set()
    for m in _children_first(module):
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()
            covered.update(id(p) for p in m.parameters(recurse=False))
            continue
        reset = getattr(m, "_reset_parameters", None)  # nn.MultiheadAttention, nn.Transformer
        if callable(reset):
            reset()
            covered.update(id(p) for p in m.parameters())
    return covered


def _fallback_init(leaf: str, p: torch.Tensor) -> None:
    if leaf == "bias" or leaf.endswith("_bias"):
        nn.init.zeros_(p)
    elif p.dim() >= 2:
        nn.init.kaiming_uniform_(p, a=math.sqrt(5))
    else:
        nn.init.ones_(p)


def _children_first(module: nn.Module, seen: set[int] | None = None) -> Iterator[nn.Module]:
    """Every module once, children before their parent (the order in which they are built)."""
    seen = set() if seen is None else seen
    if id(module) in seen:
        return
    seen.add(id(module))
    for child in module.children():
        yield from _children_first(child, seen)
    yield module


def write_state_dict(path: str | os.PathLike[str], state: dict[str, torch.Tensor]) -> None:
    """torch.save the state dict atomically: a temporary file in the same folder, then a rename,
    so a failure leaves any old file as it was."""
    from lazyspec.fileio import atomic_write_with

    atomic_write_with(Path(path), "state dict", lambda f: torch.save(state, f))

