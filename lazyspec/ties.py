"""`tie:`: two parameter paths made one Parameter after materialisation, shapes checked."""

from __future__ import annotations

from torch import nn

from lazyspec.errors import Diagnostic, did_you_mean
from lazyspec.spec.model import Tie


def check_ties(built_module: nn.Module, ties: list[Tie]) -> list[Diagnostic]:
    """Both sides of every tie must name a parameter of the built model."""
    problems = []
    for tie in ties:
        for path, loc in ((tie.target, tie.loc), (tie.source, tie.source_loc or tie.loc)):
            if _find_param(built_module, path) is None:
                names = [n for n, _ in built_module.named_parameters(remove_duplicate=False)]
                problems.append(Diagnostic("LS203", f"tie: '{path}' is not a parameter of the "
                                           "model", loc, hint=did_you_mean(path, names)))
    return problems


def _find_param(module: nn.Module, path: str) -> nn.Parameter | None:
    owner, _, attr = path.rpartition(".")
    try:
        sub = module.get_submodule(owner) if owner else module
    except AttributeError:
        return None
    p = sub._parameters.get(attr)
    return p


def apply_ties(module: nn.Module, ties: list[Tie]) -> list[Diagnostic]:
    """Make each tie's target the same Parameter as its source (after materialisation)."""
    problems = []
    for tie in ties:
        a, b = _find_param(module, tie.target), _find_param(module, tie.source)
        if a is None or b is None:
            continue  # reported by check_ties
        if tuple(a.shape) != tuple(b.shape):
            problems.append(Diagnostic("LS203", f"tie: '{tie.target}' {list(a.shape)} and "
                                       f"'{tie.source}' {list(b.shape)} have different shapes",
                                       tie.loc, hint="tied parameters must have the same shape"))
            continue
        owner, _, attr = tie.target.rpartition(".")
        sub = module.get_submodule(owner) if owner else module
        setattr(sub, attr, b)
    return problems
