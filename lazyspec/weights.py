"""Does a checkpoint fit a spec? The spec's state dict against the checkpoint's tensors, as
`load_state_dict(strict=True)` would compare them: missing keys, unexpected keys, shape
mismatches (each at the spec line of its parameter), dtypes shown. Torch-free: it reads the
materialised module an engine run built, and the records lazyspec.checkpoint read.

A `Layout` declares known differences between the checkpoint's names and layout and the spec's:
prefixes to strip or add, tensors stored transposed (Hugging Face's GPT-2 `Conv1D` stores
`[in, out]`, the transpose of `nn.Linear`), and keys to leave out of the comparison.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lazyspec.checkpoint import Checkpoint, TensorRecord
from lazyspec.errors import CheckpointError, Diagnostic, Location, shown
from lazyspec.result import InputRecord

if TYPE_CHECKING:
    from lazyspec.compile import Built
    from lazyspec.engine import Outcome
    from lazyspec.result import InferResult

STATUSES = ("ok", "missing", "unexpected", "mismatch", "ignored")
PROBLEMS = ("missing", "unexpected", "mismatch")


@dataclass(frozen=True)
class Layout:
    """How a checkpoint's names and layout differ from the spec's, declared by the user."""

    strip_prefix: tuple[str, ...] = ()  # removed from checkpoint names (the first that matches)
    add_prefix: str = ""  # then added to every checkpoint name
    transpose: tuple[str, ...] = ()  # globs (spec names): 2-d tensors stored as [in, out]
    ignore: tuple[str, ...] = ()  # globs (spec names): left out on both sides

    def spec_name(self, stored: str) -> str:
        """A checkpoint name as the spec would name it."""
        for prefix in self.strip_prefix:
            if stored.startswith(prefix):
                stored = stored[len(prefix):]
                break
        return self.add_prefix + stored

    def flags(self) -> list[str]:
        """The layout as command-line flags, for reports."""
        return ([f"--strip-prefix {p}" for p in self.strip_prefix]
                + ([f"--add-prefix {self.add_prefix}"] if self.add_prefix else [])
                + [f"--transpose '{g}'" for g in self.transpose]
                + [f"--ignore '{g}'" for g in self.ignore])


@dataclass(frozen=True)
class Expected:
    """One key of the spec's state dict."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    kind: str  # parameter | buffer
    location: Location | None
    tied: tuple[str, ...] = ()  # the other names of the same tensor


@dataclass
class KeyRow:
    """One key, as the comparison found it."""

    name: str  # as the spec names it (a checkpoint key after the layout's renaming)
    status: str  # ok | missing | unexpected | mismatch | ignored
    expected: Expected | None = None
    stored: TensorRecord | None = None
    transposed: bool = False  # the stored shape was compared transposed (Layout.transpose)
    location: Location | None = None  # the spec line of the parameter (or of its module)
    note: str | None = None

    @property
    def compared_shape(self) -> tuple[int, ...] | None:
        """The checkpoint's shape as compared (transposed back where the layout says so)."""
        if self.stored is None:
            return None
        return self.stored.shape[::-1] if self.transposed else self.stored.shape


@dataclass
class WeightsReport:
    """A spec against a checkpoint: one row per key of either, and what it says."""

    spec: str
    checkpoint: str
    format: str = ""
    files: list[str] = field(default_factory=list)
    layout: Layout = field(default_factory=Layout)
    inputs: list[InputRecord] = field(default_factory=list)  # the run that fixed the shapes
    rows: list[KeyRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)  # the spec's, when it failed
    ran: list[str] | None = None
    compared: bool = False  # False: the spec failed before there was anything to compare

    def counts(self) -> dict[str, int]:
        found = Counter(r.status for r in self.rows)
        return {s: found.get(s, 0) for s in STATUSES}

    @property
    def problems(self) -> list[KeyRow]:
        return [r for r in self.rows if r.status in PROBLEMS]

    @property
    def fits(self) -> bool:
        return self.compared and not self.problems

    @property
    def exit_code(self) -> int:
        codes = [d.exit_code for d in self.diagnostics]
        return max([*codes, 0 if self.fits or not self.compared else 1])

    def dtypes(self) -> tuple[Counter[str], Counter[str]]:
        """How many keys of each dtype: the spec's, the checkpoint's."""
        return (Counter(r.expected.dtype for r in self.rows if r.expected),
                Counter(r.stored.dtype for r in self.rows if r.stored))


