"""The CI gate: run specs, hold them to budgets and to the lock file, collect outcomes.

`check` and `lock` both go through `run_all`; neither prints. torch loads once per process.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lazyspec import lock as lockfile
from lazyspec.config import Budgets, Config, RunConfig
from lazyspec.errors import CheckpointError, Diagnostic, Location, UsageError
from lazyspec.fileio import resolved
from lazyspec.inputs import parse_input, to_input
from lazyspec.result import InferResult
from lazyspec.shapes import as_lists
from lazyspec.weights import WeightsReport

if TYPE_CHECKING:
    from lazyspec import engine

if TYPE_CHECKING:
    from lazyspec.parallel import Pool

SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass
class RunOutcome:
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
    sources: dict[str, str] = field(default_factory=dict)  # texts its diagnostics point into
    read: set[str] = field(default_factory=set)  # files the run tried to read (--watch)
    checkpoint: WeightsReport | None = None  # the run's `checkpoint`, when `check` compared it

    @property
    def exit_code(self) -> int:
        codes = [d.exit_code for d in self.diagnostics]
        if self.lock_status in ("changed", "missing"):
            codes.append(1)
        if self.checkpoint is not None and not self.checkpoint.fits:
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
            scale=self.run.scale, sets=dict(self.run.sets), trainable=r.totals.trainable)


@dataclass
class GateReport:
    lock_path: Path
    outcomes: list[RunOutcome]
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
        unique.setdefault(resolved(f), _shown(f))
    return list(unique.values())


def _has_layers(path: Path) -> bool:
    from lazyspec.fileio import read_capped
    from lazyspec.spec.yamlload import MAX_FILE_BYTES

    try:
        text = read_capped(path, MAX_FILE_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return True  # let the run report it (too large, unreadable)
    return any(line.startswith("layers:") for line in text.splitlines())


def spec_key(spec: Path, root: Path) -> str:
    """The spec's path as the lock names it: relative to the lock's folder, with `/`, so that
    the lock means the same on every machine (`../other/spec.yaml` outside it)."""
    try:
        return Path(os.path.relpath(resolved(spec), resolved(root))).as_posix()
    except ValueError:  # another drive on Windows: no relative path exists
        return resolved(spec).as_posix()


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
    checkpoints: bool = True  # compare the runs' checkpoints (`check`; `lock` does not)


def plan(specs: list[Path], config: Config, options: GateOptions,
         locked: list[lockfile.LockEntry]) -> list[tuple[Path, RunConfig]]:
    """Which runs to do: --input flags, else config runs, else the lock's entries, else the
    spec's declared inputs."""
    runs: list[tuple[Path, RunConfig]] = []
    for spec in specs:
        key = spec_key(spec, config.root)
        real = resolved(spec)
        if options.inputs:
            # written the way the lock writes them, so `[2, 20]` and `2,20` are one run
            chosen = [RunConfig(real, tuple(str(parse_input(i)) for i in options.inputs))]
        else:
            configured = [r for r in config.runs if r.spec == real]
            from_lock = [RunConfig(real, tuple(e.inputs), e.scale,
                                   tuple(sorted(e.sets.items())))
                         for e in locked if e.spec == key]
            chosen = configured or from_lock or [RunConfig(real, ())]
        if options.scale or options.sets:  # flags change the params of every planned run
            chosen = [replace(r, scale=options.scale or r.scale,
                              sets=tuple(sorted({**dict(r.sets), **dict(options.sets)}.items())))
                      for r in chosen]
        runs.extend((spec, r) for r in chosen)
    return runs


