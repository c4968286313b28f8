"""Plain-text pieces that the table and Markdown reports share: sizes, counts, cost lines.
No rich, no torch."""

from __future__ import annotations

from lazyspec.result import InferResult


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
