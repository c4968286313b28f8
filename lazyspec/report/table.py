"""The human report: nodes with their output shapes, parameters with their shapes, totals."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from lazyspec.report.text import (
    cost_lines,
    fmt_bytes,
    fmt_count,
    weights_cells,
    weights_header,
    weights_summary,
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


# Past this many rows rich's layout costs seconds (a 5,000-node spec): print plain aligned columns.
RICH_MAX_ROWS = 400


def _table(title: str | None, columns: list[tuple[str, str]],
           rows: list[tuple[str, ...]]) -> RenderableType:
    """A table in rich's SIMPLE_HEAD style; columns are (heading, "left" | "right"). Cells are
    shown escaped (names and paths come from specs, lock files and file names)."""
    rows = [tuple(visible(cell) for cell in row) for row in rows]
    if len(rows) <= RICH_MAX_ROWS:
        table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False)
        for heading, justify in columns:
            if justify == "right":
                table.add_column(heading, justify="right", no_wrap=True)
            else:
                table.add_column(heading, overflow="fold")
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))  # plain text: `[b, 256]` is no markup
        return table
    widths = [max(len(heading), *(len(r[i]) for r in rows))
              for i, (heading, _) in enumerate(columns)]

    def line(cells: tuple[str, ...]) -> str:
        return "   ".join(c.rjust(w) if j == "right" else c.ljust(w)
                          for c, w, (_, j) in zip(cells, widths, columns, strict=True)).rstrip()

    rule = "─" * (sum(widths) + 3 * (len(widths) - 1))
    out = [title or "", line(tuple(h for h, _ in columns)), rule]
    out += [line(r) for r in rows]
    return Text("\n".join(out) + "\n")


def render_table(result: InferResult, depth: int | None = None) -> RenderableType:
    title = result.name or result.spec
    inputs = ", ".join(f"{i.name} [{', '.join(map(str, i.shape))}] {i.dtype}"
                       for i in result.inputs)
    header = Text.assemble((visible(title), "bold"), f"  ({visible(result.spec)})\n",
                           visible(f"input: {inputs}   device: {result.device}   "
                                   f"dtype: {result.dtype}"))

    node_rows: list[tuple[str, ...]] = []
    for n in result.nodes:
        if depth is not None and n.depth >= depth:
            continue
        indent = "  " * n.depth
        label = n.path.rsplit(".", 1)[-1]
        op = n.op
        if n.skipped:
            op += f" (skipped: {n.skipped})"
        if n.shared_from:
            op += f" (shares {n.shared_from})"
        flops = "" if n.flops == 0 or n.skipped else fmt_count(n.flops)
        shape = n.symbolic or format_shape(n.output)
        node_rows.append((indent + label, op, shape, f"{n.params:,}" if n.params else "", flops))
    nodes = _table("Nodes", [("Node", "left"), ("Op", "left"), ("Output", "left"),
                             ("Params", "right"), ("FLOPs", "right")], node_rows)
    params = _table("Parameters", [("Parameter", "left"), ("Op", "left"), ("Shape", "left"),
                                   ("Count", "right"), ("Line", "right")],
                    [(p.path + (" *" if p.shared else ""), p.op, format_shape(p.shape),
                      f"{p.count:,}", _line(p.location)) for p in result.params])

    t = result.totals
    outputs = ", ".join(result.symbolic_outputs or [format_shape(o) for o in result.outputs])
    lines = [f"output: {outputs}"]
    if result.symbols:
        hints = ", ".join(f"{n}={v}" for n, v in result.symbols.items())
        lines.append(f"symbolic dims {', '.join(result.symbols)}; sizes, FLOPs and memory below "
                     f"are at {hints}")
    for more in result.more_runs:
        shapes = ", ".join(format_shape(i.shape) if len(more.inputs) == 1
                           else f"{i.name} {format_shape(i.shape)}" for i in more.inputs)
        lines.append(f"also at {shapes}: output "
                     f"{', '.join(format_shape(o) for o in more.outputs)} (same parameters)")
    lines += [
             f"parameters: {t.params:,} (trainable {t.trainable:,}), "
             f"{fmt_bytes(t.bytes)} at {result.dtype}"]
    if t.buffers:
        lines.append(f"buffers: {t.buffers:,} ({fmt_bytes(t.buffer_bytes)})")
    lines += cost_lines(result)
    marked = [p for p in result.params if p.shared]
    if marked:
        lines.append("* counted once: " + "; ".join(f"{p.path} {p.shared}" for p in marked))
    lines += result.notes
    return Group(header, nodes, params, _lines(lines))


def _lines(lines: list[str]) -> Text:
    """Plain lines under a table, each escaped: notes and diffs hold names from specs and locks."""
    return Text("\n".join(visible(line) for line in lines))


def render_gate(report: GateReport) -> RenderableType:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("Status", no_wrap=True)
    table.add_column("Spec", no_wrap=True)
    table.add_column("Run", overflow="fold")
    table.add_column("Params", justify="right", no_wrap=True)
    table.add_column("Output", overflow="fold")
    for o in report.outcomes:
        r = o.result
        status = o.status.upper() if o.status != "ok" else "ok"
        if o.lock_status in ("changed", "missing", "updated", "not-written"):
            status += f" ({o.lock_status.replace('-', ' ')})"
        status += _checkpoint_status(o)
        cells = (status, o.spec_key, o.key, f"{r.totals.params:,}" if r else "",
                 ", ".join(format_shape(x) for x in r.outputs) if r else "")
        table.add_row(*(Text(visible(cell)) for cell in cells))
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
    return Group(table, _lines(lines))


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


def _weights_table(rows: list[tuple[str, ...]]) -> RenderableType:
    """Rows never wrap: keys are searched for, shapes read across (a narrow terminal wraps the
    line instead)."""
    columns = [("Status", "left"), ("Key", "left"), ("Spec", "left"), ("Checkpoint", "left"),
               ("Line", "right")]
    if len(rows) > RICH_MAX_ROWS:
        return _table(None, columns, rows)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for heading, justify in columns:
        table.add_column(heading, justify="right" if justify == "right" else "left",
                         no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def render_weights(report: WeightsReport) -> RenderableType:
    """The keys that do not fit (every key fits: none), then counts, dtypes and the verdict."""
    parts: list[RenderableType] = [Text("\n".join(weights_header(report)))]
    if report.problems:
        parts.append(_weights_table([weights_cells(r) for r in report.problems]))
    parts.append(Text("\n".join(weights_summary(report))))
    return Group(*parts)


def render_preview(p: Preview) -> RenderableType:
    header = Text.assemble((visible(p.name or p.spec), "bold"), f"  ({visible(p.spec)})\n",
                           "before any input: ? is a size the first pass of data will fix")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("Parameter", overflow="fold")
    table.add_column("Op", overflow="fold")
    table.add_column("Shape", overflow="fold")
    table.add_column("Count", justify="right", no_wrap=True)
    table.add_column("Line", justify="right", no_wrap=True)
    for param in p.params:
        name = param.path + (f" (tied to {param.tied})" if param.tied else "")
        count = "?" if param.count is None else f"{param.count:,}"
        cells = (name, param.op, format_dims(param.shape), count, _line(param.location))
        table.add_row(*(Text(visible(cell)) for cell in cells))
    waiting = len(p.unknown)
    summary = (f"known now: {p.known_params:,} parameters; {waiting} of {len(p.params)} "
               "tensors wait for the input")
    return Group(header, table, Text(summary))


# Below this, a column that wraps is too narrow to read; rich would even drop it (width 0).
MIN_WRAPPED_WIDTH = 10


def _fitting_width(renderable: RenderableType, width: int) -> int:
    """`width`, or more where a table cannot fit in it without losing text: rich would cut
    statuses, counts and paths (the columns that never wrap) to `...` and drop wrapped columns
    whole. A line longer than a narrow terminal only wraps there."""
    need = 0
    parts = renderable.renderables if isinstance(renderable, Group) else [renderable]
    for table in parts:
        if not isinstance(table, Table):
            continue
        total = 3 * len(table.columns)  # padding and separators, generously
        for column in table.columns:
            cells = [column.header, *column.cells]
            widest = max((c.cell_len if isinstance(c, Text) else Text(str(c)).cell_len)
                         for c in cells)
            if column.no_wrap:
                column.min_width = widest
            total += widest if column.no_wrap else min(widest, MIN_WRAPPED_WIDTH)
        need = max(need, total)
    return max(width, need)


class TableReporter:
    """Human output; coloured only when asked (a terminal without NO_COLOR)."""

    machine = False

    def __init__(self, color: bool = False, width: int | None = None, depth: int | None = None):
        self.color, self.width, self.depth = color, width, depth

    def _text(self, renderable: RenderableType) -> str:
        buffer = io.StringIO()
        console = Console(file=buffer, width=_fitting_width(renderable, self.width or 80),
                          force_terminal=self.color, no_color=not self.color, highlight=False,
                          soft_wrap=False, color_system="standard" if self.color else None)
        console.print(renderable)
        return buffer.getvalue()

    def infer(self, outcome: InferOutcome) -> str:
        if outcome.result is None:
            return ""  # the diagnostics (on stderr) say it all
        return self._text(render_table(outcome.result, self.depth))

    def gate(self, report: GateReport) -> str:
        return self._text(render_gate(report))

    def show(self, preview: Preview) -> str:
        return self._text(render_preview(preview))

    def weights(self, report: WeightsReport) -> str:
        if not report.compared:
            return ""  # the diagnostics (on stderr) say it all
        return self._text(render_weights(report))
