"""Assertions on a dry-run result: the expected output shape, the parameter and byte budgets
(`--expect-output`, `--max-params`, `--max-bytes`). Torch-free."""

from __future__ import annotations

from lazyspec.config import Budgets
from lazyspec.errors import Diagnostic, Location
from lazyspec.result import InferResult


def check_budgets(result: InferResult, budgets: Budgets) -> list[Diagnostic]:
    """Assertions on a dry-run result; each failure is an LS21x diagnostic."""
    problems = []
    where = Location(result.spec, 1, 1)
    last = result.nodes[-1].location if result.nodes else where
    if budgets.expect_output is not None:
        got = result.outputs[0] if result.outputs else None
        want = tuple(budgets.expect_output)
        if got != want:
            shown = "[" + ", ".join(map(str, got)) + "]" if isinstance(got, tuple) else str(got)
            hint = None
            if isinstance(got, tuple) and len(got) > len(want):
                hint = "the output has more dimensions than expected: a forgotten Flatten?"
            problems.append(Diagnostic(
                "LS210", f"output shape {shown} differs from the expected "
                f"[{', '.join(map(str, want))}]", last, hint=hint))
    t = result.totals
    if budgets.max_params is not None and t.params > budgets.max_params:
        problems.append(Diagnostic(
            "LS211", f"{t.params:,} parameters exceed the budget of {budgets.max_params:,}",
            where, hint="shrink the model or raise --max-params"))
    if budgets.max_bytes is not None and t.bytes > budgets.max_bytes:
        problems.append(Diagnostic(
            "LS212", f"{t.bytes:,} bytes of parameters at {result.dtype} exceed the budget of "
            f"{budgets.max_bytes:,}", where, hint="shrink the model, use a smaller --dtype or "
            "raise --max-bytes"))
    return problems