def check(outcome: Outcome, checkpoint: Checkpoint, layout: Layout) -> WeightsReport:
    """The spec an engine run materialised against a checkpoint. A run that failed gives a
    report with its diagnostics and no rows."""
    report = WeightsReport(outcome.spec, checkpoint.path, checkpoint.format,
                           list(checkpoint.files), layout, notes=list(checkpoint.notes),
                           diagnostics=outcome.diagnostics, ran=outcome.ran)
    if outcome.error is not None or outcome.built is None or outcome.result is None:
        return report
    report.inputs = list(outcome.result.inputs)
    expected = expected_state(outcome.built, outcome.result)
    report.rows = compare(expected, checkpoint, layout, _module_location(outcome.built))
    report.notes += suggestions(report.rows, layout)
    report.compared = True
    return report


def expected_state(built: Built, result: InferResult) -> list[Expected]:
    """The keys `load_state_dict(strict=True)` wants: parameters and persistent buffers, every
    name of a tied or shared tensor, with shapes and dtypes from the materialised module."""
    module = built.module
    state = module.state_dict(keep_vars=True)
    parameters = {name for name, _ in module.named_parameters(remove_duplicate=False)}
    names: dict[int, list[str]] = {}
    for name, tensor in state.items():
        names.setdefault(id(tensor), []).append(name)
    located = {p.path: p.location for p in result.params}
    out = []
    for name, tensor in state.items():
        others = tuple(n for n in names[id(tensor)] if n != name)
        node = built.owner_of(name)
        location = node.loc if node is not None else next(
            (located[n] for n in names[id(tensor)] if located.get(n)), None)
        out.append(Expected(name, tuple(int(d) for d in tensor.shape),
                            str(tensor.dtype).removeprefix("torch."),
                            "parameter" if name in parameters else "buffer", location, others))
    return out


def _module_location(built: Built) -> Callable[[str], Location | None]:
    """The spec line of the nearest module above a key the spec does not have."""
    def where(name: str) -> Location | None:
        node = built.owner_of(name.rpartition(".")[0])
        return node.loc if node is not None and node.module_path else None
    return where


def _matcher(globs: Sequence[str]) -> Callable[[str], bool]:
    if not globs:
        return lambda _: False
    pattern = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs))
    return lambda name: pattern.match(name) is not None


def rename(checkpoint: Checkpoint, layout: Layout) -> dict[str, TensorRecord]:
    """The checkpoint's tensors under the spec's names; two that land on one name fail."""
    renamed: dict[str, TensorRecord] = {}
    for stored, record in checkpoint.tensors.items():
        name = layout.spec_name(stored)
        if name in renamed:
            raise CheckpointError([Diagnostic(
                "LS308", f"checkpoint {checkpoint.path}: {shown(renamed[name].name)} and "
                f"{shown(stored)} both become {shown(name)} under {' '.join(layout.flags())}",
                hint="a prefix to strip or add must leave every name distinct")])
        renamed[name] = record
    return renamed


def compare(expected: Sequence[Expected], checkpoint: Checkpoint, layout: Layout,
            module_location: Callable[[str], Location | None] = lambda _: None) -> list[KeyRow]:
    """One row per key of the spec (in its order), then one per key only the checkpoint has."""
    stored = rename(checkpoint, layout)
    ignored, transposed = _matcher(layout.ignore), _matcher(layout.transpose)
    rows = []
    for e in expected:
        record = stored.get(e.name)
        flip = record is not None and len(record.shape) == 2 and transposed(e.name)
        row = KeyRow(e.name, "ok", e, record, flip, e.location)
        if ignored(e.name):
            row.status = "ignored"
        elif record is None:
            row.status = "missing"
            present = [t for t in e.tied if t in stored]
            if present:
                row.note = (f"tied to {present[0]}, which the checkpoint holds (a tied tensor "
                            f"is often saved once: --ignore {e.name} if your loader ties them)")
        elif not _fits(e.shape, row.compared_shape or ()):
            row.status = "mismatch"
        rows.append(row)
    wanted = {e.name for e in expected}
    for name, record in stored.items():
        if name not in wanted:
            rows.append(KeyRow(name, "ignored" if ignored(name) else "unexpected",
                               stored=record, location=module_location(name)))
    return rows


