"""The one pipeline every entry point runs: a request in, an outcome out.

    file or text -> Spec (parse) -> Built (compile) -> InferResult (dry run) -> Outcome

The CLI commands, the gate, the Python API, `graph` and `export` all call `run()`. It keeps no
state between calls, so a long-running process (a watcher, a language server) can call it any
number of times: every call reads the spec (and its includes) again.

"Already reported" has one rule: a problem becomes a Diagnostic once, where it is found, and
whatever depends on the failed piece stays silent (see `lazyspec.errors`). The outcome then
holds the error that stopped the pipeline, or the result and the budgets it failed.
A request that cannot run at all (a bad option, an unknown scale, an unavailable device, input
flags that do not fit the model) raises UsageError instead: that is the caller's to report.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from lazyspec import progress
from lazyspec.config import Budgets
from lazyspec.errors import Diagnostic, DryRunError, LazyspecError, UsageError
from lazyspec.inputs import InputShape
from lazyspec.options import BuildOptions
from lazyspec.result import InferOutcome, InferResult, InputRecord, MoreRun
from lazyspec.spec.model import Spec

if TYPE_CHECKING:
    from lazyspec.compile import Built

Stage = Literal["parse", "compile", "run"]


@dataclass(frozen=True)
class Request:
    """What to do with one spec."""

    spec: str | os.PathLike[str]  # the spec file; with `text`, the path its diagnostics name
    text: str | None = None  # the spec's text when it is not read from disk (an editor buffer)
    inputs: tuple[InputShape, ...] = ()  # input sets, as `--input` flags give them
    options: BuildOptions = field(default_factory=BuildOptions)
    budgets: Budgets = field(default_factory=Budgets)
    stage: Stage = "run"  # where to stop: after parsing, after compiling, or after the dry run
    symbolic: bool = True  # named input dims: also run the symbolic pass (`weights` needs not)


@dataclass
class Outcome:
    """What a request produced: as far as the pipeline got, and why it stopped."""

    spec: str
    sources: dict[str, str] = field(default_factory=dict)  # every file read, for error carets
    read: set[str] = field(default_factory=set)  # every file it tried to read (for --watch)
    parsed: Spec | None = None
    built: Built | None = None  # compiled; materialised once the dry run has gone through
    result: InferResult | None = None
    error: LazyspecError | None = None  # what stopped the pipeline: the spec's fault
    findings: list[Diagnostic] = field(default_factory=list)  # warnings, failed budgets

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return [*(self.error.diagnostics if self.error else []), *self.findings]

    @property
    def ran(self) -> list[str] | None:
        """Nodes that ran before the one that failed (a failed dry run only)."""
        return self.error.ran if isinstance(self.error, DryRunError) else None

    @property
    def exit_code(self) -> int:
        return max((d.exit_code for d in self.diagnostics), default=0)

    def raise_error(self) -> None:
        """Raise what stopped the pipeline (the API and `export` want exceptions)."""
        if self.error is not None:
            raise self.error

    def report(self) -> InferOutcome:
        """The plain data that the reports read."""
        return InferOutcome(self.spec, self.result, self.diagnostics, self.ran)


def run(request: Request) -> Outcome:
    """Run the pipeline up to `request.stage`. Spec and dry-run errors end up in the outcome;
    a request that cannot run raises UsageError."""
    outcome = Outcome(str(request.spec), read={str(request.spec)})
    progress.note(f"{request.spec}: reading")
    try:
        outcome.parsed = parse(request, outcome.sources)
        outcome.read.update(outcome.parsed.read)
        if request.stage == "parse":  # its problems are in outcome.parsed.problems
            return outcome
        with _gc_paused():
            _compile_and_run(request, outcome)
    except UsageError:
        raise
    except LazyspecError as e:
        outcome.error = e
    return outcome


def _compile_and_run(request: Request, outcome: Outcome) -> None:
    from lazyspec.budgets import check_budgets
    from lazyspec.compile import build

    assert outcome.parsed is not None
    if request.stage == "compile":
        outcome.built = build(outcome.parsed, request.options)
        outcome.findings = list(outcome.built.warnings)
        return
    outcome.built, outcome.result = _dry_run(outcome.parsed, request.options, request.inputs,
                                             request.symbolic)
    outcome.findings = [*outcome.built.warnings,
                        *check_budgets(outcome.result, request.budgets)]


def _dry_run(spec: Spec, options: BuildOptions, given: Sequence[InputShape],
             symbolic: bool = True) -> tuple[Built, InferResult]:
    """Compile and dry-run. Several input sets run in turn on the module the first one
    materialised (D2L 6.4, exercise 3), and a later set that its parameters cannot take fails
    at the node."""
    from lazyspec.inputs import split_runs

    first, *later = split_runs(spec, given)
    built, result = _first_run(spec, options, first, symbolic)
    if later and options.device != "meta":
        _check_later_runs_fit(spec, options, first, later)
    for inputs in later:
        result.more_runs.append(_later_run(built, result, inputs))
    return built, result


def _first_run(spec: Spec, options: BuildOptions, given: Sequence[InputShape],
               symbolic: bool = True) -> tuple[Built, InferResult]:
    """Compile and run one input set; the module comes back materialised. On a real device, a
    `meta` pass first estimates the memory the run needs, and a run that would not fit in the
    device's free memory is refused (exit 2)."""
    from lazyspec import dryrun, memory
    from lazyspec.compile import build

    progress.note(f"{spec.path}: compiling")
    if options.device == "meta":
        built = build(spec, options)
        _nodes(built, "dry run")
        return built, dryrun.run(built, given, symbolic)
    planned = dryrun.run(build(spec, replace(options, device="meta")), given)
    estimate = memory.forward_bytes(planned)
    available = memory.refuse_if_too_large(estimate, options.device)
    if options.device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(torch.device(options.device))
    built = build(spec, options)
    _nodes(built, f"dry run on {options.device}")
    result = dryrun.run(built, given, symbolic)
    if result.run is not None:
        result.run.estimate_bytes, result.run.available_bytes = estimate, available
    return built, result