def run_one(spec: Path, run: RunConfig, key_root: Path, options: GateOptions,
            config: Config) -> RunOutcome:
    from lazyspec import engine
    from lazyspec.options import BuildOptions

    outcome = RunOutcome(spec, spec_key(spec, key_root),
                         lockfile.run_key(run.inputs, run.scale, run.sets), run)
    request = engine.Request(
        spec, inputs=tuple(to_input(i) for i in run.inputs),
        options=BuildOptions(device=options.device, dtype=options.dtype,
                             allow=config.allow + options.allow, overrides=dict(run.sets),
                             scale=run.scale,
                             **({} if options.max_op_tensors is None else
                                {"max_op_tensors": options.max_op_tensors})),
        budgets=config.budgets.merged(run.budgets).merged(options.budgets))
    try:
        done = engine.run(request)
    except UsageError as e:  # the flags' fault, not the spec's line 1
        for d in e.diagnostics:  # in a report of many specs, every problem names its spec
            d.message = f"{spec}: {d.message}"
        outcome.diagnostics.extend(e.diagnostics)
        return outcome
    for d in done.diagnostics:
        d.location = d.location or Location(str(spec), 1, 1)
    outcome.result = done.result if done.error is None else None
    outcome.diagnostics.extend(done.diagnostics)
    outcome.ran, outcome.sources = done.ran, done.sources
    outcome.read = done.read
    if run.checkpoint is not None and options.checkpoints and outcome.result is not None:
        _check_checkpoint(outcome, done, spec)
    return outcome


def _check_checkpoint(outcome: RunOutcome, done: engine.Outcome, spec: Path) -> None:
    """The run's checkpoint against the module the run materialised, from its header alone; a
    checkpoint that cannot be read is this run's error (exit 2), not the whole gate's."""
    from lazyspec.checkpoint import read_checkpoint
    from lazyspec.weights import check

    assert outcome.run.checkpoint is not None
    try:
        path = str(_shown(Path(outcome.run.checkpoint)))  # as reports name files
        outcome.checkpoint = check(done, read_checkpoint(path), outcome.run.layout)
    except CheckpointError as e:
        for d in e.diagnostics:
            d.message = f"{spec}: {d.message}"
        outcome.diagnostics.extend(e.diagnostics)


def _key_root(lock_path: Path) -> Path:
    """The folder the lock's spec keys are relative to: the lock file's own, so a lock reached
    through a link in another folder (`alt/link.lock -> ../lazyspec.lock`) holds the same keys
    as the file it is (its write replaces the link's target)."""
    try:
        if lock_path.is_symlink() and (target := resolved(lock_path)).is_file():
            return target.parent
    except OSError:  # a link loop: the read or the write says so
        pass
    return lock_path.parent


def run_all(paths: Sequence[Path], config: Config, options: GateOptions, *, update: bool,
            lock_path: Path, force: bool = False, jobs: int = 1,
            pool: Pool | None = None) -> GateReport:
    """Run every spec, compare with the lock; with `update`, merge this run's entries into the
    lock file under an OS lock and rewrite it atomically. With `jobs` > 1 (or a `pool` kept
    by the caller) the runs go to warm worker processes; everything else stays here."""
    specs = discover(list(paths) or config.specs)
    if not specs:
        raise UsageError([Diagnostic("LS301", "no specs to check",
                                     hint="name spec files or folders, or set `specs` under "
                                     "[tool.lazyspec]")])
    key_root = _key_root(lock_path)
    scope = [spec_key(p, key_root) for p in (list(paths) or config.specs)]
    report = GateReport(_shown(lock_path), [], command="lock" if update else "check")
    if update:  # refused before any work: a file that is not a lock, an unresolvable conflict
        state = lockfile.read_for_update(lock_path, force)
        _refuse_conflicts(state, scope, key_root, lock_path, force)
        locked = state.entries
    else:
        locked = lockfile.read(lock_path)
    run_options = replace(options, checkpoints=False) if update else options
    report.outcomes = _run_planned(plan(specs, config, options, locked), key_root, run_options,
                                   config, locked, jobs, pool)
    if update:
        _update_lock(lock_path, report, scope, key_root, force, state)
        return report
    report.unused = _compare(report, locked, scope, key_root)
    return report


def _run_planned(planned: list[tuple[Path, RunConfig]], key_root: Path, options: GateOptions,
                 config: Config, locked: list[lockfile.LockEntry], jobs: int,
                 pool: Pool | None) -> list[RunOutcome]:
    """Every planned run, in plan order: here, or in worker processes. Each run's outcome is
    plain data, so the reports, the lock comparison and the lock write cannot tell the two
    apart."""
    calls = [(spec, run, key_root, options, config) for spec, run in planned]
    if pool is None and (jobs <= 1 or len(calls) <= 1):
        return [run_one(*call) for call in calls]
    from lazyspec.parallel import Pool

    # The lock's parameter rows per spec guess which runs are long (a large model has many),
    # so that they start first.
    rows: dict[str, int] = {}
    for e in locked:
        rows[e.spec] = rows.get(e.spec, 0) + len(e.params)
    costs = [rows.get(spec_key(spec, key_root), 0) for spec, _ in planned]
    if pool is not None:
        return pool.map(run_one, calls, costs)
    with Pool(min(jobs, len(calls))) as own:
        return own.map(run_one, calls, costs)


