"""Writing specs as YAML, the way people write them: safe YAML without anchors, short lists in
flow style, `- node` indented under its key, a blank line before each section and each block.
Shared by `export --to yaml` and the importers. Torch-free."""

from __future__ import annotations

import re
from typing import Any

import yaml


class Flow(list[Any]):
    """A short list written in flow style: `[2, 20]`, `in: [a, b]`."""


class _Empty:
    """A key with nothing after it: a share node's name (then `share:`), a block input `x:`."""


EMPTY = _Empty()


class _Dumper(yaml.SafeDumper):
    """Safe YAML, never with anchors or aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # `  - node` under its key, as specs are written


_Dumper.add_representer(Flow, lambda d, data: d.represent_sequence(
    "tag:yaml.org,2002:seq", data, flow_style=True))
_Dumper.add_representer(_Empty, lambda d, data: d.represent_scalar("tag:yaml.org,2002:null", ""))


def is_empty(value: Any) -> bool:
    return isinstance(value, _Empty)


def dump(doc: dict[str, Any], *, ascii_only: bool = False) -> str:
    """`doc` as spec text, sections spaced; `ascii_only` escapes every other character."""
    text = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=not ascii_only,
                     width=10**9, default_flow_style=False)
    return spaced(text)


def spaced(text: str) -> str:
    """A blank line before each top-level section and each block, for reading."""
    out: list[str] = []
    section = ""
    for line in text.splitlines():
        top = re.match(r"[A-Za-z_]\w*:", line)
        if top:
            section = top.group(0)
            if section in ("blocks:", "layers:", "outputs:", "tie:"):
                out.append("")
        elif section == "blocks:" and re.fullmatch(r"  [A-Za-z_]\w*:", line) \
                and not out[-1].startswith("blocks:"):
            out.append("")
        out.append(line)
    return "\n".join(out) + "\n"
