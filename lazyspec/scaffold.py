"""`lazyspec init`: a starter spec, `[tool.lazyspec]`, a pre-commit hook and a GitHub workflow
in a project. Torch-free.

Nothing a project already has is lost. A file that exists is kept (unless `force`); the
pyproject.toml and .pre-commit-config.yaml of a project are added to, never rewritten: the new
text is appended, and the result is read back and must hold exactly the old data plus the new
(comments, order and other tables stay as they were, byte for byte). Where that cannot be done
(a `[tool.lazyspec]` already there, `tool` written as an inline table, a flow-style `repos:`),
the file is kept and the report says what to add by hand.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lazyspec import __version__
from lazyspec.config import MAX_PYPROJECT_BYTES
from lazyspec.fileio import FileTooLarge, read_capped

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SPEC_PATH = "specs/model.yaml"

STARTER_SPEC = """\
# A starter spec (`lazyspec init`). Every input size is inferred by the lazy layers.
#   lazyspec infer specs/model.yaml --input 2,20     shapes, parameters, FLOPs
#   lazyspec lock                                    record them in lazyspec.lock
# `lazyspec schema` prints the JSON Schema of the language for editors; `lazyspec examples`
# lists larger specs (ResNet-18, GPT-2, LLaMA-2) to start from.
lazyspec: 1
name: My model
inputs:
  x: {shape: [B, 20]}
layers:
  - fc1: LazyLinear(256)
  - ReLU
  - fc2: LazyLinear(10)
"""

TOOL_TABLE = f"""
# lazyspec (`lazyspec init`): `lazyspec check` dry-runs these specs and compares them with
# the lock file; `lazyspec lock` writes it.
[tool.lazyspec]
specs = ["specs"]
lock = "lazyspec.lock"

[[tool.lazyspec.run]]
spec = "{SPEC_PATH}"
inputs = ["2,20"]
expect-output = "2,10"
"""

HOOK_ENTRY = """\
  # lazyspec (`lazyspec init`): runs in this repository's own environment (language: system),
  # so pre-commit downloads no second torch.
  - repo: local
    hooks:
      - id: lazyspec-check
        name: lazyspec check (model shapes against lazyspec.lock)
        entry: lazyspec check
        language: system
        files: \\.(ya?ml|lock)$|^pyproject\\.toml$
        pass_filenames: false
"""

WORKFLOW = f"""\
# lazyspec (`lazyspec init`): every push and pull request dry-runs the specs on the meta device
# and compares them with lazyspec.lock; failures show as annotations on the spec lines.
name: lazyspec
on: [push, pull_request]
jobs:
  check:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      # A CPU build of torch is enough (nothing runs on a GPU) and a tenth of the download.
      - run: pip install torch --index-url https://download.pytorch.org/whl/cpu
      - run: pip install "lazyspec=={__version__}"
      - run: lazyspec check --format github
