"""Plain-text pieces that the table and Markdown reports share: sizes, counts, cost lines.
No rich, no torch."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from lazyspec.result import InferResult

if TYPE_CHECKING:
    from lazyspec.weights import KeyRow, WeightsReport


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def fmt_count(n: float | None) -> str:
    """1,814,073,344 -> 1.81G; None (unknown) -> ?"""
    if n is None:
        return "?"
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def params_total(result: InferResult) -> str:
    """`11,689,512 (non-trainable 0), 44.6 MiB at float32`: every report's total."""
    t = result.totals
    return (f"{t.params:,} (non-trainable {t.non_trainable:,}), {fmt_bytes(t.bytes)} at "
            f"{result.dtype}")


def summary_lines(result: InferResult) -> list[str]:
    """The lines under the tables, the same in table and Markdown: outputs, other input sets,
    parameters and buffers, FLOPs and memory, what is counted once, the run's notes."""
    from lazyspec.shapes import format_shape

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
    lines.append(f"parameters: {params_total(result)}")
    if t.buffers:
        lines.append(f"buffers: {t.buffers:,} ({fmt_bytes(t.buffer_bytes)})")
    lines += cost_lines(result)
    marked = [p for p in result.params if p.shared]
    if marked:
        lines.append("* counted once: " + "; ".join(f"{p.path} {p.shared}" for p in marked))
    return lines + result.notes


def cost_lines(result: InferResult) -> list[str]:
    """FLOPs and memory totals, as plain lines (table and Markdown share them)."""
    t = result.totals
    flops = f"{fmt_count(t.flops)} ({fmt_count(t.macs)} multiply-accumulates)"
    if t.unknown_ops:
        flops = f"at least {flops}; not counted: {', '.join(t.unknown_ops)}"
    lines = [f"FLOPs: {flops}", f"activations: {fmt_bytes(t.activation_bytes)}",
             f"training memory estimate: {fmt_bytes(t.training_bytes)} "
             "(params + grads + Adam + activations)"]
    run = result.run
    if run is not None:
        peak = "unknown" if run.peak_bytes is None else fmt_bytes(run.peak_bytes)
        what = "peak allocated" if result.device.startswith("cuda") else "peak RSS"
        free = "" if run.available_bytes is None else f" of {fmt_bytes(run.available_bytes)} free"
        lines.append(f"{result.device} run: traced forward {run.forward_seconds * 1e3:,.0f} ms; "
                     f"{what} {peak}; estimated {fmt_bytes(run.estimate_bytes)}{free}")
    return lines


# --- `lazyspec weights` and the gate's checkpoints: what table and Markdown share ----------------


def weights_header(report: WeightsReport) -> list[str]:
    """What was compared: the spec (at which input), the checkpoint, the layout declared."""
    from lazyspec.shapes import format_shape

    files = f"{len(report.files)} files" if len(report.files) > 1 else "1 file"
    lines = [f"{report.spec} vs {report.checkpoint} ({report.format or '?'}, {files})"]
    if report.inputs:
        lines.append("spec materialised at: " + ", ".join(
            f"{i.name} {format_shape(i.shape)} {i.dtype}" for i in report.inputs))
    if report.layout.flags():
        lines.append("layout: " + " ".join(report.layout.flags()))
    return lines


def weights_cells(row: KeyRow) -> tuple[str, str, str, str, str]:
    """Status, key, spec shape, checkpoint shape, spec line of one row."""
    from lazyspec.shapes import format_shape

    key = row.name
    if row.status == "unexpected" and row.stored is not None and row.stored.name != row.name:
        key += f" (stored as {row.stored.name})"  # the name to look for in the file
    spec = f"{format_shape(row.expected.shape)} {row.expected.dtype}" if row.expected else "-"
    stored = "-"
    if row.stored is not None:
        stored = f"{format_shape(row.stored.shape)} {row.stored.dtype}"
        stored += " (transposed)" if row.transposed else ""
    line = str(row.location.line) if row.location is not None else ""
    return (row.status, key, spec, stored, line)


def weights_summary(report: WeightsReport) -> list[str]:
    """Counts, dtypes, notes and the verdict."""
    if not report.compared:
        return [f"not compared: the spec failed (exit {report.exit_code})"]
    counts = report.counts()
    lines = [f"{len(report.rows):,} keys: {counts['ok']:,} fit, {counts['missing']:,} missing, "
             f"{counts['unexpected']:,} unexpected, {counts['mismatch']:,} shape mismatch(es)"
             + (f", {counts['ignored']:,} ignored" if counts["ignored"] else "")]
    spec, stored = report.dtypes()
    lines.append(f"dtypes: spec {_tally(spec)}; checkpoint {_tally(stored)}")
    lines += [f"note: {n}" for n in report.notes]
    rows = [r for r in report.problems if r.note]
    lines += [f"note: {r.name}: {r.note}" for r in rows]
    lines.append("fits: load_state_dict(strict=True) would take it" if report.fits else
                 "does not fit: load_state_dict(strict=True) would fail")
    return lines


def _tally(counts: Counter[str]) -> str:
    return ", ".join(f"{dtype} ({n:,})" for dtype, n in counts.most_common()) or "none"