def _compare(report: GateReport, locked: list[lockfile.LockEntry], scope: list[str],
             key_root: Path) -> list[lockfile.LockEntry]:
    """Each run's lock status against `locked`; returns the entries in scope no run produced."""
    by_ident = {e.ident: e for e in locked}
    seen = {(o.spec_key, o.key) for o in report.outcomes}
    for o in report.outcomes:
        new = o.entry()
        if new is None:
            o.lock_status = "not-checked"
            continue
        old = by_ident.get(new.ident)
        if report.command == "lock":
            o.lock_status = "updated" if old is None or lockfile.diff(old, new) else "ok"
        elif old is None:
            o.lock_status = "missing"
            o.drift = [f"no lock entry for {o.spec_key} [{o.key}]: run `lazyspec lock`"]
        else:
            o.drift = lockfile.diff(old, new)
            o.lock_status = "changed" if o.drift else "ok"
    return [e for e in locked if e.ident not in seen and _in_scope(e.spec, scope, key_root)]


def _refuse_conflicts(state: lockfile.LockState, scope: list[str], key_root: Path,
                      lock_path: Path, force: bool) -> None:
    """A merge conflict in the entries of a spec this run does not lock cannot be resolved by
    it: refuse (exit 2) rather than keep one side or drop both, unless --force."""
    outside = sorted(s for s in state.conflicted if not _in_scope(s, scope, key_root))
    if not outside or force:
        return
    raise UsageError([Diagnostic(
        "LS305", f"lock file {_shown(lock_path)}: merge conflict at "
        f"{lockfile.describe_lines(state.markers)} in the entries of {', '.join(outside)}, "
        "which this run does not lock", Location(str(_shown(lock_path)), state.markers[0], 1),
        hint="lock them in the same run (add them to the paths, or run `lazyspec lock` over "
        "every spec), or pass --force to drop their entries")])


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
        return resolved(path).relative_to(resolved(Path.cwd()))
    except ValueError:
        return path


def _update_lock(path: Path, report: GateReport, scope: list[str], key_root: Path,
                 force: bool, planned: lockfile.LockState) -> None:
    """Merge this run's entries into the lock file: keep the entries of specs not run this time,
    replace those that were, drop stale ones. The lock file is re-read under an OS lock and
    written before it is released, so a concurrent `lock` on other specs loses nothing."""
    from lazyspec.fileio import exclusive

    if any(o.exit_code for o in report.outcomes):  # never write from a failing run
        _compare(report, planned.entries, scope, key_root)
        for o in report.outcomes:
            if o.lock_status == "updated":
                o.lock_status = "not-written"
        failed = sum(o.exit_code != 0 for o in report.outcomes)
        report.notes.append(f"nothing written: {failed} run(s) failed")
        return
    with exclusive(path, "lock file"):
        state = lockfile.read_for_update(path, force)  # what is there now, after other runs
        _refuse_conflicts(state, scope, key_root, path, force)
        stale = {e.ident for e in _compare(report, state.entries, scope, key_root)}
        checked = {o.spec_key for o in report.outcomes}
        kept = [e for e in state.entries if e.spec not in checked and e.ident not in stale]
        dropped = sorted({e.spec for e in kept if e.spec in state.conflicted})
        if dropped:  # only with --force: a conflict no run resolved keeps neither side
            kept = [e for e in kept if e.spec not in state.conflicted]
            state.notes.append(f"--force: the conflicting entries of {', '.join(dropped)} "
                               "are dropped")
        fresh = [e for e in (o.entry() for o in report.outcomes) if e is not None]
        lockfile.write(path, kept + fresh)
    report.wrote_lock = True
    report.notes.extend(state.notes)


__all__ = ["GateOptions", "GateReport", "RunOutcome", "run_all"]
