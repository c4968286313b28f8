"""Reports: one module per output format, picked from REPORTERS. Each turns plain results into
text; none prints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from lazyspec.gate import GateReport
    from lazyspec.preview import Preview
    from lazyspec.report.view import View
    from lazyspec.result import InferOutcome
    from lazyspec.weights import WeightsReport


class Reporter(Protocol):
    machine: bool  # machine formats are never coloured

    def infer(self, outcome: InferOutcome) -> str: ...

    def gate(self, report: GateReport) -> str: ...

    def show(self, preview: Preview) -> str: ...

    def weights(self, report: WeightsReport) -> str: ...


FORMATS = ("table", "json", "markdown", "github")  # infer, show, check, lock, weights reports
GRAPH_FORMATS = ("mermaid", "dot")  # `lazyspec graph` diagrams (report/graph_text.py)


def reporter(name: str, color: bool = False, width: int | None = None,
             depth: int | None = None, view: View | None = None) -> Reporter:
    """The reporter of format `name`. `view` (what the human formats show: report/view.py)
    overrides `depth`; JSON and github ignore both."""
    if view is None:
        from lazyspec.report.view import View

        view = View(depth=depth)
    if name == "table":
        from lazyspec.report.table import TableReporter

        return TableReporter(color=color, width=width, view=view)
    if name == "json":
        from lazyspec.report.jsonout import JsonReporter

        return JsonReporter()
    if name == "markdown":
        from lazyspec.report.markdown import MarkdownReporter

        return MarkdownReporter(view)
    if name == "github":
        from lazyspec.report.github import GithubReporter

        return GithubReporter()
    raise ValueError(name)
