"""The initialisation schemes of `export --to state-dict --init`: their names, what each does,
and the flag's parser. Torch-free, so a bad --init fails before any work."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lazyspec.errors import did_you_mean


@dataclass(frozen=True)
class InitScheme:
    name: str
    value: float | None = None  # normal: std; uniform: the bound a of U(-a, a)


# name -> (what it does, its default value or None when it takes none)
INIT_SCHEMES: dict[str, tuple[str, float | None]] = {
    "default": ("each layer's own reset_parameters(), as PyTorch builds it", None),
    "xavier_uniform": ("Glorot uniform", None),
    "xavier_normal": ("Glorot normal", None),
    "kaiming_uniform": ("He uniform (fan_in, ReLU gain)", None),
    "kaiming_normal": ("He normal (fan_in, ReLU gain)", None),
    "normal": ("normal with mean 0 and std STD", 0.01),
    "uniform": ("uniform on [-A, A]", 0.05),
    "zeros": ("all zeros", None),
    "ones": ("all ones", None),
}


def init_choices() -> str:
    return ", ".join(f"{n}[:{'STD' if n == 'normal' else 'A'}] (default {d})" if d is not None
                     else n for n, (_, d) in INIT_SCHEMES.items())


def parse_init(text: str) -> InitScheme:
    """`xavier_uniform`, `normal:0.02`, ...; a ValueError lists the choices."""
    name, sep, raw = text.strip().partition(":")
    if name not in INIT_SCHEMES:
        hint = did_you_mean(name, INIT_SCHEMES)
        raise ValueError(f"unknown init '{text}'{f' ({hint})' if hint else ''}; choose one of: "
                         f"{init_choices()}")
    default = INIT_SCHEMES[name][1]
    if not sep:
        return InitScheme(name, default)
    if default is None:
        raise ValueError(f"init '{name}' takes no value (got '{text}'); only normal:STD and "
                         "uniform:A do")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"init '{text}': the value after ':' must be a number >= 0, "
                         f"for example {name}:{default}")
    return InitScheme(name, value)
