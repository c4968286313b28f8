"""Op calls as the spec writes them (`Unflatten(2, [4, 16])`), from values a spec can hold."""

from __future__ import annotations

from typing import Any

from lazyspec.export.literals import Unwritable, spec_literal


class NotWritable(Exception):
    """A value the op-call syntax cannot hold."""


def literal(value: Any) -> str:
    try:
        return spec_literal(value)
    except Unwritable:
        raise NotWritable(f"takes {value!r}, which a spec cannot write") from None


def call(name: str, *args: Any, **kwargs: Any) -> str:
    """`Name(arg, ..., key=value)`, or `Name` without arguments."""
    parts = [literal(a) for a in args] + [f"{k}={literal(v)}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})" if parts else name


def flatten_op(start: int, end: int = -1) -> str:
    """nn.Flatten's call, its defaults (1, -1) left out."""
    if end != -1:
        return call("Flatten", start, end)
    return "Flatten" if start == 1 else call("Flatten", start)
