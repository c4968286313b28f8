"""The CI gate: run specs, hold them to budgets and to the lock file, collect outcomes.

`check` and `lock` both go through `run_all`; neither prints. torch loads once per process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lazyspec import lock as lockfile
from lazyspec.config import Budgets, Config, RunConfig
from lazyspec.errors import Diagnostic, LazyspecError, Location, SpecError, UsageError
from lazyspec.inputs import parse_input, to_input
from lazyspec.result import InferResult, as_lists

SPEC_SUFFIXES = (".yaml", ".yml")


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


@dataclass
class Outcome:
    """One spec at one input set, after the run and the comparisons."""

    spec: Path
    spec_key: str  # the spec's path as the lock file names it
    key: str
    run: RunConfig
    result: InferResult | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)  # readable lock differences
    lock_status: str = "ok"  # ok | changed | missing | updated | not-checked
    ran: list[str] | None = None

    @property
    def exit_code(self) -> int:
        codes = [d.exit_code for d in self.diagnostics]
        if self.lock_status in ("changed", "missing"):
            codes.append(1)
        return max(codes, default=0)

    @property
    def status(self) -> str:
        return {0: "ok", 1: "fail", 2: "error"}[self.exit_code]

    def entry(self) -> lockfile.LockEntry | None:
        if self.result is None:
            return None
        r = self.result
        return lockfile.LockEntry(
            spec=self.spec_key, key=self.key, inputs=list(self.run.inputs),
            outputs=[as_lists(o) for o in r.outputs], total=r.totals.params,
            params={p.path: list(p.shape) for p in r.params},
            scale=self.run.scale, sets=dict(self.run.sets))


@dataclass
class GateReport:
    lock_path: Path
    outcomes: list[Outcome]
    unused: list[lockfile.LockEntry] = field(default_factory=list)
    wrote_lock: bool = False
    command: str = "check"
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        codes = [o.exit_code for o in self.outcomes] + [1 for _ in self.unused]
        return max(codes, default=0)


def discover(paths: Sequence[Path]) -> list[Path]:
    """Spec files under the given files and folders; a folder's YAML files without `layers:`
    (include-only libraries) are skipped."""
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.suffix in SPEC_SUFFIXES and f.is_file() and _has_layers(f):
                    found.append(f)
        else:
            found.append(p)  # named explicitly: always checked, even if unreadable
    unique: dict[Path, Path] = {}
    for f in found:  # reports and GitHub annotations want paths relative to the working folder
        unique.setdefault(f.resolve(), _shown(f))
    return list(unique.values())


def _has_layers(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return True  # let the run report it
    return any(line.startswith("layers:") for line in text.splitlines())


def spec_key(spec: Path, root: Path) -> str:
    """The spec's path as the lock names it: relative to the lock's folder, with `/`, so that
    the lock means the same on every machine (`../other/spec.yaml` outside it)."""
    try:
        return Path(os.path.relpath(spec.resolve(), root.resolve())).as_posix()
    except ValueError:  # another drive on Windows: no relative path exists
        return spec.resolve().as_posix()


@dataclass(frozen=True)
class GateOptions:
    device: str = "meta"
    dtype: str = "float32"
    allow: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()  # --input: one run per spec with these
    scale: str | None = None
    sets: tuple[tuple[str, Any], ...] = ()
    budgets: Budgets = field(default_factory=Budgets)
    max_op_tensors: int | None = None  # --max-op-tensors; None: the build's default


def plan(specs: list[Path], config: Config, options: GateOptions,
         locked: list[lockfile.LockEntry]) -> list[tuple[Path, RunConfig]]:
    """Which runs to do: --input flags, else config runs, else the lock's entries, else the
    spec's declared inputs."""
    runs: list[tuple[Path, RunConfig]] = []
    for spec in specs:
        key = spec_key(spec, config.root)
        resolved = spec.resolve()
        if options.inputs:
            # written the way the lock writes them, so `[2, 20]` and `2,20` are one run
            chosen = [RunConfig(resolved, tuple(str(parse_input(i)) for i in options.inputs))]
        else:
            configured = [r for r in config.runs if r.spec == resolved]
            from_lock = [RunConfig(resolved, tuple(e.inputs), e.scale,
                                   tuple(sorted(e.sets.items())))
                         for e in locked if e.spec == key]
            chosen = configured or from_lock or [RunConfig(resolved, ())]
        if options.scale or options.sets:  # flags change the params of every planned run
            chosen = [replace(r, scale=options.scale or r.scale,
                              sets=tuple(sorted({**dict(r.sets), **dict(options.sets)}.items())))
                      for r in chosen]
        runs.extend((spec, r) for r in chosen)
    return runs


