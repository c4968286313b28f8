"""One engine run on an editor's buffer, turned into plain data the language server can keep.

Runs in the analysis worker (see runner.py): `analyze(job)` builds the `Request` the CLI would
(`engine.run(Request(path, text=buffer, ...))`), with the inputs, scale, `--set` values and
allowlist of the file's `[[tool.lazyspec.run]]` entry in the nearest pyproject.toml, else the
shapes the spec declares under `inputs:`. What comes back holds no torch object: diagnostics,
node and parameter records, resolved params, op signatures, the files read.

Torch-free on import (the engine loads torch when it runs).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from lazyspec.errors import Diagnostic, Location, UsageError, shown
from lazyspec.fileio import resolved
from lazyspec.result import NodeRecord, ParamRecord

if TYPE_CHECKING:
    from lazyspec.engine import Outcome, Request
    from lazyspec.spec.model import Spec


@dataclass(frozen=True)
class Job:
    """One version of one document to analyse."""

    uri: str
    version: int
    path: str  # the document's file path: diagnostics name it, includes are read next to it
    text: str


@dataclass
class Analysis:
    """What one run found, located in the files it read."""

    uri: str
    version: int
    path: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    nodes: list[NodeRecord] = field(default_factory=list)
    params: list[ParamRecord] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)  # the model's params, resolved
    signatures: dict[str, str] = field(default_factory=dict)  # op name -> its signature
    sources: list[str] = field(default_factory=list)  # absolute paths of the files read
    inputs: str = ""  # what the dry run was given, said in words (for hover)
    seconds: float = 0.0


def analyze(job: Job) -> Analysis:
    """Run the engine on the buffer; never raises (an internal error becomes a diagnostic)."""
    started = time.perf_counter()
    found = Analysis(job.uri, job.version, job.path)
    try:
        _analyze(job, found)
    except Exception as e:  # lazyspec's own bug: shown in the editor, the server goes on
        found.diagnostics.append(Diagnostic(
            "LS303", f"internal error: {type(e).__name__}: {e}", Location(job.path, 1, 1),
            hint="this is a bug in lazyspec; `lazyspec infer` on the file shows the traceback "
            "with --traceback"))
    found.seconds = time.perf_counter() - started
    return found


def _analyze(job: Job, found: Analysis) -> None:
    from lazyspec import engine

    request, described = _request(job, found.diagnostics)
    found.inputs = described
    if not has_layers(job.text):  # an include-only file (params, blocks): parse it alone
        outcome = engine.run(replace(request, stage="parse"))
        problems = outcome.parsed.problems if outcome.parsed else []
        if any(d.code == "LS110" for d in problems) and not _declared(job.text):
            return  # not a spec at all (a CI workflow, a config): an editor sends every YAML
        found.diagnostics += [d for d in problems if d.code != "LS112"]
        found.sources = _absolute([*outcome.sources, *outcome.read])
        return
    try:
        outcome = engine.run(request)
    except UsageError as e:  # no shapes to run with, or run settings that do not fit
        found.diagnostics += _without_run(e, request)
        outcome = _compile_only(request)
    found.diagnostics += outcome.diagnostics
    _collect(outcome, found)


def _collect(outcome: Outcome, found: Analysis) -> None:
    found.sources = _absolute([*outcome.sources, *outcome.read])
    if outcome.result is not None:
        found.nodes, found.params = outcome.result.nodes, outcome.result.params
    if outcome.built is not None:
        found.values = {k: shown(v) for k, v in outcome.built.params.items()}
    if outcome.parsed is not None:
        found.signatures = signatures(outcome.parsed, outcome.built.options.allow
                                      if outcome.built is not None else ())


def _request(job: Job, notes: list[Diagnostic]) -> tuple[Request, str]:
    """The request `lazyspec check` would make for this file, and its inputs in words."""
    from lazyspec.config import Budgets, load_config
    from lazyspec.engine import Request
    from lazyspec.inputs import to_input
    from lazyspec.options import BuildOptions

    path = Path(job.path)
    try:
        config = load_config(start=path.parent)
    except UsageError as e:  # a broken pyproject.toml is not this file's fault: say so once
        first = e.diagnostics[0]
        notes.append(Diagnostic(first.code, f"{first.message} (this file is analysed without "
                                "[tool.lazyspec])", Location(job.path, 1, 1), hint=first.hint,
                                severity="warning"))
        return Request(job.path, text=job.text), "the shapes the spec declares"
    real = resolved(path)
    run = next((r for r in config.runs if r.spec == real), None)
    options = BuildOptions(allow=config.allow)
    if run is None:
        return (Request(job.path, text=job.text, options=options, budgets=config.budgets),
                "the shapes the spec declares under `inputs:`")
    options = BuildOptions(allow=config.allow, overrides=dict(run.sets), scale=run.scale)
    budgets: Budgets = config.budgets.merged(run.budgets)
    where = f"[[tool.lazyspec.run]] in {config.path}" if config.path else "the config"
    words = " ".join(run.inputs) + (f" scale={run.scale}" if run.scale else "")
    return (Request(job.path, text=job.text, inputs=tuple(to_input(i) for i in run.inputs),
                    options=options, budgets=budgets), f"{words} (from {where})")


def _without_run(error: UsageError, request: Request) -> list[Diagnostic]:
    """Why no dry run happened. A spec with no shapes at all is not wrong: it gets a note."""
    out = []
    for d in error.diagnostics:
        missing = not request.inputs and d.message.startswith("no shape for input")
        out.append(replace(
            d, location=d.location or Location(str(request.spec), 1, 1),
            severity="info" if missing else d.severity,
            hint=("to see shapes, declare them under `inputs:` or add a [[tool.lazyspec.run]] "
                  "for this file in pyproject.toml" if missing else d.hint)))
    return out


def _compile_only(request: Request) -> Outcome:
    """Compile without a dry run, for the static errors; with the default options if the
    run's own (an unknown scale) cannot build."""
    from lazyspec import engine
    from lazyspec.options import BuildOptions

    try:
        return engine.run(replace(request, inputs=(), stage="compile"))
    except UsageError:
        return engine.run(replace(request, inputs=(), stage="compile",
                                  options=BuildOptions(allow=request.options.allow)))


