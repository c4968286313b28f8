"""The spec an importer writes, as plain data (node lists, blocks), and its YAML text.

A `Body` is one node list: a block's or the model's. Blocks are kept by their text: two module
instances whose bodies read the same are one block, called twice. Torch-free.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import Any

from lazyspec.spec.yamlwrite import EMPTY, Flow, dump

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Ref:
    """A value a node reads: node `index` of the same list (or the list's input `input`), its
    output `output` when it returns several."""

    index: int | None = None
    input: str | None = None
    output: int | None = None

    def at(self, output: int) -> Ref:
        return Ref(self.index, self.input, output)


@dataclass
class Node:
    name: str | None  # None: named by its index in the list (nn.Sequential's children)
    op: str  # the op call as a spec writes it, or a block's name; "" for a share
    inputs: list[Ref]
    share: str | None = None
    repeat: int | None = None
    trainable: bool = True
    stateful: bool = False  # holds parameters or buffers: kept even when nothing reads it
    outputs: int = 1  # how many values it returns


@dataclass
class Body:
    inputs: list[str]
    nodes: list[Node] = field(default_factory=list)
    outputs: list[Ref] = field(default_factory=list)

    def doc(self, block: bool) -> dict[str, Any]:
        """The body as the spec's keys: (inputs,) layers, outputs."""
        out: dict[str, Any] = {}
        if block and self.inputs != ["input"]:
            out["inputs"] = {name: EMPTY for name in self.inputs}
        out["layers"] = [self._node(i) for i in range(len(self.nodes))]
        last = Ref(len(self.nodes) - 1)
        if self.outputs != [last]:
            refs = [self._ref(r, len(self.nodes)) for r in self.outputs]
            out["outputs"] = refs[0] if len(refs) == 1 else Flow(refs)
        return out

    def prune(self) -> None:
        """Drop function nodes whose value nothing reads (fx keeps dead code): never a node that
        holds tensors, and never where it would renumber an unnamed node after it."""
        while True:
            read = {r.index for n in self.nodes for r in n.inputs} | \
                {r.index for r in self.outputs}
            dead = [i for i, n in enumerate(self.nodes)
                    if i not in read and not n.stateful and n.share is None and n.name
                    and all(m.name is not None for m in self.nodes[i + 1:])]
            if not dead:
                return
            gone = dead[-1]
            del self.nodes[gone]
            for n in self.nodes:
                n.inputs = [_shifted(r, gone) for r in n.inputs]
            self.outputs = [_shifted(r, gone) for r in self.outputs]

    def key(self) -> str:
        """The body's text: equal texts are one block."""
        return dump(self.doc(block=True), ascii_only=True)

    def _ref(self, ref: Ref, position: int) -> str | int:
        """A reference as `in:` and `outputs:` write it from the node at `position`."""
        if ref.input is not None:
            base: str | int = ref.input
        else:
            assert ref.index is not None
            target = self.nodes[ref.index]
            base = target.name if target.name is not None else ref.index - position
        return base if ref.output is None else f"{base}.{ref.output}"

    def _node(self, i: int) -> Any:
        node = self.nodes[i]
        extra: dict[str, Any] = {}
        if node.share is not None:
            extra["share"] = node.share
        default = [Ref(i - 1)] if i else [Ref(input=self.inputs[0])] if self.inputs else []
        if node.inputs and node.inputs != default:  # none: a tensor node, which reads nothing
            refs = [self._ref(r, i) for r in node.inputs]
            extra["in"] = refs[0] if len(refs) == 1 else Flow(refs)
        if node.repeat is not None:
            extra["repeat"] = node.repeat
        if not node.trainable:
            extra["trainable"] = False
        op: Any = EMPTY if node.share is not None else node.op
        if node.name is not None:
            return {node.name: op, **extra}
        return {"op": op, **extra} if extra else op


def _shifted(ref: Ref, gone: int) -> Ref:
    if ref.index is not None and ref.index > gone:
        return Ref(ref.index - 1, ref.input, ref.output)
    return ref


def valid_name(name: str) -> bool:
    return bool(NAME.match(name)) and not keyword.iskeyword(name)