def run_one(spec: Path, run: RunConfig, key_root: Path, options: GateOptions,
            config: Config) -> Outcome:
    from lazyspec import dryrun
    from lazyspec.compile import BuildOptions
    from lazyspec.spec.parse import parse_file

    outcome = Outcome(spec, spec_key(spec, key_root),
                      lockfile.run_key(run.inputs, run.scale, run.sets), run)
    try:
        parsed = parse_file(spec)
        build_options = BuildOptions(
            device=options.device, dtype=options.dtype, allow=config.allow + options.allow,
            overrides=dict(run.sets), scale=run.scale,
            **({} if options.max_op_tensors is None else
               {"max_op_tensors": options.max_op_tensors}))
        outcome.result = dryrun.infer(parsed, build_options, [to_input(i) for i in run.inputs])
    except LazyspecError as e:
        for d in e.diagnostics:  # in a report of many specs, every problem names its spec
            if isinstance(e, UsageError):
                d.message = f"{spec}: {d.message}"  # the flags' fault, not the spec's line 1
            else:
                d.location = d.location or Location(str(spec), 1, 1)
        outcome.diagnostics.extend(e.diagnostics)
        outcome.ran = getattr(e, "ran", None)
        return outcome
    budgets = config.budgets.merged(run.budgets).merged(options.budgets)
    outcome.diagnostics.extend(check_budgets(outcome.result, budgets))
    return outcome


def run_all(paths: Sequence[Path], config: Config, options: GateOptions, *, update: bool,
            lock_path: Path) -> GateReport:
    """Run every spec, compare with the lock; with `update`, rewrite the lock atomically."""
    specs = discover(list(paths) or config.specs)
    if not specs:
        raise UsageError([Diagnostic("LS301", "no specs to check",
                                     hint="name spec files or folders, or set `specs` under "
                                     "[tool.lazyspec]")])
    key_root = lock_path.parent
    report = GateReport(_shown(lock_path), [], command="lock" if update else "check")
    try:
        locked = lockfile.read(lock_path)
    except UsageError as e:
        if not update:
            raise
        # `lock` is how a broken lock file (a merge conflict, say) gets fixed: start afresh.
        locked = []
        report.notes.append(f"the old lock file could not be read and is replaced: "
                            f"{e.diagnostics[0].message}")
    for spec, run in plan(specs, config, options, locked):
        report.outcomes.append(run_one(spec, run, key_root, options, config))
    by_ident = {e.ident: e for e in locked}
    seen: set[tuple[str, str]] = set()
    for o in report.outcomes:
        seen.add((o.spec_key, o.key))
        new = o.entry()
        if new is None:
            o.lock_status = "not-checked"
            continue
        old = by_ident.get(new.ident)
        if update:
            o.lock_status = "updated" if old is None or lockfile.diff(old, new) else "ok"
        elif old is None:
            o.lock_status = "missing"
            o.drift = [f"no lock entry for {o.spec_key} [{o.key}]: run `lazyspec lock`"]
        else:
            o.drift = lockfile.diff(old, new)
            o.lock_status = "changed" if o.drift else "ok"
    scope = [spec_key(p, key_root) for p in (list(paths) or config.specs)]
    stale = [e for e in locked if e.ident not in seen and _in_scope(e.spec, scope, key_root)]
    if update:
        report.wrote_lock = _update_lock(lock_path, locked, report, stale)
    else:
        report.unused = stale
    return report


def _in_scope(entry_spec: str, scope: list[str], key_root: Path) -> bool:
    """Whether a lock entry belongs to the specs checked now: a spec named, or one under a folder
    named (also when its file is gone: a deleted spec leaves an unused entry)."""
    for s in scope:
        if entry_spec == s or entry_spec.startswith(s.rstrip("/") + "/"):
            return True
        if (key_root / s).is_dir() and s in (".", ""):
            return True
    return False


def _shown(path: Path) -> Path:
    """A path as the user would write it: relative to the working folder when inside it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def _update_lock(path: Path, locked: list[lockfile.LockEntry], report: GateReport,
                 stale: list[lockfile.LockEntry]) -> bool:
    """Keep entries of specs not run this time; replace those that were; drop stale ones."""
    if any(o.exit_code for o in report.outcomes):
        return False  # never write a lock from a failing run (spec error or budget)
    checked = {o.spec_key for o in report.outcomes}
    dropped = {e.ident for e in stale}
    kept = [e for e in locked if e.spec not in checked and e.ident not in dropped]
    fresh = [e for e in (o.entry() for o in report.outcomes) if e is not None]
    lockfile.write(path, kept + fresh)
    return True


__all__ = ["GateOptions", "GateReport", "Outcome", "SpecError", "check_budgets", "run_all"]
