"""Read, write and compare the lock file: per spec and input set, the output shapes, every
parameter's shape and the total. Deterministic text (valid YAML), written atomically. Torch-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lazyspec.errors import Diagnostic, Location, UsageError
from lazyspec.fileio import atomic_write
from lazyspec.shapes import as_lists, json_shape

LOCK_VERSION = 1
HEADER = ("# lazyspec.lock: written by `lazyspec lock`. Review changes like code; "
          "do not edit by hand.\n")


@dataclass
class LockEntry:
    spec: str  # posix path relative to the lock file's folder
    key: str  # the run: "input=2,20", "input=idx=2,64:int64 scale=tiny"
    inputs: list[str]
    outputs: list[Any]  # shapes as lists
    total: int
    params: dict[str, list[int]] = field(default_factory=dict)  # in model order
    scale: str | None = None
    sets: dict[str, Any] = field(default_factory=dict)

    @property
    def ident(self) -> tuple[str, str]:
        return (self.spec, self.key)


def run_key(inputs: list[str] | tuple[str, ...], scale: str | None,
            sets: dict[str, Any] | tuple[tuple[str, Any], ...]) -> str:
    """A stable name for one run of a spec."""
    parts = ["input=" + " ".join(inputs) if inputs else "input=declared"]
    if scale:
        parts.append(f"scale={scale}")
    for k, v in sorted(dict(sets).items()):
        parts.append(f"set:{k}={json.dumps(v, sort_keys=True)}")
    return " ".join(parts)


def _q(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid YAML double-quoted scalar


def render(entries: list[LockEntry]) -> str:
    """The lock file's text: entries sorted by spec and key, parameters in model order."""
    out = [HEADER, f"version: {LOCK_VERSION}\n", "specs:\n" if entries else "specs: {}\n"]
    by_spec: dict[str, list[LockEntry]] = {}
    for e in sorted(entries, key=lambda e: e.ident):
        by_spec.setdefault(e.spec, []).append(e)
    for spec, group in by_spec.items():
        out.append(f"  {_q(spec)}:\n")
        for e in group:
            out.append(f"    {_q(e.key)}:\n")
            out.append(f"      inputs: {json.dumps(e.inputs)}\n")
            if e.scale:
                out.append(f"      scale: {_q(e.scale)}\n")
            if e.sets:
                out.append(f"      set: {json.dumps(e.sets, sort_keys=True)}\n")
            out.append(f"      outputs: {json.dumps(as_lists(e.outputs))}\n")
            out.append(f"      total: {e.total}\n")
            if e.params:
                out.append("      params:\n")
                for name, shape in e.params.items():
                    out.append(f"        {_q(name)}: {json.dumps(list(shape))}\n")
            else:
                out.append("      params: {}\n")
    return "".join(out)


def _bad(path: Path, message: str) -> UsageError:
    return UsageError([Diagnostic("LS305", f"lock file {path}: {message}",
                                  Location(str(path), 1, 1),
                                  hint="regenerate it with `lazyspec lock`")])


def read(path: Path) -> list[LockEntry]:
    """Entries of a lock file; a missing file has none. Malformed files exit 2."""
    from lazyspec.errors import SpecError
    from lazyspec.spec.yamlload import load_yaml, plain

    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
        # A lock file can come from a pull request too: read it as strictly as a spec (no
        # aliases, which can make a small file expand without end; no tags), but of any size.
        data = plain(load_yaml(text, str(path), max_bytes=None))
    except (OSError, UnicodeDecodeError) as e:
        raise _bad(path, f"cannot read it: {e}") from None
    except SpecError as e:
        raise _bad(path, f"not valid YAML: {e.diagnostics[0].message}") from None
    if not isinstance(data, dict) or data.get("version") != LOCK_VERSION:
        raise _bad(path, f"expected `version: {LOCK_VERSION}` at the top")
    specs = data.get("specs") or {}
    if not isinstance(specs, dict):
        raise _bad(path, "`specs` must be a mapping")
    entries = []
    try:
        for spec, runs in specs.items():
            for key, item in runs.items():
                entries.append(_entry(str(spec), str(key), item))
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise _bad(path, f"malformed entry ({type(e).__name__}: {e})") from None
    return entries


def _entry(spec: str, key: str, item: Any) -> LockEntry:
    """One entry, its types checked (TypeError and friends on a malformed one)."""
    outputs, total, scale = item["outputs"], item["total"], item.get("scale")
    sets = item.get("set") or {}
    if not isinstance(outputs, list):
        raise TypeError(f"{spec} [{key}]: `outputs` must be a list of shapes")
    if not isinstance(total, int) or isinstance(total, bool):
        raise TypeError(f"{spec} [{key}]: `total` must be a whole number")
    if scale is not None and not isinstance(scale, str):
        raise TypeError(f"{spec} [{key}]: `scale` must be a name")
    if not isinstance(sets, dict) or not all(isinstance(k, str) for k in sets):
        raise TypeError(f"{spec} [{key}]: `set` must map param names to values")
    params = item.get("params") or {}
    for name, shape in params.items():
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool)
                                                  for d in shape):
            raise TypeError(f"{spec} [{key}]: the shape of '{name}' must be a list of whole "
                            "numbers")
    return LockEntry(
        spec=spec, key=key, inputs=[str(i) for i in item.get("inputs", [])],
        outputs=outputs, total=total, params={str(k): list(v) for k, v in params.items()},
        scale=scale, sets=dict(sets))


def write(path: Path, entries: list[LockEntry]) -> None:
    """Write atomically: an interrupted write leaves the old lock file intact."""
    atomic_write(path, render(entries), "lock file")


def diff(old: LockEntry, new: LockEntry) -> list[str]:
    """Readable differences: which parameter, old shape -> new shape."""
    lines = []
    if as_lists(old.outputs) != as_lists(new.outputs):
        lines.append(f"output {_fmt_outputs(old.outputs)} -> {_fmt_outputs(new.outputs)}")
    for name, shape in new.params.items():
        if name not in old.params:
            lines.append(f"+ {name} {json_shape(shape)}")
        elif list(old.params[name]) != list(shape):
            lines.append(f"{name} {json_shape(old.params[name])} -> {json_shape(shape)}")
    for name, shape in old.params.items():
        if name not in new.params:
            lines.append(f"- {name} {json_shape(shape)}")
    if old.total != new.total:
        lines.append(f"total {old.total:,} -> {new.total:,} parameters")
    return lines


def _fmt_outputs(outputs: list[Any]) -> str:
    return ", ".join(json_shape(o) for o in outputs)
