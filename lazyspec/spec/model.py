"""The validated spec as plain objects: what the parser produces and the compiler reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lazyspec.errors import Diagnostic, Location
from lazyspec.spec.expr import OpCall

DEFAULT_INPUT = "input"


@dataclass(frozen=True)
class Ref:
    """A data-flow reference: `name`, `name.K`, an input's name, or `-k` (k nodes back)."""

    target: str | int
    index: int | None
    loc: Location
    text: str


@dataclass
class Param:
    name: str
    value: Any  # a YAML value; `${...}` strings are Expr
    loc: Location


@dataclass
class InputDecl:
    name: str
    shape: list[Any] | None  # ints, dim names (str) or Expr; None: any shape
    dtype: str | None
    loc: Location
    dim_locs: list[Location] = field(default_factory=list)  # where each dimension is written
    range: list[Any] | None = None  # [lo, hi): the values an integer input holds (ints or Expr)


@dataclass
class Node:
    loc: Location
    position: int  # index in its list, for `-k` references
    name: str | None
    call: OpCall | None = None  # None for a `share:` node or a node that failed to parse
    share: tuple[str, Location] | None = None
    inputs: list[Ref] | None = None
    repeat: Any = None  # int or Expr; None: 1
    when: Any = None  # bool or Expr; None: true
    repeat_loc: Location | None = None
    when_loc: Location | None = None
    names: str | None = None  # `names:` template of repeated copies, e.g. "encoder_layer_{i}"
    names_parts: list[Any] = field(default_factory=list)  # its text pieces and {Expr} fields
    names_loc: Location | None = None
    index: str | None = None  # `index:` the copy index's name in the repeated op's arguments
    index_loc: Location | None = None
    trainable: Any = None  # bool or Expr; None: true. False freezes every parameter it makes
    trainable_loc: Location | None = None
    broken: bool = False  # failed to parse: kept so references to it still resolve

    @property
    def label(self) -> str:
        return self.name if self.name is not None else f"#{self.position}"


@dataclass
class Graph:
    """A list of nodes with its inputs and outputs: the model itself, or a block's body."""

    inputs: list[InputDecl]
    layers: list[Node]
    outputs: list[Ref] | None
    loc: Location

    @property
    def input_names(self) -> list[str]:
        return [i.name for i in self.inputs] or [DEFAULT_INPUT]


@dataclass
class Block:
    name: str
    params: dict[str, Param]
    graph: Graph
    loc: Location


@dataclass(frozen=True)
class Tie:
    target: str  # becomes the same Parameter as `source`
    source: str
    loc: Location  # of the target (the entry)
    source_loc: Location | None = None


@dataclass
class Spec:
    path: str
    version: int
    name: str | None
    description: str | None
    params: dict[str, Param]
    scales: dict[str, dict[str, Param]]
    graph: Graph
    blocks: dict[str, Block]
    ties: list[Tie]
    includes: list[tuple[str, Location]] = field(default_factory=list)  # relative path, where
    sources: dict[str, str] = field(default_factory=dict)  # path -> text, for error carets
    read: set[str] = field(default_factory=set)  # paths tried, also unreadable: for --watch
    problems: list[Diagnostic] = field(default_factory=list)  # static errors found so far
