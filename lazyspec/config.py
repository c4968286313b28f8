"""`[tool.lazyspec]` in pyproject.toml: which specs, their inputs, budgets, the lock, the allowlist.

Torch-free. Unknown keys are errors (exit 2), as in ruff and mypy.

    [tool.lazyspec]
    specs = ["specs"]              # default PATHS for check and lock
    lock = "lazyspec.lock"         # relative to this pyproject.toml
    allow = ["mypkg"]
    max-params = "100B"            # budgets for every run
    max-bytes = "400GB"

    [[tool.lazyspec.run]]          # one per spec and input set
    spec = "specs/mlp.yaml"
    inputs = ["2,20"]              # one string per input of the model
    expect-output = "2,10"
    max-params = "10K"
    scale = "r34"
    set = { d = 256 }
    checkpoint = "weights/mlp.safetensors"   # checked by `check`: a file, an index or a glob
    checkpoint-layout = { strip-prefix = "model." }   # see lazyspec.weights.Layout
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lazyspec.errors import Diagnostic, Location, UsageError, did_you_mean
from lazyspec.fileio import resolved
from lazyspec.options import is_plain_value
from lazyspec.weights import Layout

TOP_KEYS = ("specs", "lock", "allow", "max-params", "max-bytes", "run")
RUN_KEYS = ("spec", "inputs", "expect-output", "max-params", "max-bytes", "scale", "set",
            "checkpoint", "checkpoint-layout")
LAYOUT_KEYS = ("strip-prefix", "add-prefix", "transpose", "ignore")
DEFAULT_LOCK = "lazyspec.lock"
# Limits on what a pull request's pyproject.toml or lock file can make a gate do (exit 2 over them):
MAX_PYPROJECT_BYTES = 1_000_000  # as for a spec file
MAX_RUN_INPUTS = 32  # input strings in one run: a [[tool.lazyspec.run]] or a lock entry
MAX_RUNS_PER_SPEC = 64  # runs of one spec: [[tool.lazyspec.run]] tables, or its lock entries


@dataclass(frozen=True)
class Budgets:
    expect_output: tuple[int, ...] | None = None
    max_params: int | None = None
    max_bytes: int | None = None

    def merged(self, other: Budgets) -> Budgets:
        """`other` wins where it sets something."""
        return Budgets(other.expect_output or self.expect_output,
                       other.max_params if other.max_params is not None else self.max_params,
                       other.max_bytes if other.max_bytes is not None else self.max_bytes)


@dataclass(frozen=True)
class RunConfig:
    spec: Path  # resolved
    inputs: tuple[str, ...]
    scale: str | None = None
    sets: tuple[tuple[str, Any], ...] = ()
    budgets: Budgets = field(default_factory=Budgets)
    checkpoint: str | None = None  # a file, an index or a glob, relative to pyproject.toml
    layout: Layout = field(default_factory=Layout)


@dataclass
class Config:
    root: Path  # folder of pyproject.toml (or the working folder without one)
    path: Path | None  # the pyproject.toml read, if any
    specs: list[Path] = field(default_factory=list)
    lock: Path = Path(DEFAULT_LOCK)
    allow: tuple[str, ...] = ()
    budgets: Budgets = field(default_factory=Budgets)
    runs: list[RunConfig] = field(default_factory=list)


_COUNT_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}
_BYTE_SUFFIX = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
                "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_count(text: str | int, what: str = "--max-params") -> int:
    """`1M`, `1.5B`, `10K`, `7946` -> an int."""
    return _scaled(text, _COUNT_SUFFIX, what, "for example 10K, 1M or 1.5B")


def parse_bytes(text: str | int, what: str = "--max-bytes") -> int:
    """`500MB`, `2GiB`, `1024` -> bytes."""
    return _scaled(text, _BYTE_SUFFIX, what, "for example 500MB, 2GiB or 1024")


MAX_BUDGET = 2**63 - 1  # a budget past any model; read exactly, never through a float's infinity
_DIGITS = len(str(MAX_BUDGET))


def _scaled(text: str | int, suffixes: dict[str, int], what: str, example: str) -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise _budget_error(f"{what}: cannot read '{text}'" if text.bit_length() < 64 else
                                f"{what}: cannot read a negative number", example)
        if text > MAX_BUDGET:
            raise _budget_error(f"{what}: the number is too large (limit: 2**63 - 1)", example)
        return text
    # stripped first: whitespace on both sides of an optional suffix made the pattern
    # backtrack quadratically (200,000 spaces ran for minutes)
    m = re.fullmatch(r"([0-9]+)(?:\.([0-9]+))?\s*([A-Za-z]*)", str(text).strip())
    if not m or m.group(3).upper() not in suffixes:
        raise _budget_error(f"{what}: cannot read {_quoted(text)}", example)
    whole, fraction = m.group(1).lstrip("0"), (m.group(2) or "")[:_DIGITS]
    if len(whole) > _DIGITS:
        raise _budget_error(f"{what}: the number is too large (limit: 2**63 - 1)", example)
    # Exact arithmetic on the digits: 1.5B is 1,500,000,000, whatever a float would round to.
    scale, unit = suffixes[m.group(3).upper()], int("1" + "0" * len(fraction))
    value = (int(whole or "0") * unit + int(fraction or "0")) * scale
    value = (2 * value + unit) // (2 * unit)  # to the nearest whole number, half up
    if value > MAX_BUDGET:
        raise _budget_error(f"{what}: the number is too large (limit: 2**63 - 1)", example)
    return value


def _budget_error(message: str, hint: str) -> UsageError:
    return UsageError([Diagnostic("LS301", message, hint=hint)])


def _quoted(text: object, limit: int = 60) -> str:
    """A flag's value in a message: quoted, cut short (a value can be thousands of digits)."""
    shown = str(text) if not isinstance(text, int) or text.bit_length() < 64 else "a number"
    return f"'{shown}'" if len(shown) <= limit else f"'{shown[:limit]}...' ({len(shown):,} " \
        "characters)"


