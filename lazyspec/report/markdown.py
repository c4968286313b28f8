"""Markdown output: for pull-request comments and GitHub's job summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lazyspec.errors import Diagnostic
from lazyspec.report.text import summary_lines, weights_cells, weights_header, weights_summary
from lazyspec.report.view import (
    COLUMNS,
    View,
    node_cells,
    node_rows,
    owned_params,
    param_rows,
    view_notes,
)
from lazyspec.shapes import format_dims, format_shape
from lazyspec.textsafe import visible

if TYPE_CHECKING:
    from lazyspec.gate import GateReport
    from lazyspec.preview import Preview
    from lazyspec.result import InferOutcome, InferResult
    from lazyspec.weights import WeightsReport

MAX_WEIGHTS_ROWS = 100  # a pull-request comment stays readable; `lazyspec weights` lists all


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|")  # (`_text` escapes what the line holds)


def _prose(line: str) -> str:
    """A line of text that Markdown must not read as a list item or a heading (`* counted
    once`)."""
    line = _cell(line)
    return "\\" + line if line[:1] in ("*", "#", "-", "+", ">") else line


def _text(lines: list[str]) -> str:
    """The document: each line escaped, so a name holding a line break or a control character
    shows it as an escape and starts no line of its own."""
    return "".join(visible(line) + "\n" for line in lines)


def diagnostics_md(diagnostics: list[Diagnostic]) -> list[str]:
    out = []
    for d in diagnostics:
        where = f"`{d.location}` " if d.location else ""
        out.append(f"- {where}**{d.severity}[{d.code}]** {_cell(d.message)}")
        out += [f"  - {_cell(n)}" for n in d.notes]
        if d.hint:
            out.append(f"  - hint: {_cell(d.hint)}")
    return out


class MarkdownReporter:
    """Markdown for pull-request comments and job summaries: the same view, node table,
    parameter table and totals as the table format (every column chosen: Markdown never
    wraps a cell)."""

    machine = True

    def __init__(self, view: View | None = None) -> None:
        self.view = view or View()

    def infer(self, outcome: InferOutcome) -> str:
        r = outcome.result
        lines = [f"### lazyspec: `{outcome.spec}`", ""]
        if r is not None:
            inputs = ", ".join(f"`{i.name}` {format_shape(i.shape)} {i.dtype}" for i in r.inputs)
            lines += [f"Input: {inputs} on `{r.device}`", ""]
            lines += infer_tables_md(r, self.view)
            lines += [f"{_prose(line)}  " for line in summary_lines(r)]
        if outcome.diagnostics:
            lines += ["", *diagnostics_md(outcome.diagnostics)]
        return _text(lines)

    def show(self, preview: Preview) -> str:
        lines = [f"### lazyspec show: `{preview.spec}`", "",
                 "Before any input; `?` is a size the first pass of data will fix.", "",
                 "| Parameter | Op | Shape | Count | Line |", "| --- | --- | --- | ---: | ---: |"]
        for p in preview.params:
            tied = f" (tied to `{p.tied}`)" if p.tied else ""
            count = "?" if p.count is None else f"{p.count:,}"
            line = p.location.line if p.location else ""
            lines.append(f"| `{p.path}`{tied} | {p.op} | {format_dims(p.shape)} | {count} "
                         f"| {line} |")
        lines += ["", f"Known now: {preview.known_params:,} parameters; {len(preview.unknown)} "
                  "parameter tensors wait for the input."]
        return _text(lines)

    def weights(self, report: WeightsReport) -> str:
        return weights_md(report)

    def gate(self, report: GateReport) -> str:
        lines = [f"### lazyspec {report.command}: "
                 f"{'passed' if report.exit_code == 0 else 'failed'}", "",
                 "| Spec | Run | Status | Parameters | Output |",
                 "| --- | --- | --- | ---: | --- |"]
        for o in report.outcomes:
            r = o.result
            params = f"{r.totals.params:,}" if r else ""
            output = ", ".join(format_shape(x) for x in r.outputs) if r else ""
            status = o.status if o.lock_status in ("ok", "not-checked") else \
                f"{o.status} ({o.lock_status})"
            lines.append(f"| `{o.spec_key}` | `{_cell(o.key)}` | {status} | {params} | {output} |")
        for o in report.outcomes:
            if o.drift or o.diagnostics:
                lines += ["", f"#### `{o.spec_key}` `{_cell(o.key)}`", ""]
                lines += [f"- `{_cell(d)}`" for d in o.drift]
                lines += diagnostics_md(o.diagnostics)
            lines += checkpoint_md(o.checkpoint)
        if report.unused:
            lines += ["", "Unused lock entries (remove them with `lazyspec lock`):", ""]
            lines += [f"- `{e.spec}` `{_cell(e.key)}`" for e in report.unused]
        return _text(lines)


def infer_tables_md(r: InferResult, view: View) -> list[str]:
    """The node and parameter tables the view shows, then the view's notes."""
    show_nodes, show_params = view.tables(r)
    rows = node_rows(r, view)
    lines: list[str] = []
    if show_nodes:
        owned, weights = owned_params(r)
        heads = [COLUMNS[k] for k in view.columns]
        lines += ["| Node | " + " | ".join(c.heading for c in heads) + " |",
                  "| --- | " + " | ".join("---:" if c.right else "---" for c in heads) + " |"]
        for row in rows.nodes:
            cells = node_cells(row, view.columns, r, owned, weights)
            lines.append(f"| `{_cell(row.name)}` | " + " | ".join(_cell(c) for c in cells) + " |")
        lines.append("")
    if show_params:
        frozen = any(not p.trainable for p in r.params)
        lines += ["| Parameter | Op | Shape | Count | Line |" + (" Trainable |" if frozen else ""),
                  "| --- | --- | --- | ---: | ---: |" + (" --- |" if frozen else "")]
        for pr in param_rows(r, rows):
            p = pr.param
            line = p.location.line if p.location else ""
            lines.append(f"| `{_cell(p.path)}`{pr.marks} | {p.op} | {format_shape(p.shape)} | "
                         f"{p.count:,} | {line} |"
                         + ((" yes |" if p.trainable else " no |") if frozen else ""))
        lines.append("")
    notes = view_notes(r, view, rows, show_params)
    return lines + ([*(f"{_prose(n)}  " for n in notes), ""] if notes else [])


