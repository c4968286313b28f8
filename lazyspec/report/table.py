"""The human report: nodes with their output shapes, parameters with their shapes, totals.
What it shows is the view's choice (report/view.py); tables are plain aligned columns
(report/layout.py) that never break a name or a shape."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.text import Text

from lazyspec.report.layout import Col, lay_out
from lazyspec.report.text import summary_lines, weights_cells, weights_header, weights_summary
from lazyspec.report.view import (
    COLUMNS,
    ParamRow,
    View,
    node_cells,
    node_rows,
    owned_params,
    param_rows,
    view_notes,
)
from lazyspec.result import InferOutcome, InferResult
from lazyspec.shapes import format_dims, format_shape
from lazyspec.textsafe import visible

if TYPE_CHECKING:
    from lazyspec.gate import GateReport, RunOutcome
    from lazyspec.preview import Preview
    from lazyspec.weights import WeightsReport


def _line(loc: Any) -> str:
    return str(loc.line) if loc is not None else ""


def _table(cols: list[Col], rows: Sequence[Sequence[str]],
           width: int | None) -> tuple[Text, list[str]]:
    """Aligned columns that fit `width` by leaving whole columns out (see `layout`), never by
    breaking a cell; returns the table and the headings left out. Cells are shown escaped
    (names and paths come from specs, lock files and file names)."""
    laid = lay_out(cols, [tuple(visible(cell) for cell in row) for row in rows], width)
    text = Text(laid.heading, style="bold")
    text.append("\n" + laid.rule, style="dim")
    for row in laid.rows:
        text.append("\n" + row)
    return text, laid.dropped


def _dropped_note(dropped: list[str], width: int | None) -> list[str]:
    if not dropped:
        return []
    return [f"({width} columns: left out {', '.join(dropped)}; widen the terminal or choose "
            "--columns)"]


def render_table(result: InferResult, view: View | None = None,
                 width: int | None = None) -> RenderableType:
    """The infer report: header, node table, parameter table (as the view chooses), totals."""
    view = view or View()
    title = result.name or result.spec
    inputs = ", ".join(f"{i.name} [{', '.join(map(str, i.shape))}] {i.dtype}"
                       for i in result.inputs)
    parts: list[RenderableType] = [
        Text.assemble((visible(title), "bold"), f"  ({visible(result.spec)})\n",
                      visible(f"input: {inputs}   device: {result.device}   "
                              f"dtype: {result.dtype}"))]
    show_nodes, show_params = view.tables(result)
    rows = node_rows(result, view)
    dropped: list[str] = []
    if show_nodes:
        owned, weights = owned_params(result)
        cols = [Col("Node"), *(Col(COLUMNS[k].heading, COLUMNS[k].right, COLUMNS[k].drop)
                               for k in view.columns)]
        table, dropped = _table(cols, [(r.name, *node_cells(r, view.columns, result, owned,
                                                             weights)) for r in rows.nodes], width)
        parts += [Text(""), table]
    if show_params:
        table, more = _param_table(result, param_rows(result, rows), width)
        parts += [Text(""), table]
        dropped += [d for d in more if d not in dropped]
    notes = _dropped_note(dropped, width) + view_notes(result, view, rows, show_params)
    parts += [Text(""), _lines(summary_lines(result) + notes)]
    return Group(*parts)


def _param_table(result: InferResult, rows: list[ParamRow],
                 width: int | None) -> tuple[Text, list[str]]:
    """Every parameter tensor by its state-dict name; Trainable only when some are frozen."""
    frozen = any(not p.trainable for p in result.params)
    cols = [Col("Parameter"), Col("Op", drop=2), Col("Shape"), Col("Count", True),
            Col("Line", True, 1)] + ([Col("Trainable", drop=3)] if frozen else [])
    cells = [(r.param.path + r.marks, r.param.op, format_shape(r.param.shape), f"{r.param.count:,}",
              _line(r.param.location)) + (("yes" if r.param.trainable else "no",) if frozen
                                          else ()) for r in rows]
    return _table(cols, cells, width)


def _lines(lines: list[str]) -> Text:
    """Plain lines under a table, each escaped: notes and diffs hold names from specs and locks."""
    return Text("\n".join(visible(line) for line in lines))


def render_gate(report: GateReport) -> RenderableType:
    rows: list[tuple[str, ...]] = []
    for o in report.outcomes:
        r = o.result
        status = o.status.upper() if o.status != "ok" else "ok"
        if o.lock_status in ("changed", "missing", "updated", "not-written"):
            status += f" ({o.lock_status.replace('-', ' ')})"
        status += _checkpoint_status(o)
        rows.append((status, o.spec_key, o.key, f"{r.totals.params:,}" if r else "",
                     ", ".join(format_shape(x) for x in r.outputs) if r else ""))
    # Every column stays, however narrow the terminal: a run's status, spec, key and counts are
    # what the gate is read for (a line runs long instead, whole).
    table, _ = _table([Col("Status"), Col("Spec"), Col("Run"), Col("Params", True),
                       Col("Output")], rows, None)
    lines: list[str] = []
    for o in report.outcomes:
        if o.drift:
            lines.append(f"{o.spec_key} [{o.key}]:")
            lines += [f"  {d}" for d in o.drift]
    lines += checkpoint_lines(report)
    for e in report.unused:
        lines.append(f"unused lock entry: {e.spec} [{e.key}] (run `lazyspec lock` to drop it)")
    ok = sum(o.exit_code == 0 for o in report.outcomes)
    failed = len(report.outcomes) - ok
    summary = f"{len(report.outcomes)} run(s): {ok} ok, {failed} failed"
    if report.unused:
        summary += f", {len(report.unused)} unused lock entries"
    summary += f"; lock: {report.lock_path}" + (" (written)" if report.wrote_lock else "")
    lines.append(summary)
    lines += report.notes
    return Group(table, Text(""), _lines(lines))


def _checkpoint_status(o: RunOutcome) -> str:
    if o.checkpoint is None:
        return ""
    return " (checkpoint ok)" if o.checkpoint.fits else " (checkpoint)"


def checkpoint_lines(report: GateReport) -> list[str]:
    """The checkpoints that do not fit their runs, listed as lock drift is."""
    from lazyspec.weights import problem_lines

    lines = []
    for o in report.outcomes:
        if o.checkpoint is not None and not o.checkpoint.fits:
            lines.append(f"{o.spec_key} [{o.key}]: checkpoint {o.checkpoint.checkpoint} does "
                         "not fit:")
            lines += [f"  {line}" for line in problem_lines(o.checkpoint, limit=20)]
    return lines


def _weights_table(rows: list[tuple[str, ...]]) -> Text:
    """Every column stays: keys are searched for, shapes read across (a narrow terminal wraps
    the line instead)."""
    table, _ = _table([Col("Status"), Col("Key"), Col("Spec"), Col("Checkpoint"),
                       Col("Line", True)], rows, None)
    return table


def render_weights(report: WeightsReport) -> RenderableType:
    """The keys that do not fit (every key fits: none), then counts, dtypes and the verdict."""
    parts: list[RenderableType] = [Text("\n".join(weights_header(report)))]
    if report.problems:
        parts += [_weights_table([weights_cells(r) for r in report.problems]), Text("")]
    parts.append(Text("\n".join(weights_summary(report))))
    return Group(*parts)


def render_preview(p: Preview, width: int | None = None) -> RenderableType:
    header = Text.assemble((visible(p.name or p.spec), "bold"), f"  ({visible(p.spec)})\n",
                           "before any input: ? is a size the first pass of data will fix")
    rows = []
    for param in p.params:
        name = param.path + (f" (tied to {param.tied})" if param.tied else "")
        count = "?" if param.count is None else f"{param.count:,}"
        rows.append((name, param.op, format_dims(param.shape), count, _line(param.location)))
    table, dropped = _table([Col("Parameter"), Col("Op", drop=2), Col("Shape"),
                             Col("Count", True), Col("Line", True, 1)], rows, width)
    waiting = len(p.unknown)
    summary = (f"known now: {p.known_params:,} parameters; {waiting} of {len(p.params)} "
               "tensors wait for the input")
    return Group(header, Text(""), table, Text(""), _lines([*_dropped_note(dropped, width),
                                                            summary]))


class TableReporter:
    """Human output; coloured only when asked (a terminal without NO_COLOR). Nothing is wrapped:
    tables fit `width` by leaving columns out, and a longer line stays one line."""

    machine = False

    def __init__(self, color: bool = False, width: int | None = None, depth: int | None = None,
                 view: View | None = None):
        self.color, self.width = color, width
        self.view = view or View(depth=depth)

    def _text(self, renderable: RenderableType) -> str:
        buffer = io.StringIO()
        console = Console(file=buffer, width=self.width or 80, force_terminal=self.color,
                          no_color=not self.color, highlight=False, soft_wrap=True,
                          color_system="standard" if self.color else None)
        console.print(renderable)
        return buffer.getvalue()

    def infer(self, outcome: InferOutcome) -> str:
        if outcome.result is None:
            return ""  # the diagnostics (on stderr) say it all
        return self._text(render_table(outcome.result, self.view, self.width))

    def gate(self, report: GateReport) -> str:
        return self._text(render_gate(report))

    def show(self, preview: Preview) -> str:
        return self._text(render_preview(preview, self.width))

    def weights(self, report: WeightsReport) -> str:
        if not report.compared:
            return ""  # the diagnostics (on stderr) say it all
        return self._text(render_weights(report))
