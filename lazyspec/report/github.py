"""GitHub Actions output: `::error` workflow commands, and the Markdown report appended to
$GITHUB_STEP_SUMMARY when it is set (done by the CLI)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from lazyspec.errors import Diagnostic, Location
from lazyspec.textsafe import guard, visible

if TYPE_CHECKING:
    from lazyspec.gate import GateReport, RunOutcome
    from lazyspec.preview import Preview
    from lazyspec.result import InferOutcome
    from lazyspec.weights import WeightsReport

MAX_ANNOTATIONS = 10  # GitHub shows at most 10 error annotations per step
MAX_NOTICES = 3  # of a weights report's notes (prefixes and layouts to declare)
TITLES = {"missing": "missing key", "unexpected": "unexpected key", "mismatch": "shape mismatch"}


def escape_data(text: str) -> str:
    """A command's data: its line breaks as GitHub decodes them (`%0D`, `%0A`), every other
    control character as a visible escape. Text from a spec is escaped by the caller first
    (`message_lines`), so a line break in a name shows as `\\n` and never splits the message."""
    return "".join(_BREAKS.get(part) or visible(part).replace("%", "%25")
                   for part in re.split(r"(\r|\n)", text))


_BREAKS = {"\r": "%0D", "\n": "%0A"}


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(message: str, loc: Location | None, title: str, level: str = "error") -> str:
    props = []
    if loc is not None:
        props += [f"file={escape_property(loc.path)}", f"line={loc.line}", f"col={loc.col}"]
    props.append(f"title={escape_property(title)}")
    return f"::{level} {','.join(props)}::{escape_data(message)}"


def diagnostic_annotation(d: Diagnostic) -> str:
    body = message_lines([d.message, *d.notes, *([f"hint: {d.hint}"] if d.hint else [])])
    return annotation(body, d.location, f"lazyspec {d.code}")


def message_lines(parts: list[str]) -> str:
    """A multi-line message from parts that may hold any text: each part one escaped line."""
    return "\n".join(visible(p) for p in parts)


def capped(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_ANNOTATIONS:
        return lines
    left = len(lines) - MAX_ANNOTATIONS
    return [*lines[:MAX_ANNOTATIONS],
            f"::notice title=lazyspec::{left} more error(s) not shown as annotations; "
            "see the job log"]


class GithubReporter:
    machine = True

    def infer(self, outcome: InferOutcome) -> str:
        lines = capped([diagnostic_annotation(d) for d in outcome.diagnostics])
        if outcome.result is not None and not outcome.diagnostics:
            t = outcome.result.totals
            lines.append(f"lazyspec: {outcome.spec}: {t.params:,} parameters (non-trainable "
                         f"{t.non_trainable:,}), ok")
        return _text(lines)

    def show(self, preview: Preview) -> str:
        waiting = len(preview.unknown)
        return (f"::notice title=lazyspec show::{escape_data(visible(preview.spec))}: "
                f"{preview.known_params:,} parameters known before any input, {waiting} "
                "parameter tensors wait for it\n")

    def weights(self, report: WeightsReport) -> str:
        """One annotation per key that does not fit, at its spec line; then the verdict."""
        from lazyspec.weights import problem_lines

        lines = [diagnostic_annotation(d) for d in report.diagnostics]
        problems = report.problems
        for row, text in zip(problems, problem_lines(report), strict=False):
            where = row.location or Location(report.spec, 1, 1)
            message = text + (f"\n{row.note}" if row.note else "")
            lines.append(annotation(message, where, f"lazyspec checkpoint: {TITLES[row.status]}"))
        out = capped(lines)
        out += [f"::notice title=lazyspec weights::{escape_data(note)}"
                for note in report.notes[:MAX_NOTICES]]  # the fixes the report suggests
        verdict = ("fits" if report.fits else "not compared" if not report.compared
                   else f"does not fit ({len(problems):,} problem(s))")
        out.append(f"lazyspec weights: {report.spec} vs {report.checkpoint}: {verdict}")
        return _text(out)

    def gate(self, report: GateReport) -> str:
        lines: list[str] = []
        for o in report.outcomes:
            lines += [diagnostic_annotation(d) for d in o.diagnostics]
            if o.drift:
                where = _drift_location(o)
                message = message_lines([f"lock drift for {o.spec_key} [{o.key}]:", *o.drift])
                lines.append(annotation(message, where, "lazyspec lock drift"))
            lines += _checkpoint_annotation(o)
        for e in report.unused:
            lines.append(annotation(visible(f"unused lock entry {e.spec} [{e.key}]"),
                                    Location(str(report.lock_path), 1, 1),
                                    "lazyspec unused lock entry"))
        out = capped(lines)
        out.append(f"lazyspec {report.command}: {len(report.outcomes)} run(s), "
                   f"{sum(o.exit_code == 0 for o in report.outcomes)} ok")
        return _text(out)


def _text(lines: list[str]) -> str:
    """The output: lazyspec's own commands as built (their parts escaped), every other line
    escaped and guarded, so that no text from a spec, a lock or a file name reads as a command."""
    return "".join((line if line.startswith("::") else guard(visible(line))) + "\n"
                   for line in lines)


def _drift_location(o: RunOutcome) -> Location | None:
    """The spec line of the first changed parameter, else the spec file itself."""
    if o.result is not None:
        changed = {line.split()[0] for line in o.drift if " -> " in line}
        for p in o.result.params:
            if p.path in changed and p.location is not None:
                return p.location
    return Location(str(o.spec), 1, 1)


def _checkpoint_annotation(o: RunOutcome) -> list[str]:
    """A run's checkpoint that does not fit: one annotation at the spec line of the first
    mismatching parameter, listing the problems as lock drift is listed."""
    from lazyspec.weights import first_location, problem_lines

    report = o.checkpoint
    if report is None or report.fits:
        return []
    message = (f"checkpoint {report.checkpoint} does not fit {o.spec_key} [{o.key}]:\n"
               + "\n".join(problem_lines(report, limit=20)))
    where = first_location(report) or Location(str(o.spec), 1, 1)
    return [annotation(message, where, "lazyspec checkpoint mismatch")]
