"""Error types and the table of stable diagnostic codes.

Every layer raises these; only the CLI turns them into messages and exit codes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Location:
    """A 1-based position in a source file."""

    path: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Code:
    code: str
    title: str
    exit_code: int  # 0: a warning; 1: the spec fails; 2: lazyspec could not do its job


# The stable codes. Docs (docs/spec-language.md) list the same table; a test keeps them in step.
CODES: dict[str, Code] = {
    c.code: c
    for c in [
        # LS1xx: reading the file (YAML level)
        Code("LS100", "file cannot be read", 2),
        Code("LS101", "YAML syntax error", 1),
        Code("LS102", "YAML anchors and aliases are not allowed", 1),
        Code("LS103", "duplicate key", 1),
        Code("LS104", "YAML tags are not allowed", 1),
        Code("LS105", "more than one YAML document", 1),
        Code("LS106", "file too large", 1),
        Code("LS107", "nesting too deep", 1),
        # LS11x: structure of the spec
        Code("LS110", "unknown top-level key", 1),
        Code("LS111", "wrong type of value", 1),
        Code("LS112", "missing required key", 1),
        Code("LS113", "unknown node key", 1),
        Code("LS114", "malformed node", 1),
        Code("LS115", "duplicate or invalid name", 1),
        Code("LS116", "unsupported language version", 1),
        # LS12x: ops and expressions
        Code("LS120", "unknown op", 1),
        Code("LS121", "op not allowed", 1),
        Code("LS122", "malformed op call", 1),
        Code("LS123", "expression form not allowed", 1),
        Code("LS124", "undefined name", 1),
        Code("LS125", "expression cannot be evaluated", 1),
        Code("LS126", "limit exceeded", 1),
        Code("LS127", "arguments do not match the op's signature", 1),
        Code("LS128", "the op rejected its arguments", 1),
        Code("LS129", "argument not allowed in a spec", 1),
        # LS13x: data flow
        Code("LS130", "unknown reference", 1),
        Code("LS131", "reference to a later node", 1),
        Code("LS132", "bad output index", 1),
        Code("LS133", "bad share", 1),
        # LS14x: blocks, includes, params, scales, inputs
        Code("LS140", "include cannot be read", 1),
        Code("LS141", "include cycle", 1),
        Code("LS142", "include escapes the spec's folder", 1),
        Code("LS143", "block recursion", 1),
        Code("LS145", "param cycle", 1),
        Code("LS146", "bad input declaration", 1),
        # LS15x: warnings (exit 0): the spec works, but something in it does nothing
        Code("LS150", "input never used", 0),
        Code("LS151", "node never used", 0),
        # LS16x: `lazyspec import module`: what the user's module cannot be written as
        Code("LS160", "the module cannot be written as a spec", 1),
        Code("LS161", "the written spec does not rebuild the module", 1),
        # LS2xx: the dry run
        Code("LS201", "shape mismatch", 1),
        Code("LS202", "input does not match the spec", 1),
        Code("LS203", "tie failed", 1),
        # LS21x: assertions and budgets (--expect-output, --max-params, --max-bytes)
        Code("LS210", "output shape differs from the expected one", 1),
        Code("LS211", "parameter budget exceeded", 1),
        Code("LS212", "parameter-bytes budget exceeded", 1),
        # LS3xx: usage and environment (exit 2)
        Code("LS301", "bad command-line value", 2),
        Code("LS302", "device unavailable", 2),
        Code("LS303", "internal error", 2),
        Code("LS304", "bad [tool.lazyspec] configuration", 2),
        Code("LS305", "lock file cannot be read", 2),
        Code("LS306", "not enough free memory on the device", 2),
        Code("LS307", "the model cannot be exported in that form", 2),
        Code("LS308", "checkpoint cannot be read", 2),
        Code("LS309", "checkpoint refused: loading it would run code", 2),
        Code("LS310", "the model cannot be imported (`lazyspec import`)", 2),
    ]
}


@dataclass
class Diagnostic:
    """One problem, with everything needed to render it."""

    code: str
    message: str
    location: Location | None = None
    trail: tuple[str, ...] = ()  # block trail, outermost first
    notes: list[str] = field(default_factory=list)  # extra lines (shapes, torch's message)
    hint: str | None = None
    severity: str = "error"

    @property
    def exit_code(self) -> int:
        return CODES[self.code].exit_code

    def key(self) -> tuple[object, ...]:
        """Identity for de-duplication (a block used twice reports a problem once)."""
        return (self.code, self.message, self.location)


class LazyspecError(Exception):
    """Base for every error lazyspec raises on purpose. Carries one or more diagnostics."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics = dedupe(diagnostics)
        super().__init__("\n".join(f"{d.location or ''}: {d.message}" for d in self.diagnostics))

    @property
    def exit_code(self) -> int:
        return max((d.exit_code for d in self.diagnostics), default=1)


class SpecError(LazyspecError):
    """The spec is invalid (static): YAML, structure, ops, expressions, references."""


class DryRunError(LazyspecError):
    """A node failed while data flowed through the model."""

    def __init__(self, diagnostic: Diagnostic, ran: list[str]):
        self.ran = ran  # node paths that ran before the failing one
        super().__init__([diagnostic])


class AlreadyReported(SpecError):
    """A value that depends on something whose problem was reported where it was found (a param
    that failed to evaluate, read again by another): raised to stop quietly, with no new
    diagnostic. See docs/architecture.md, "already reported"."""

    def __init__(self) -> None:
        super().__init__([])


class BudgetError(LazyspecError):
    """A result that fails its assertions or budgets (LS21x), from `lazyspec.summary`; the result
    itself is `.result`."""

    def __init__(self, diagnostics: Iterable[Diagnostic], result: object = None):
        self.result = result
        super().__init__(diagnostics)


class UsageError(LazyspecError):
    """Bad command-line values, unavailable devices: lazyspec could not do its job."""


class CheckpointError(LazyspecError):
    """A checkpoint (weights file, shard or index) cannot be read, or is refused: lazyspec could
    not do its job (exit 2)."""


def dedupe(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    seen: set[tuple[object, ...]] = set()
    out: list[Diagnostic] = []
    for d in diagnostics:
        if d.key() not in seen:
            seen.add(d.key())
            out.append(d)
    return out


def usage_error(message: str, hint: str | None = None, code: str = "LS301") -> UsageError:
    return UsageError([Diagnostic(code, message, hint=hint)])


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A 'did you mean' hint, or None when nothing is close."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    return f"did you mean '{close[0]}'?" if close else None


def shown(value: object, limit: int = 80) -> str:
    """A value as a message shows it: Python's repr, cut short (values can be huge lists)."""
    import reprlib

    short = reprlib.Repr()
    short.maxlist = short.maxtuple = 8
    short.maxstring = short.maxother = limit
    text = short.repr(value)
    return text if len(text) <= limit * 2 else text[: limit * 2] + "..."