"""


@dataclass
class Step:
    """What init did with one file: `wrote`, `added to`, `kept` (it exists, or already set up)
    or `refused` (it could not be added to safely; `detail` says what to do)."""

    path: str
    action: str
    detail: str = ""


def init(root: Path, *, force: bool = False) -> list[Step]:
    """Set up lazyspec in the project at `root`. OSError for a file that cannot be written."""
    return [
        _new_file(root, SPEC_PATH, STARTER_SPEC, force),
        _pyproject(root),
        _pre_commit(root, force),
        _new_file(root, ".github/workflows/lazyspec.yml", WORKFLOW, force),
    ]


def _write(path: Path, text: str) -> None:
    from lazyspec.fileio import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text, "file")


def _new_file(root: Path, name: str, text: str, force: bool) -> Step:
    path = root / name
    if path.exists() and not force:
        return Step(name, "kept", "it exists (--force replaces it)")
    _write(path, text)
    return Step(name, "wrote")


def _append_checked(path: Path, old: str, addition: str, load: Callable[[str], Any],
                    expect: Callable[[Any], Any]) -> bool:
    """Append `addition` when the file then reads as `expect(old data)`; False if it would not
    (and the file is left as it was)."""
    new = old + ("" if not old or old.endswith("\n") else "\n") + addition
    try:
        before, after = load(old), load(new)
    except Exception:  # any parse error: the file is kept as it is
        return False
    if after != expect(before):
        return False
    _write(path, new)
    return True


def _pyproject(root: Path) -> Step:
    name = "pyproject.toml"
    path = root / name
    table = tomllib.loads(TOOL_TABLE)["tool"]["lazyspec"]
    if not path.exists():
        _write(path, TOOL_TABLE.lstrip("\n"))
        return Step(name, "wrote")
    old = _existing(path)
    if isinstance(old, Step):
        return old
    try:
        data = tomllib.loads(old)
    except (ValueError, RecursionError) as e:  # TOMLDecodeError, a huge number, deep nesting
        why = e if isinstance(e, tomllib.TOMLDecodeError) else "a value it cannot read"
        return Step(name, "refused", f"it is not valid TOML ({why}); add [tool.lazyspec] by "
                    "hand:" + TOOL_TABLE)
    tool = data.get("tool", {})
    if isinstance(tool, dict) and "lazyspec" in tool:
        return Step(name, "kept", "it already has [tool.lazyspec]")
    if not isinstance(tool, dict):
        return Step(name, "refused", "its `tool` is not a table; add [tool.lazyspec] by hand:"
                    + TOOL_TABLE)

    def expect(before: dict[str, Any]) -> dict[str, Any]:
        return {**before, "tool": {**before.get("tool", {}), "lazyspec": table}}

    if _append_checked(path, old, TOOL_TABLE, tomllib.loads, expect):
        return Step(name, "added to", "[tool.lazyspec] at its end; the rest is as it was")
    return Step(name, "refused", "appending [tool.lazyspec] would change its other tables "
                "(is `tool` an inline table?); add it by hand:" + TOOL_TABLE)


def _pre_commit(root: Path, force: bool) -> Step:
    name = ".pre-commit-config.yaml"
    path = root / name
    text = "repos:\n" + HOOK_ENTRY
    if not path.exists() or force:
        _write(path, "# pre-commit hooks (https://pre-commit.com): `pre-commit install`\n" + text)
        return Step(name, "wrote")
    old = _existing(path)
    if isinstance(old, Step):
        return old
    if "lazyspec" in old:
        return Step(name, "kept", "it already mentions lazyspec")
    if _has_aliases(old):  # comparing data with shared parts can take exponential time
        return Step(name, "refused", "it uses YAML aliases (`*name`), so lazyspec will not "
                    "check an append to it; add the hook by hand:\n" + HOOK_ENTRY)
    entry = yaml.safe_load(text)["repos"][0]

    def expect(before: Any) -> Any:
        if not isinstance(before, dict) or not isinstance(before.get("repos"), list):
            return None  # nothing to append to: never equal
        return {**before, "repos": [*before["repos"], entry]}

    for indent in _item_indents(old):
        if _append_checked(path, old, _shift(HOOK_ENTRY, indent - 2), yaml.safe_load, expect):
            return Step(name, "added to", "a local lazyspec-check hook at the end of `repos:`")
    return Step(name, "refused", "the hook could not be appended to its `repos:` list (is "
                "`repos:` the last key, in block style?); add it by hand:\n" + HOOK_ENTRY)


def _existing(path: Path) -> str | Step:
    """The text of a project file that lazyspec adds to: a regular file of at most 1 MB (a FIFO
    would block, /dev/zero would never end); a Step that refuses it otherwise."""
    try:
        return read_capped(path, MAX_PYPROJECT_BYTES).decode("utf-8")
    except FileTooLarge:
        why = f"it is larger than {MAX_PYPROJECT_BYTES:,} bytes (limit)"
    except OSError as e:
        why = f"it cannot be read ({e.strerror or e})"
    except UnicodeDecodeError:
        why = "it is not UTF-8 text"
    return Step(path.name, "refused", f"{why}; nothing was written to it")


def _has_aliases(text: str) -> bool:
    """Whether the YAML uses an alias (read event by event: no structure is built)."""
    try:
        return any(isinstance(e, yaml.AliasEvent) for e in yaml.parse(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        return False  # not YAML: the append check refuses it


def _item_indents(text: str) -> list[int]:
    """The indentations a `- repo:` item may have in this file: its own, else 2 or 0."""
    seen = [len(line) - len(line.lstrip(" ")) for line in text.splitlines()
            if line.lstrip(" ").startswith("- repo:")]
    return list(dict.fromkeys([*seen[-1:], 2, 0]))


def _shift(text: str, delta: int) -> str:
    """`text` indented `delta` more spaces (fewer when negative)."""
    out = []
    for line in text.splitlines(keepends=True):
        if delta >= 0:
            out.append(" " * delta + line if line.strip() else line)
        else:
            out.append(line[min(-delta, len(line) - len(line.lstrip(" "))):])
    return "".join(out)