def _nodes(built: Built, what: str) -> None:
    progress.note(f"{built.spec.path}: {len(built.nodes):,} nodes: {what}")


def _later_run(built: Built, first: InferResult, inputs: Sequence[InputShape]) -> MoreRun:
    """A later input set, through the parameters the first one fixed."""
    from lazyspec import dryrun

    try:
        done = dryrun.forward(built, inputs)
    except DryRunError as e:
        shapes = ", ".join(f"{i.name} {list(i.shape)}" for i in first.inputs)
        for d in e.diagnostics:
            d.notes.append(f"its parameters were fixed by the first input ({shapes}): a lazy "
                           "layer takes the sizes of the first data it sees")
            d.hint = ("every input set must fit the sizes the first one fixed; to compare "
                      "shapes that need different parameters, run them separately")
        raise
    return MoreRun([InputRecord(b.name, b.shape, b.dtype) for b in done.bound], done.outputs)


def _check_later_runs_fit(spec: Spec, options: BuildOptions, first: Sequence[InputShape],
                          later: Sequence[Sequence[InputShape]]) -> None:
    """Each later input set on a real device is estimated on `meta` first, as the first one is.
    A set that fails on `meta` fails at its node in the real run too, after its inputs are made:
    those must fit."""
    import math

    from lazyspec import dryrun, memory
    from lazyspec.compile import build
    from lazyspec.inputs import DTYPES, bind_inputs
    from lazyspec.summarize import summarize

    planned = build(spec, replace(options, device="meta"))
    dryrun.forward(planned, first)
    for inputs in later:
        bound = bind_inputs(spec, planned.params, planned.options.dtype, inputs)
        needed = sum(math.prod(b.shape) * DTYPES[b.dtype][1] for b in bound)
        try:
            done = dryrun.forward(planned, inputs)
            needed = memory.forward_bytes(summarize(planned, done.bound, done.outputs,
                                                    done.tracer))
        except DryRunError:
            pass  # the real run reports it, with the first input's context
        memory.refuse_if_too_large(int(needed), options.device)


def parse(request: Request, sources: dict[str, str] | None = None) -> Spec:
    """Read and parse the spec with its includes; `sources` collects every text read. Problems
    are collected in `spec.problems`; a file that cannot be read raises."""
    from lazyspec.spec.parse import parse_file

    spec = parse_file(Path(request.spec), text=request.text)
    if sources is not None:
        sources.update(spec.sources)
    return spec


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """With torch loaded, the cyclic GC rescans torch's many objects again and again while a
    large spec compiles, which makes compiling superlinear in nodes. Pause it for one run only:
    a long-running process gets it back between runs."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
