"""Input shapes and dtypes: parsing `--input [NAME=]D1,D2,...[:DTYPE]` and binding it to a spec.

Torch-free, so bad flags are caught before torch is imported.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lazyspec.errors import usage_error

# name -> (canonical torch name, bytes per element, floating point)
DTYPES: dict[str, tuple[str, float, bool]] = {
    "float32": ("float32", 4, True), "float": ("float32", 4, True),
    "float64": ("float64", 8, True), "double": ("float64", 8, True),
    "float16": ("float16", 2, True), "half": ("float16", 2, True),
    "bfloat16": ("bfloat16", 2, True),
    "float8_e4m3fn": ("float8_e4m3fn", 1, True), "float8_e5m2": ("float8_e5m2", 1, True),
    "int64": ("int64", 8, False), "long": ("int64", 8, False),
    "int32": ("int32", 4, False), "int": ("int32", 4, False),
    "int16": ("int16", 2, False), "int8": ("int8", 1, False), "uint8": ("uint8", 1, False),
    "bool": ("bool", 1, False),
    "complex64": ("complex64", 8, True), "complex128": ("complex128", 16, True),
}

MAX_DIM = 2**40  # far past any real tensor; keeps arithmetic on sizes honest


def canonical_dtype(name: str, what: str = "dtype") -> str:
    key = name.strip().removeprefix("torch.")
    if key not in DTYPES:
        from lazyspec.errors import did_you_mean

        raise usage_error(f"unknown {what} '{name}'",
                          did_you_mean(key, DTYPES) or "choose one of: " + ", ".join(DTYPES))
    return DTYPES[key][0]


# Parameter dtypes that every module can be built with and every device can run.
PARAM_DTYPES = ("float32", "float64", "float16", "bfloat16")


def param_dtype(name: str) -> str:
    """`--dtype`: a floating dtype that modules are built in (an integer dtype would be ignored
    by the modules and only mislabel the byte counts)."""
    dtype = canonical_dtype(name)
    if dtype not in PARAM_DTYPES:
        raise usage_error(f"--dtype {name}: parameters are built in a floating dtype",
                          "choose one of: " + ", ".join(PARAM_DTYPES))
    return dtype


@dataclass(frozen=True)
class InputShape:
    """One `--input` flag: an optional name, a shape (numbers, or names for symbolic dims) and
    an optional dtype."""

    name: str | None
    shape: tuple[int | str, ...]
    dtype: str | None  # None: the spec's declared dtype, else the parameter dtype

    def __str__(self) -> str:
        dims = ",".join(map(str, self.shape))
        name = f"{self.name}=" if self.name else ""
        return f"{name}{dims}{':' + self.dtype if self.dtype else ''}"


_INPUT_RE = re.compile(r"^\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*=)?\s*(?P<dims>[^:=]*?)\s*"
                       r"(?::\s*(?P<dtype>[A-Za-z0-9_.]+))?\s*$")


def parse_input(text: str) -> InputShape:
    """Parse `2,20`, `idx=2,64:int64` or `[2, 20]`; raises UsageError."""
    m = _INPUT_RE.match(text)
    shown = text if len(text) <= 80 else f"{text[:60]}... ({len(text):,} characters)"
    if not m:
        raise usage_error(f"cannot read --input '{shown}'",
                          "write [NAME=]D1,D2,...[:DTYPE], for example 2,20 or idx=2,64:int64")
    dims_text = m.group("dims").strip().strip("[]()")
    parts = [p.strip() for p in re.split(r"[,\s]+", dims_text) if p.strip()] if dims_text else []
    if not parts:
        raise usage_error(f"--input '{shown}' has no dimensions", "for example --input 2,20")
    shape: list[int | str] = []
    for p in parts:
        if re.fullmatch(r"[A-Za-z_]\w*", p):
            shape.append(p)  # a named, symbolic dimension
            continue
        if not re.fullmatch(r"[0-9]+", p):
            raise usage_error(f"bad dimension '{p[:60]}' in --input '{shown}'",
                              "dimensions are whole numbers >= 0 or names (B,3,H,W)")
        # Digits counted first: Python will not even read a decimal of over 4,300 digits.
        digits = p.lstrip("0") or "0"
        if len(digits) > len(str(MAX_DIM)) or int(digits) > MAX_DIM:
            raise usage_error(f"dimension {p[:60]}{'...' if len(p) > 60 else ''} in --input "
                              f"'{shown}' is too large", "the limit is 2**40")
        shape.append(int(digits))
    dtype = canonical_dtype(m.group("dtype"), "input dtype") if m.group("dtype") else None
    return InputShape(m.group("name"), tuple(shape), dtype)



InputLike = str | InputShape | Sequence[int]


def to_input(value: InputLike) -> InputShape:
    """An input shape from the Python API: `"2,20"`, `(2, 20)` or an InputShape."""
    if isinstance(value, InputShape):
        return value
    if isinstance(value, str):
        return parse_input(value)
    return InputShape(None, tuple(int(d) for d in value), None)