def _fits(want: tuple[int, ...], have: tuple[int, ...]) -> bool:
    """load_state_dict's test: equal shapes; a 0-d parameter also takes a 1-d tensor (its
    first element), for checkpoints older than 0-d tensors."""
    return want == have or (want == () and len(have) == 1)


def suggestions(rows: Sequence[KeyRow], layout: Layout) -> list[str]:
    """Hints for the usual causes: a prefix, a transposed layout, a layout rule that matched
    nothing."""
    missing = {r.name for r in rows if r.status == "missing"}
    unexpected = {r.name for r in rows if r.status == "unexpected"}
    notes = []
    prefix = _common_prefix(unexpected, missing)
    if prefix:
        notes.append(f"the checkpoint's names start with '{prefix}' where the spec's do not: "
                     f"try --strip-prefix {prefix}")
    prefix = _common_prefix(missing, unexpected)
    if prefix:
        notes.append(f"the spec's names start with '{prefix}' where the checkpoint's do not: "
                     f"try --add-prefix {prefix}")
    flipped = sorted({"*." + ".".join(r.name.split(".")[-2:]) for r in rows
                      if r.status == "mismatch" and r.stored is not None and r.expected
                      and len(r.stored.shape) == 2 and r.stored.shape[::-1] == r.expected.shape})
    if flipped:
        notes.append("some tensors are stored transposed ([in, out], as Hugging Face's Conv1D "
                     "stores them): declare them with " + " ".join(f"--transpose '{g}'"
                                                                for g in flipped))
    return notes + _unused_rules(rows, layout)


def _common_prefix(names: set[str], targets: set[str]) -> str | None:
    """A first name component (`transformer.`) whose removal turns at least half of `targets`
    into `names`."""
    found = Counter(n.split(".", 1)[0] + "." for n in names if "." in n)
    for prefix, _ in found.most_common(3):
        hits = sum(1 for n in names if n.startswith(prefix) and n[len(prefix):] in targets)
        if hits and hits * 2 >= len(targets):
            return prefix
    return None


def _unused_rules(rows: Sequence[KeyRow], layout: Layout) -> list[str]:
    stored = [r.stored.name for r in rows if r.stored is not None]
    names = [r.name for r in rows]
    out = [f"--strip-prefix {p} matched no checkpoint name" for p in layout.strip_prefix
           if not any(s.startswith(p) for s in stored)]
    for flag, globs, pool in (("--transpose", layout.transpose, names),
                              ("--ignore", layout.ignore, names)):
        out += [f"{flag} '{g}' matched no key" for g in globs
                if not any(fnmatch.fnmatchcase(n, g) for n in pool)]
    return out


def problem_lines(report: WeightsReport, limit: int | None = None) -> list[str]:
    """One readable line per problem (at most `limit`), as lock drift is listed."""
    from lazyspec.shapes import format_shape

    lines = []
    for r in report.problems[:limit]:
        if r.status == "missing":
            assert r.expected is not None
            lines.append(f"missing {r.name} {format_shape(r.expected.shape)} {r.expected.dtype}")
        elif r.status == "unexpected":
            assert r.stored is not None
            lines.append(f"unexpected {r.stored.name} {format_shape(r.stored.shape)} "
                         f"{r.stored.dtype}")
        else:
            assert r.expected is not None and r.stored is not None
            flipped = " (stored transposed)" if r.transposed else ""
            lines.append(f"{r.name}: spec {format_shape(r.expected.shape)}, checkpoint "
                         f"{format_shape(r.compared_shape or ())}{flipped}")
    left = len(report.problems) - len(lines)
    if left > 0:
        lines.append(f"... and {left:,} more (`lazyspec weights` lists them all)")
    return lines


def first_location(report: WeightsReport) -> Location | None:
    """The spec line of the first mismatching parameter (for annotations)."""
    return next((r.location for r in report.problems if r.location is not None), None)
