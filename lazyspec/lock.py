"""Read, write and compare the lock file: per spec and input set, the output shapes, every
parameter's shape and the total. Deterministic text (valid YAML), written atomically. Torch-free.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lazyspec.errors import Diagnostic, Location, UsageError, shown
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
    trainable: int | None = None  # written only when some parameters are frozen

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


# What json.dumps does to a str, without its overhead (a lock can hold 300,000 parameter names).
_string = json.encoder.encode_basestring_ascii


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
            if e.trainable is not None and e.trainable != e.total:
                out.append(f"      trainable: {e.trainable}\n")
            if e.params:
                out.append("      params:\n")
                out.extend(f"        {_string(name)}: [{', '.join(map(str, shape))}]\n"
                           for name, shape in e.params.items())  # as json.dumps, faster
            else:
                out.append("      params: {}\n")
    return "".join(out)


_REGENERATE = "fix it, or rewrite it from this run's specs with `lazyspec lock --force`"


def _bad(path: Path, message: str, hint: str = _REGENERATE, line: int = 1) -> UsageError:
    return UsageError([Diagnostic("LS305", f"lock file {path}: {message}",
                                  Location(str(path), line, 1), hint=hint)])


# --- reading ---------------------------------------------------------------------------------
#
# A lock file can come from a pull request too, so reading it is bounded. Text exactly as
# `render` writes it is read by a linear line reader (a 16 MB lock in about 2 s on 2 cores; this
# repository's lock, with LLaMA-2 70B and 1,000 synthetic blocks, is 189 KB, and a project of a
# hundred such specs stays far below the cap). Any other text (hand-edited, reordered) goes
# through the strict located YAML reader used for specs, which is pure Python (about 4 s per MB
# on a 2-core machine), so it reads at most MAX_EDITED_LOCK_BYTES (about 2 s).

MAX_LOCK_BYTES = 16_000_000
MAX_EDITED_LOCK_BYTES = 500_000
_MARKERS = ("<<<<<<<", "|||||||", "=======", ">>>>>>>")


def read(path: Path) -> list[LockEntry]:
    """Entries of a lock file (for `check`); a missing file has none. A malformed file, a merge
    conflict or a file over the limits exits 2."""
    text = _text(path)
    if text is None:
        return []
    markers = conflict_markers(text)
    if markers:
        raise _bad(path, f"unresolved merge conflict (markers at {describe_lines(markers)})",
                   "run `lazyspec lock`: it re-runs the specs whose entries differ between the "
                   "two sides and keeps the others; or resolve the conflict by hand",
                   markers[0])
    return parse(text, path)


def _text(path: Path) -> str | None:
    """The lock file's text, or None when there is no file."""
    from lazyspec.fileio import read_capped

    try:
        return read_capped(path, MAX_LOCK_BYTES).decode("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise _bad(path, f"cannot read it: {reason}") from None


def parse(text: str, path: Path) -> list[LockEntry]:
    """The entries a lock file's text holds (UsageError LS305 when malformed)."""
    text = text.replace("\r\n", "\n")  # a checkout with CRLF line ends means the same
    written = _as_written(text, path)
    if written is not None:
        return written
    if len(text.encode("utf-8", "surrogatepass")) > MAX_EDITED_LOCK_BYTES:
        raise _bad(path, f"larger than {MAX_EDITED_LOCK_BYTES:,} bytes and not in the form "
                   "`lazyspec lock` writes (limit: such a lock is read with the strict YAML "
                   "reader)")
    return _entries(_yaml(text, path), path)


def _yaml(text: str, path: Path) -> Any:
    from lazyspec.errors import SpecError
    from lazyspec.spec.yamlload import load_yaml, plain

    try:  # as strictly as a spec: no aliases (a small file that expands without end), no tags
        return plain(load_yaml(text, str(path), max_bytes=None))
    except SpecError as e:
        raise _bad(path, f"not valid YAML: {e.diagnostics[0].message}") from None


def _as_written(text: str, path: Path) -> list[LockEntry] | None:
    """The entries of text exactly as `render` writes it, read line by line in linear time;
    None for any other text (then the YAML reader decides)."""
    # Only what `render` gives back unchanged is taken: for that text the YAML reader would
    # read the same entries, so the two readers never disagree. (Rendering recurses into
    # nested outputs, so it is inside the try too.)
    try:
        data = _lines_data(text)
        entries = _entries(data, path) if data is not None else None
        return entries if entries is not None and render(entries) == text else None
    except (UsageError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None


def _lines_data(text: str) -> dict[str, Any] | None:
    """Plain data from the lines `render` writes; None (or an exception) where they differ."""
    lines = text.split("\n")
    if lines[0] + "\n" != HEADER or lines[-1] != "" or len(lines) < 4 or \
            not lines[1].startswith("version: "):
        return None
    decoder = json.JSONDecoder(parse_int=_bounded_int)
    specs: dict[str, Any] = {}
    runs: dict[str, Any] = {}
    run: dict[str, Any] = {}
    params: list[str] = []  # one entry's `"name": [shape]` lines: read as one JSON object
    for line in [*lines[3:-1], ""]:
        if line.startswith("        "):
            params.append(line[8:])
            continue
        if params:
            run["params"] = json.loads("{" + ",".join(params) + "}", parse_int=_bounded_int)
            params = []
        if not line:
            break
        if line.startswith("      ") and not line.startswith("       "):
            name, _, value = line[6:].partition(":")
            run[name] = json.loads(value, parse_int=_bounded_int) if value.strip() else {}
            continue
        depth = len(line) - len(line.lstrip(" "))
        key, end = decoder.raw_decode(line, depth)
        if line[end:] != ":" or depth not in (2, 4):
            return None
        if depth == 2:
            runs = specs[key] = {}
        else:
            run = runs[key] = {}
    return {"version": json.loads(lines[1][9:], parse_int=_bounded_int), "specs": specs}


def _bounded_int(text: str) -> int:
    """An integer of the fast reader, at most MAX_INT_BITS as the YAML reader allows
    (ValueError otherwise: the text then goes to the YAML reader, which says where)."""
    from lazyspec.spec.expr import MAX_INT_BITS

    # digits counted first: Python will not even read a decimal of over 4,300 digits
    if len(text.lstrip("-").lstrip("0")) > len(str(2**MAX_INT_BITS)):
        raise ValueError("integer too large")
    value = int(text)
    if value.bit_length() > MAX_INT_BITS:
        raise ValueError("integer too large")
    return value


def _entries(data: Any, path: Path) -> list[LockEntry]:
    from lazyspec.config import MAX_RUNS_PER_SPEC

    if not isinstance(data, dict) or data.get("version") != LOCK_VERSION:
        raise _bad(path, f"expected `version: {LOCK_VERSION}` at the top")
    unknown = [str(k) for k in data if k not in ("version", "specs")]
    if unknown:  # not ours to drop on the next write: a spec, or data someone added by hand
        raise _bad(path, f"unknown top-level key {shown(unknown[0])} (a lazyspec lock holds "
                   "only `version:` and `specs:`)")
    specs = data.get("specs") or {}
    if not isinstance(specs, dict):
        raise _bad(path, "`specs` must be a mapping")
    entries = []
    try:
        for spec, runs in specs.items():
            if len(runs) > MAX_RUNS_PER_SPEC:  # each entry is a dry run when `check` plans
                raise _bad(path, f"{spec} has {len(runs):,} entries, more than "
                           f"{MAX_RUNS_PER_SPEC} (limit)")
            for key, item in runs.items():
                entries.append(_entry(str(spec), str(key), item))
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise _bad(path, f"malformed entry ({type(e).__name__}: {e})") from None
    return entries


def _entry(spec: str, key: str, item: Any) -> LockEntry:
    """One entry, its types checked (TypeError and friends on a malformed one)."""
    from lazyspec.config import MAX_RUN_INPUTS

    outputs, total, scale = item["outputs"], item["total"], item.get("scale")
    sets = item.get("set") or {}
    inputs = item.get("inputs", [])
    if not isinstance(inputs, list) or len(inputs) > MAX_RUN_INPUTS:
        raise ValueError(f"{spec} [{key}]: `inputs` must be a list of at most "
                         f"{MAX_RUN_INPUTS} input strings (limit)")
    if not isinstance(outputs, list):
        raise TypeError(f"{spec} [{key}]: `outputs` must be a list of shapes")
    if not isinstance(total, int) or isinstance(total, bool):
        raise TypeError(f"{spec} [{key}]: `total` must be a whole number")
    trainable = item.get("trainable", total)
    if not isinstance(trainable, int) or isinstance(trainable, bool):
        raise TypeError(f"{spec} [{key}]: `trainable` must be a whole number")
    if scale is not None and not isinstance(scale, str):
        raise TypeError(f"{spec} [{key}]: `scale` must be a name")
    if not isinstance(sets, dict) or not all(isinstance(k, str) for k in sets):
        raise TypeError(f"{spec} [{key}]: `set` must map param names to values")
    params = item.get("params") or {}
    for name, shape in params.items():  # `type(d) is int`: not a bool, and fast on 300,000
        if not isinstance(shape, list) or not all(type(d) is int for d in shape):
            raise TypeError(f"{spec} [{key}]: the shape of '{name}' must be a list of whole "
                            "numbers")
    return LockEntry(
        spec=spec, key=key, inputs=[str(i) for i in inputs],
        outputs=outputs, total=total, params={str(k): list(v) for k, v in params.items()},
        scale=scale, sets=dict(sets), trainable=trainable)


# --- reading for `lock`, which merges into what the file holds --------------------------------


@dataclass
class LockState:
    """What `lock` finds in the lock file before it merges this run's entries in."""

    entries: list[LockEntry] = field(default_factory=list)
    conflicted: set[str] = field(default_factory=set)  # specs whose two sides differ
    markers: list[int] = field(default_factory=list)  # merge-conflict marker lines
    notes: list[str] = field(default_factory=list)


def read_for_update(path: Path, force: bool = False) -> LockState:
    """The lock file as `lock` merges into it. A missing or empty file, a device (/dev/null) or
    /dev/stdout hold nothing; a merge conflict is split into its two sides; anything that is not
    a readable lazyspec lock is refused (exit 2), since replacing it would drop what it holds,
    unless `force`."""
    from lazyspec.fileio import write_target

    if not write_target(path, "lock file").atomic:
        return LockState()  # written through: there is nothing to keep
    try:
        text = _text(path)
        if text is None or not text.strip():
            return LockState()
        markers = conflict_markers(text)
        if markers:
            return _sides(text, markers, path)
        return LockState(_refusing(path, text))
    except UsageError as e:
        if not force:
            raise
        return LockState(notes=[f"--force: the old lock file's entries are dropped "
                                f"({e.diagnostics[0].message})"])


def _refusing(path: Path, text: str) -> list[LockEntry]:
    """The entries of a file `lock` may replace; a file that is not a lazyspec lock, or one
    that cannot be read, is refused."""
    try:
        return parse(text, path)
    except UsageError as e:
        reason = e.diagnostics[0].message.removeprefix(f"lock file {path}: ")
    # A lock has `version:` and `specs:` at the top level, as `render` writes them.
    if not (re.search(r"^version:", text, re.MULTILINE)
            and re.search(r"^specs:", text, re.MULTILINE)):
        raise _bad(path, f"not a lazyspec lock file ({reason}); `lazyspec lock` will not "
                   "replace it", "name another file with --lock, or pass --force to replace "
                   "it")
    raise _bad(path, f"{reason}; `lazyspec lock` will not replace it, which would drop its "
               "entries", "fix it, or pass --force to rewrite it from this run's specs only "
               "(the entries of other specs are dropped)")


def _marker(line: str) -> str | None:
    """The git merge-conflict marker a line is (`<<<<<<< HEAD`, `=======`, ...), or None."""
    body = line.rstrip("\r\n")
    for m in _MARKERS:
        if body == m or (m != "=======" and body.startswith(m + " ")):
            return m
    return None


def conflict_markers(text: str) -> list[int]:
    """Line numbers (1-based) of git merge-conflict markers."""
    if not any(m in text for m in _MARKERS):  # the usual case, without a loop over the lines
        return []
    return [n for n, line in enumerate(text.splitlines(), 1) if _marker(line)]


def describe_lines(numbers: list[int]) -> str:
    shown = ", ".join(map(str, numbers[:12]))
    return ("line " if len(numbers) == 1 else "lines ") + shown + \
        (f" and {len(numbers) - 12} more" if len(numbers) > 12 else "")


_NEXT = {("both", "<<<<<<<"): "ours", ("ours", "|||||||"): "base", ("ours", "======="): "theirs",
         ("base", "======="): "theirs", ("theirs", ">>>>>>>"): "both"}


def _split(text: str) -> tuple[str, str] | None:
    """The two sides of a merge conflict (diff3's base section dropped); None when the markers
    are not in order."""
    ours: list[str] = []
    theirs: list[str] = []
    state = "both"
    for line in text.splitlines(keepends=True):
        marker = _marker(line)
        if marker is None:
            if state in ("both", "ours"):
                ours.append(line)
            if state in ("both", "theirs"):
                theirs.append(line)
            continue
        following = _NEXT.get((state, marker))
        if following is None:
            return None
        state = following
    return ("".join(ours), "".join(theirs)) if state == "both" else None


def _sides(text: str, markers: list[int], path: Path) -> LockState:
    """A conflicted lock: the entries both sides agree on, and the specs where they differ."""
    where = f"merge conflict at {describe_lines(markers)}"
    split = _split(text)
    if split is None:
        raise _bad(path, f"{where}, with markers out of order", "resolve the conflict by hand, "
                   "or pass --force to rewrite it from this run's specs only", markers[0])
    try:
        ours, theirs = (parse(side, path) for side in split)
    except UsageError as e:
        raise _bad(path, f"{where}, and a side cannot be read: "
                   f"{e.diagnostics[0].message.removeprefix(f'lock file {path}: ')}",
                   "resolve the conflict by hand, or pass --force to rewrite it from this "
                   "run's specs only", markers[0]) from None
    by_side: tuple[dict[str, list[LockEntry]], dict[str, list[LockEntry]]] = ({}, {})
    for side, entries in zip(by_side, (ours, theirs), strict=True):
        for entry in entries:
            side.setdefault(entry.spec, []).append(entry)
    conflicted = {s for s in by_side[0].keys() | by_side[1].keys()
                  if by_side[0].get(s) != by_side[1].get(s)}
    union = {e.ident: e for e in [*ours, *theirs] if e.spec in conflicted}
    agreed = [e for e in ours if e.spec not in conflicted]
    return LockState(agreed + list(union.values()), conflicted, markers,
                     [f"the lock file had a {where}: the entries of "
                      f"{', '.join(sorted(conflicted)) or 'no spec'} differed between its sides "
                      "and are re-run; the others are kept"])


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
    old_frozen = old.total - (old.total if old.trainable is None else old.trainable)
    new_frozen = new.total - (new.total if new.trainable is None else new.trainable)
    if old_frozen != new_frozen:  # a change of the total alone is said above
        lines.append(f"frozen {old_frozen:,} -> {new_frozen:,} parameters")
    return lines


def _fmt_outputs(outputs: list[Any]) -> str:
    return ", ".join(json_shape(o) for o in outputs)
