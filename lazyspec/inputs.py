"""Input shapes and dtypes: parsing `--input [NAME=]D1,D2,...[:DTYPE]` and binding it to a spec.

Torch-free, so bad flags are caught before torch is imported.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lazyspec.errors import Diagnostic, SpecError, usage_error
from lazyspec.spec.expr import Expr, evaluate
from lazyspec.spec.model import DEFAULT_INPUT, InputDecl, Spec

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


def _split_input(text: str) -> tuple[str | None, str, str | None] | None:
    """(name, dims, dtype) of `[NAME=]DIMS[:DTYPE]`, None when it is not that form. Split at
    `=` and `:`, not by a regular expression: whitespace runs cannot make it backtrack."""
    name: str | None = None
    rest = text.strip()
    if "=" in rest:
        head, _, rest = rest.partition("=")
        name = head.strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            return None
    dims, colon, dtype = rest.partition(":")
    if "=" in dims or "=" in dtype or ":" in dtype:
        return None
    if colon and not re.fullmatch(r"[A-Za-z0-9_.]+", dtype.strip()):
        return None
    return name, dims, dtype.strip() if colon else None


def parse_input(text: str) -> InputShape:
    """Parse `2,20`, `idx=2,64:int64` or `[2, 20]`; raises UsageError."""
    shown = text if len(text) <= 80 else f"{text[:60]}... ({len(text):,} characters)"
    split = _split_input(text)
    if split is None:
        raise usage_error(f"cannot read --input '{shown}'",
                          "write [NAME=]D1,D2,...[:DTYPE], for example 2,20 or idx=2,64:int64")
    name, dims, dtype_text = split
    dims_text = dims.strip().strip("[]()")
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
    dtype = canonical_dtype(dtype_text, "input dtype") if dtype_text else None
    return InputShape(name, tuple(shape), dtype)



InputLike = str | InputShape | Sequence[int]


def to_input(value: InputLike) -> InputShape:
    """An input shape from the Python API: `"2,20"`, `(2, 20)` or an InputShape."""
    if isinstance(value, InputShape):
        return value
    if isinstance(value, str):
        return parse_input(value)
    return InputShape(None, tuple(int(d) for d in value), None)


# --- binding flags to the model's inputs ------------------------------------------------------


@dataclass
class BoundInput:
    """One model input with the shape and dtype a dry run feeds it."""

    name: str
    shape: tuple[int, ...]  # concrete: named dims take their hint
    dtype: str
    dim_names: tuple[str | None, ...] = ()  # a name for each symbolic dim, None for a number
    range: tuple[int, int] | None = None  # [lo, hi): the values an integer input holds

    @property
    def symbolic(self) -> bool:
        return any(n is not None for n in self.dim_names)


# Sizes a named dimension takes in the concrete pass that precedes the symbolic one.
BATCH_HINT, DIM_HINT = 2, 64  # not 0 or 1, which torch specialises away


def bind_inputs(spec: Spec, params: Mapping[str, Any], dtype: str,
                given: Sequence[InputShape]) -> list[BoundInput]:
    """Match `--input` flags to the model's inputs and check them against declared shapes.
    `dtype` is the parameter dtype, which float inputs without a dtype of their own take."""
    decls = spec.graph.inputs or [InputDecl(DEFAULT_INPUT, None, None, spec.graph.loc)]
    by_name = _match_flags([d.name for d in decls], given)
    binder = _Binder(params, dtype, len(decls))
    bound = [b for b in (binder.bind(decl, by_name.get(decl.name)) for decl in decls)
             if b is not None]
    if binder.problems:
        raise SpecError(binder.problems)
    return bound


def _match_flags(names: list[str], given: Sequence[InputShape]) -> dict[str, InputShape]:
    """Named flags go to their input; unnamed ones fill the others in order."""
    by_name: dict[str, InputShape] = {}
    for g in given:
        if g.name is None:
            continue
        if g.name not in names:
            from lazyspec.errors import did_you_mean

            raise usage_error(f"--input {g}: the model has no input '{g.name}'",
                              did_you_mean(g.name, names) or "inputs: " + ", ".join(names))
        if g.name in by_name:
            raise usage_error(f"--input given twice for '{g.name}'")
        by_name[g.name] = g
    free = [n for n in names if n not in by_name]
    unnamed = [g for g in given if g.name is None]
    if len(unnamed) > len(free):
        raise usage_error(f"{len(given)} --input flags for {len(names)} input(s) "
                          f"({', '.join(names)})", "name each one: --input NAME=2,20")
    by_name.update(zip(free, unnamed, strict=False))  # fewer flags than inputs: checked later
    return by_name


class _Binder:
    """Binds each declared input in turn; named dimensions keep one size across all inputs."""

    def __init__(self, params: Mapping[str, Any], dtype: str, count: int):
        self.params, self.dtype, self.count = params, dtype, count
        self.problems: list[Diagnostic] = []
        self.dims: dict[str, tuple[int | str, str]] = {}  # named dim -> (size, where first)
        self.hints: dict[str, int] = {}  # named dim -> its size in the concrete pass

    def bind(self, decl: InputDecl, flag: InputShape | None) -> BoundInput | None:
        declared = _declared_shape(decl, self.params)
        if flag is None:
            if declared is None or not all(isinstance(d, (int, str)) for d in declared):
                raise usage_error(f"no shape for input '{decl.name}'",
                                  f"give one, for example --input "
                                  f"{decl.name + '=' if self.count > 1 else ''}2,20")
            wanted: tuple[int | str, ...] = tuple(declared)  # declared names stay symbolic
        else:
            wanted = flag.shape
            if declared is not None:
                self.problems.extend(_check_declared(decl, declared, wanted, self.dims))
        dtype = (flag.dtype if flag and flag.dtype else decl.dtype) or self.dtype
        if dtype not in DTYPES:
            from lazyspec.errors import did_you_mean

            self.problems.append(Diagnostic("LS146", f"input '{decl.name}': unknown dtype "
                                            f"'{dtype}'", decl.loc,
                                            hint=did_you_mean(dtype, DTYPES)))
            return None
        shape = tuple(d if isinstance(d, int) else
                      self.hints.setdefault(d, BATCH_HINT if i == 0 else DIM_HINT)
                      for i, d in enumerate(wanted))
        too_large = _size_problem(shape, DTYPES[dtype][1])
        if too_large and flag is not None:
            raise usage_error(f"--input {flag}: {too_large}", "give a smaller shape")
        if too_large:
            self.problems.append(Diagnostic("LS146", f"input '{decl.name}': {too_large}",
                                            decl.loc))
            return None
        dim_names = tuple(d if isinstance(d, str) else None for d in wanted)
        value_range = self.value_range(decl, DTYPES[dtype][2])
        return BoundInput(decl.name, shape, DTYPES[dtype][0], dim_names, value_range)

    def value_range(self, decl: InputDecl, floating: bool) -> tuple[int, int] | None:
        """A declared `range: [lo, hi]`, evaluated: whole numbers, lo < hi, an integer input."""
        if decl.range is None:
            return None
        lo, hi = (evaluate(v, self.params) if isinstance(v, Expr) else
                  self.params.get(v, v) if isinstance(v, str) else v for v in decl.range)
        if floating or not all(type(v) is int for v in (lo, hi)) or not lo < hi:
            self.problems.append(Diagnostic(
                "LS146", f"input '{decl.name}': `range: [{lo}, {hi}]` must be two whole numbers "
                "lo < hi, for an integer input", decl.loc,
                hint="for token ids: `dtype: int64` and `range: [0, vocab_size]`"))
            return None
        return (lo, hi)


def _size_problem(shape: tuple[int, ...], itemsize: float) -> str | None:
    """Why torch cannot make a tensor of this shape, even on `meta`; None when it can."""
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
    """The declared dimensions, each a whole number or a name. Anything else (a boolean, a
    float, a list, from a param or an expression) is the spec's fault, at the dimension."""
    from lazyspec.errors import shown
    from lazyspec.spec.parse import NAME_RE

    if decl.shape is None:
        return None
    out: list[Any] = []
    problems: list[Diagnostic] = []
    for i, d in enumerate(decl.shape):
        where = decl.dim_locs[i] if i < len(decl.dim_locs) else decl.loc
        if isinstance(d, Expr):
            where, d = d.loc, evaluate(d, params)
        elif isinstance(d, str) and d in params:
            d = params[d]  # a dimension named after a param takes its value
        if isinstance(d, bool) or not isinstance(d, (int, str)) or \
                (isinstance(d, str) and not NAME_RE.match(d)):
            problems.append(Diagnostic(
                "LS146", f"input '{decl.name}': dimension {i} is {shown(d)} "
                f"({type(d).__name__}), not a whole number or a name", where,
                hint="write a size such as 20, or a name such as B"))
        out.append(d)
    if problems:
        raise SpecError(problems)
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