def parse_shape(text: str, what: str = "--expect-output") -> tuple[int, ...]:
    """`2,10` or `[2, 10]`: whole numbers (ASCII digits), each at most inputs.MAX_DIM."""
    from lazyspec.inputs import MAX_DIM

    parts = [p for p in re.split(r"[,\s]+", text.strip().strip("[]()")) if p]
    if not parts or not all(re.fullmatch(r"[0-9]+", p) for p in parts):
        raise UsageError([Diagnostic("LS301", f"{what}: cannot read shape {_quoted(text)}",
                                     hint="for example 2,10")])
    digits = [p.lstrip("0") or "0" for p in parts]  # 5,000 zeros are no number Python reads
    for p, d in zip(parts, digits, strict=True):
        if len(d) > len(str(MAX_DIM)) or int(d) > MAX_DIM:
            raise UsageError([Diagnostic("LS301", f"{what}: dimension {_quoted(p)} is over the "
                                         "limit of 2**40", hint="for example 2,10")])
    return tuple(int(d) for d in digits)


def find_pyproject(start: Path) -> Path | None:
    for folder in [start, *start.parents]:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(start: Path | None = None, explicit: Path | None = None) -> Config:
    """Read [tool.lazyspec] from the nearest pyproject.toml (or `explicit`)."""
    start = resolved(start or Path.cwd())
    path = explicit or find_pyproject(start)
    if path is None:
        return Config(root=start, path=None, lock=start / DEFAULT_LOCK)
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    from lazyspec.fileio import read_capped

    try:
        data = tomllib.loads(read_capped(path, MAX_PYPROJECT_BYTES).decode("utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise _config_error(path, f"cannot read {path}: {reason}") from None
    except ValueError as e:  # TOMLDecodeError, or a decimal past Python's 4,300-digit limit
        why = str(e) if isinstance(e, tomllib.TOMLDecodeError) else "a number too large to read"
        raise _config_error(path, f"invalid TOML: {why}") from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise _config_error(path, "invalid TOML: nesting too deep") from None
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise _config_error(path, "[tool] must be a table")
    return _parse(tool.get("lazyspec", {}), path)


def _config_error(path: Path, message: str, hint: str | None = None) -> UsageError:
    return UsageError([Diagnostic("LS304", message, Location(str(path), 1, 1), hint=hint)])


def _check_keys(table: dict[str, Any], allowed: tuple[str, ...], where: str, path: Path) -> None:
    for key in table:
        if key not in allowed:
            raise _config_error(path, f"unknown key '{key}' in {where}",
                                did_you_mean(key, allowed) or "allowed: " + ", ".join(allowed))


def _no_nul(table: dict[str, Any], path: Path) -> None:
    """No string in the table holds a NUL (TOML's `\u0000`): no path or name can have one."""
    stack: list[Any] = [table]
    while stack:
        value = stack.pop()
        items = list(value.items()) if isinstance(value, dict) else \
            [(None, v) for v in value] if isinstance(value, list) else []
        for key, item in items:
            if any(isinstance(x, str) and "\x00" in x for x in (key, item)):
                raise _config_error(path, "[tool.lazyspec] holds a string with a NUL character "
                                    "(\\u0000)", "no path, name or value can hold one")
            stack.append(item)


def _strings(value: Any, key: str, path: Path) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise _config_error(path, f"[tool.lazyspec] {key} must be a string or a list of strings")


def _budgets(table: dict[str, Any], path: Path, where: str) -> Budgets:
    try:
        return Budgets(
            _shape(table["expect-output"], f"{where} expect-output")
            if "expect-output" in table else None,
            parse_count(table["max-params"], f"{where} max-params")
            if "max-params" in table else None,
            parse_bytes(table["max-bytes"], f"{where} max-bytes") if "max-bytes" in table else None)
    except UsageError as e:
        raise _config_error(path, e.diagnostics[0].message, e.diagnostics[0].hint) from None


def _shape(value: Any, what: str) -> tuple[int, ...]:
    if isinstance(value, int) and value.bit_length() > 64:  # str() of it may not even work
        raise _budget_error(f"{what}: the number is too large", "for example 2,10")
    return parse_shape(str(value), what)


def _input(text: str, where: str, path: Path) -> str:
    """An input string as the lock file writes it (`[2, 20]` and `2,20` are the same run)."""
    from lazyspec.inputs import parse_input

    try:
        return str(parse_input(text))
    except UsageError as e:
        raise _config_error(path, f"{where}: {e.diagnostics[0].message}",
                            e.diagnostics[0].hint) from None


def _parse(table: Any, path: Path) -> Config:
    if not isinstance(table, dict):
        raise _config_error(path, "[tool.lazyspec] must be a table")
    root = path.parent
    _check_keys(table, TOP_KEYS, "[tool.lazyspec]", path)
    _no_nul(table, path)
    config = Config(root=root, path=path, lock=root / str(table.get("lock", DEFAULT_LOCK)))
    config.specs = [root / p for p in _strings(table.get("specs", []), "specs", path)]
    config.allow = tuple(_strings(table.get("allow", []), "allow", path))
    config.budgets = _budgets(table, path, "[tool.lazyspec]")
    runs = table.get("run", [])
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise _config_error(path, "[[tool.lazyspec.run]] entries must be tables")
    config.runs = [_run(run, f"[[tool.lazyspec.run]] #{i + 1}", path) for i, run in
                   enumerate(runs)]
    per_spec: dict[Path, int] = {}
    for i, run_config in enumerate(config.runs):
        per_spec[run_config.spec] = per_spec.get(run_config.spec, 0) + 1
        if per_spec[run_config.spec] > MAX_RUNS_PER_SPEC:
            raise _config_error(path, f"[[tool.lazyspec.run]] #{i + 1}: more than "
                                f"{MAX_RUNS_PER_SPEC} runs of '{runs[i]['spec']}' (limit)",
                                "each run is a dry run of the model")
    return config


def _run(run: dict[str, Any], where: str, path: Path) -> RunConfig:
    """One [[tool.lazyspec.run]] table."""
    _check_keys(run, RUN_KEYS, where, path)
    if "spec" not in run or not isinstance(run["spec"], str):
        raise _config_error(path, f"{where} needs `spec = \"path/to/spec.yaml\"`")
    sets = run.get("set", {})
    if not isinstance(sets, dict):
        raise _config_error(path, f"{where} `set` must be a table of param values")
    scale = run.get("scale")
    if scale is not None and not isinstance(scale, str):
        raise _config_error(path, f"{where} `scale` must be a string")
    spec = resolved(path.parent / str(run["spec"]).replace("\\", "/"))
    if not spec.is_file():
        raise _config_error(path, f"{where}: spec '{run['spec']}' does not exist",
                            "paths are relative to this pyproject.toml")
    if not all(is_plain_value(v) for v in sets.values()):
        raise _config_error(path, f"{where}: `set` values must be numbers, strings, "
                            "booleans or lists of them")
    inputs = _strings(run.get("inputs", []), "inputs", path)
    if len(inputs) > MAX_RUN_INPUTS:  # each set of inputs past the first is another dry run
        raise _config_error(path, f"{where}: {len(inputs):,} input strings, more than "
                            f"{MAX_RUN_INPUTS} (limit)", "one string per model input; "
                            "give other input sets their own [[tool.lazyspec.run]]")
    return RunConfig(spec=spec, inputs=tuple(_input(i, where, path) for i in inputs),
                     scale=scale, sets=tuple(sorted(sets.items())),
                     budgets=_budgets(run, path, where), **_checkpoint(run, where, path))


def _checkpoint(run: dict[str, Any], where: str, path: Path) -> dict[str, Any]:
    """A run's `checkpoint` (relative to pyproject.toml; a glob stays a glob) and its
    `checkpoint-layout` table."""
    if "checkpoint" not in run:
        if "checkpoint-layout" in run:
            raise _config_error(path, f"{where}: `checkpoint-layout` without a `checkpoint`")
        return {}
    value = run["checkpoint"]
    if not isinstance(value, str) or not value.strip():
        raise _config_error(path, f"{where} `checkpoint` must be a path (a file, an index "
                            ".json or a glob of shards)")
    table = run.get("checkpoint-layout", {})
    if not isinstance(table, dict):
        raise _config_error(path, f"{where} `checkpoint-layout` must be a table")
    _check_keys(table, LAYOUT_KEYS, f"{where} checkpoint-layout", path)
    add = table.get("add-prefix", "")
    if not isinstance(add, str):
        raise _config_error(path, f"{where} checkpoint-layout `add-prefix` must be a string")
    lists = {key: tuple(_strings(table.get(key, []), f"checkpoint-layout {key}", path))
             for key in ("strip-prefix", "transpose", "ignore")}
    if any(not item for items in lists.values() for item in items):
        raise _config_error(path, f"{where} checkpoint-layout: an empty prefix or glob")
    layout = Layout(lists["strip-prefix"], add, lists["transpose"], lists["ignore"])
    return {"checkpoint": str(path.parent / value.replace("\\", "/")), "layout": layout}