def has_layers(text: str) -> bool:
    """Whether the text is a model (a top-level `layers:`), not an include-only library."""
    return any(line.startswith("layers:") for line in text.splitlines())


def _declared(text: str) -> bool:
    """Whether the file says it is a lazyspec file (a top-level `lazyspec:` version)."""
    return any(line.startswith("lazyspec:") for line in text.splitlines())


def _absolute(paths: list[str]) -> list[str]:
    """The files a run read or tried to read (a missing include: saving it re-runs the spec)."""
    return list(dict.fromkeys(os.path.abspath(p) for p in paths))


def signatures(spec: Spec, allow: tuple[str, ...]) -> dict[str, str]:
    """`Name(arg, key=default)` with the first line of its docstring, for every op the spec
    calls and every block it defines."""
    from lazyspec.ops import OpLookupError, resolve

    out: dict[str, str] = {}
    for name, block in spec.blocks.items():
        args = ", ".join(f"{p.name}={shown(p.value, 30)}" for p in block.params.values())
        out[name] = f"{name}({args})  (a block of this spec, line {block.loc.line})"
    for name in sorted(_called(spec) - set(out)):
        try:
            op = resolve(name, allow)
        except OpLookupError:
            continue
        doc = (op.cls.__doc__ or "").strip().splitlines()
        signature = str(op.signature).removesuffix(" -> None")
        out[name] = f"{op.name}{signature}" + (f"  ({op.source}: {doc[0].strip()})"
                                                   if doc else f"  ({op.source})")
    return out


def _called(spec: Spec) -> set[str]:
    graphs = [spec.graph, *(b.graph for b in spec.blocks.values())]
    return {n.call.name for g in graphs for n in g.layers if n.call is not None}


def known_names() -> list[str]:
    """Every op name a spec may use without --allow (torch.nn classes and the built-in ops)."""
    from lazyspec.ops import known_names as names

    return sorted(set(names()))


__all__ = ["Analysis", "Job", "analyze", "has_layers", "known_names"]