def checkpoint_md(report: WeightsReport | None) -> list[str]:
    """A gate run's checkpoint that does not fit, listed as lock drift is."""
    if report is None or report.fits:
        return []
    from lazyspec.weights import problem_lines

    return ["", f"Checkpoint `{_cell(report.checkpoint)}` does not fit:", "",
            *[f"- `{_cell(line)}`" for line in problem_lines(report, limit=20)]]


def weights_md(report: WeightsReport) -> str:
    """`lazyspec weights`: the keys that do not fit, counts, dtypes, the verdict."""
    head, *rest = weights_header(report)
    lines = [f"### lazyspec weights: {_cell(head)}", "", *[f"{_cell(x)}  " for x in rest]]
    if report.problems:
        lines += ["", "| Status | Key | Spec | Checkpoint | Line |",
                  "| --- | --- | --- | --- | ---: |"]
        for row in report.problems[:MAX_WEIGHTS_ROWS]:
            status, key, spec, stored, line = weights_cells(row)
            lines.append(f"| {status} | `{_cell(key)}` | {spec} | {stored} | {line} |")
        left = len(report.problems) - MAX_WEIGHTS_ROWS
        if left > 0:
            lines += ["", f"... and {left:,} more (`lazyspec weights` lists them all)"]
    lines += ["", *[f"{_cell(x)}  " for x in weights_summary(report)]]
    if report.diagnostics:
        lines += ["", *diagnostics_md(report.diagnostics)]
    return _text(lines)
