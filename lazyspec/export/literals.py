"""Argument values written out: in the spec's op-call syntax and as Python source. Only names
and literals are ever written, so no spec text becomes code."""

from __future__ import annotations

import ast
import keyword
import math
from typing import Any

from lazyspec.export.plan import Call, ExportError
from lazyspec.spec.expr import MAX_EXPR_CHARS, MAX_EXPR_NODES


class Unwritable(Exception):
    """A value the op-call syntax cannot write (a mapping, a non-finite float)."""


def spec_literal(value: Any) -> str:
    """A value in the spec's expression syntax."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        raise Unwritable
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, tuple):
        items = ", ".join(spec_literal(v) for v in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, list):
        return "[" + ", ".join(spec_literal(v) for v in value) + "]"
    raise Unwritable


def identifier(name: str) -> str:
    """A keyword to write into generated code: only a plain Python name passes (no injection)."""
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ExportError(f"keyword {name!r} is not a Python name")
    return name


def py_literal(value: Any) -> str:
    """A value as Python source."""
    if isinstance(value, float) and not math.isfinite(value):
        return f'float("{value}")'
    if value is None or isinstance(value, (bool, int, float, str)):
        return repr(value)
    if isinstance(value, tuple):
        items = ", ".join(py_literal(v) for v in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, list):
        return "[" + ", ".join(py_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py_literal(k)}: {py_literal(v)}"
                               for k, v in value.items()) + "}"
    raise ExportError(f"cannot write the argument {value!r} ({type(value).__name__}) in Python")


def call_text(call: Call) -> str | None:
    """`Op(args)` in the op-call syntax, or None when only the long form can write it."""
    try:
        parts = [spec_literal(a) for a in call.args]
        parts += [f"{identifier(k)}={spec_literal(v)}" for k, v in call.kwargs]
    except Unwritable:
        return None
    if not parts:
        return call.op
    text = f"{call.op}({', '.join(parts)})"
    if len(text) > MAX_EXPR_CHARS or _ast_size(text) > MAX_EXPR_NODES:
        return None
    return text


def _ast_size(text: str) -> int:
    return sum(1 for _ in ast.walk(ast.parse(text, mode="eval")))


