"""A JSON Schema (draft 2020-12) of the spec language, for editors and other tools.

Built from the same key tables that the parser uses (`TOP_LEVEL_KEYS`, `BLOCK_KEYS`,
`NODE_KEYS`, `INPUT_KEYS`, `NAME_RE` and the input dtypes), so a key added there without a
schema for it is an error here rather than a silent gap. Torch-free: `lazyspec schema` stays
fast.

The schema checks what the parser checks (the file's structure: keys, types, names, the forms
of nodes and references) and nothing that needs the spec's meaning (whether an op or a
reference exists, what an expression gives). It uses only keywords that draft-07 validators
understand too (`if`/`then`/`else`, `propertyNames`, `const`; no `prefixItems`,
`unevaluatedProperties` or `dependentSchemas`), because editors' YAML plugins mostly implement
draft 7 and read `$defs` through plain JSON pointers.
"""

from __future__ import annotations

import json
from typing import Any

from lazyspec.inputs import DTYPES
from lazyspec.spec.parse import (
    BLOCK_KEYS,
    INPUT_KEYS,
    LATER_NODE_KEYS,
    MAX_NAME_CHARS,
    MAX_TEMPLATE_CHARS,
    NAME_RE,
    NODE_KEYS,
    TOP_LEVEL_KEYS,
)

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://lazyspec.dev/schema/spec-v1.json"

Schema = dict[str, Any]

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# An op: `Name`, `pkg.mod.Name` or `Name(arguments)`, as `parse_call` reads it (whitespace
# around the parts allowed; the arguments themselves are checked by lazyspec, not here).
_OP_NAME = rf"{_IDENT}(\s*\.\s*{_IDENT})*"
OP_PATTERN = rf"^\s*{_OP_NAME}\s*(\([\s\S]*\))?\s*$"
OP_NAME_PATTERN = rf"^\s*{_OP_NAME}\s*$"
# A reference as a string: a name, `name.K`, `-k` or `-k.K` (what `in:` and `outputs:` read).
REF_PATTERN = rf"^\s*({_IDENT}|-[0-9]+)(\.-?[0-9]+)?\s*$"
# A parameter path for `tie:`: module names (node names or list indices), then the parameter.
PARAM_PATH_PATTERN = r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/$defs/{name}"}


def _nullable(schema: Schema) -> Schema:
    """`schema` or null: the parser reads an empty `key:` as an empty mapping or list.

    Adds "null" to the type rather than wrapping in anyOf, so that validators report the real
    problem inside (an unknown key, a bad name) instead of "not valid under any of the schemas".
    """
    return schema | {"type": [schema["type"], "null"]}


def _counted(keys: tuple[str, ...], base: int, exact: bool) -> Schema:
    """The object has at most (exactly, if `exact`) `base` properties besides those of `keys`.

    JSON Schema cannot count the keys that match no `properties` entry, so this walks the
    presence of each of `keys` as a tree of if/then/else and bounds the total at each leaf.
    """
    if not keys:
        return {"minProperties": base, "maxProperties": base} if exact else {"maxProperties": base}
    first, rest = keys[0], keys[1:]
    return {"if": {"required": [first]},
            "then": _counted(rest, base + 1, exact),
            "else": _counted(rest, base, exact)}


def _check_keys(table: tuple[str, ...], schemas: dict[str, Schema], what: str) -> None:
    if list(table) != list(schemas):
        raise RuntimeError(f"the schema of {what} is out of step with the parser's keys: "
                           f"{list(table)} != {list(schemas)}")


def _defs() -> dict[str, Schema]:
    name_pattern = NAME_RE.pattern
    defs: dict[str, Schema] = {}
    defs["name"] = {
        "description": "A name: starts with a letter or '_' and holds letters, digits and '_'.",
        "type": "string", "pattern": name_pattern, "maxLength": MAX_NAME_CHARS,
    }
    defs["text"] = {
        "description": "Free text.",
        "type": ["string", "number", "boolean", "null"],
    }
    defs["value"] = {
        "description": "A plain value: a number, a string, a boolean, null or a list of values. "
                       "A string written ${expr} is evaluated as an expression over the params.",
        "type": ["number", "string", "boolean", "null", "array"],
        "items": _ref("value"),
    }
    defs["params"] = _nullable({
        "description": "Named values used in expressions: `params: {d: 256, widths: [64, 128]}`. "
                       "A value may be ${expr} over other params, in any order.",
        "type": "object",
        "propertyNames": _ref("name"),
        "additionalProperties": _ref("value"),
    })
    defs["scales"] = _nullable({
        "description": "Named sets of param overrides, chosen with `--scale NAME`: "
                       "`scales: {small: {d: 64, n_layer: 2}}`. Every entry must name a param.",
        "type": "object",
        "propertyNames": _ref("name"),
        "additionalProperties": _ref("params"),
    })
    defs["dim"] = {
        "description": "A dimension: a number, a name (a param's name takes its value; any "
                       "other name, such as B or T, is a label that matches any size) or ${expr}.",
        "type": ["integer", "string"],
    }
    input_props: dict[str, Schema] = {
        "shape": {"description": "The input's shape: a list of dimensions such as [B, T]; "
                                 "absent or null: any shape.",
                  "type": ["array", "null"], "items": _ref("dim")},
        "dtype": {"description": "The input's dtype (default: the --dtype, float32).",
                  "enum": list(DTYPES)},
        "range": {"description": "The values an integer input holds, [lo, hi) (hi excluded): "
                                 "`range: [0, vocab_size]`; an Embedding it indexes must have "
                                 "hi rows.",
                  "type": "array", "items": _ref("dim"), "minItems": 2, "maxItems": 2},
    }
    _check_keys(INPUT_KEYS, input_props, "an input")
    defs["input"] = {
        "description": "An input: a shape ([B, 20]), {shape: [B, T], dtype: int64}, or nothing "
                       "for any shape.",
        "type": ["array", "object", "null"],
        "items": _ref("dim"),
        "properties": input_props,
        "additionalProperties": False,
    }
    defs["inputs"] = _nullable({
        "description": "Named inputs, in order: `inputs: {idx: {shape: [B, T], dtype: int64}}` "
                       "or `inputs: {x: [B, 20]}`. Absent: one input called `input`, any shape.",
        "type": "object",
        "propertyNames": _ref("name"),
        "additionalProperties": _ref("input"),
    })
    defs["ref"] = {
        "description": "A reference: an earlier node's name, an input's name, `name.K` for "
                       "element K of a node's outputs, or -1, -2, ... for earlier nodes by "
                       "position (quote \"-1.0\" for an element of one).",
        "type": ["string", "integer"],
        "pattern": REF_PATTERN,
        "maximum": -1,
    }
    defs["refs"] = {
        "description": "One reference or a list of them.",
        "type": ["string", "integer", "array"],
        "pattern": REF_PATTERN,
        "maximum": -1,
        "items": _ref("ref"),
        "minItems": 1,
    }
    defs["op"] = {
        "description": "An op: a block of the spec, a built-in op or a torch.nn module class, "
                       "written as in Python: `ReLU`, `LazyLinear(256)`, "
                       "`LazyConv2d(64, 3, stride=2)`. Arguments are expressions over the "
                       "params.",
        "type": "string", "pattern": OP_PATTERN,
    }
    defs["opName"] = {
        "description": "An op's name only (its arguments are in `args:` and `kwargs:`).",
        "type": "string", "pattern": OP_NAME_PATTERN,
    }
    node_props: dict[str, Schema] = {
        "op": _ref("op") | {"description": "The op of an unnamed node (or of a node named by "
                                           "`name:`): `- op: Dropout(0.1)` then `repeat: 2`."},
        "name": _ref("name") | {"description": "The node's name, in the long form."},
        "args": _nullable({"description": "Long form: the op's positional arguments, as YAML "
                                          "values (${expr} for an expression).",
                           "type": "array", "items": _ref("value")}),
        "kwargs": _nullable({"description": "Long form: the op's keyword arguments, as YAML "
                                            "values (${expr} for an expression).",
                             "type": "object", "propertyNames": _ref("name"),
                             "additionalProperties": _ref("value")}),
        "in": _ref("refs") | {"description": "The node's input(s): a node or input name, "
                                             "`name.K`, -1, -2, ..., or a list of them. "
                                             "Default: the previous node's output."},
        "repeat": {"description": "Fresh copies of the op, applied in sequence: a whole number "
                                  ">= 0 or an expression (`n_layer`, `n - 1`); 0 makes the node "
                                  "the identity.",
                   "type": ["integer", "string"], "minimum": 0, "minLength": 1},
        "when": {"description": "A condition (a boolean or an expression such as "
                                "`stride != 1`); false: the node passes its first input through.",
                 "type": ["boolean", "string"]},
        "share": _ref("name") | {"description": "Reuse the module (and parameters) of an "
                                                "earlier named node of the same list; the node "
                                                "has no op."},
        "names": {"description": "How a named `repeat:` names its copies: a template whose "
                                 "`{expr}` fields are expressions over the params and the copy "
                                 "index `i`, e.g. `encoder_layer_{i}` or `denselayer{i + 1}`.",
                  "type": "string", "minLength": 1, "maxLength": MAX_TEMPLATE_CHARS},
        "index": _ref("name") | {"description": "A name for the copy index (0, 1, ...) of a "
                                                "`repeat:` node, usable in its op's arguments: "
                                                "`index: k` then `Block(first=k == 0)`."},
        "trainable": {"description": "false: every parameter the node makes is frozen "
                                     "(requires_grad false); a boolean or an expression.",
                      "type": ["boolean", "string"]},
    }
    _check_keys(NODE_KEYS, node_props, "a node")

    def keys(*names: str, deny: tuple[str, ...] = ()) -> dict[str, Schema | bool]:
        out: dict[str, Schema | bool] = {k: node_props[k] for k in names}
        out.update({k: False for k in deny})
        return out

    long_args: Schema = {"anyOf": [{"required": ["args"]}, {"required": ["kwargs"]}]}
    op_keys = ("op", "name", "args", "kwargs", "in", "repeat", "when", "names", "index",
               "trainable")
    defs["opNode"] = {
        "description": "An unnamed node with extra keys, or the long form: `op:` holds the op, "
                       "`name:` the name, `args:`/`kwargs:` its arguments.",
        "type": "object",
        "required": ["op"],
        "properties": keys(*op_keys),
        "additionalProperties": False,
        "if": long_args,
        "then": {"properties": {"op": _ref("opName")}},
    }
    named_keys = ("args", "kwargs", "in", "repeat", "when", "names", "index", "trainable")
    defs["namedNode"] = {
        "description": "A named node: `- fc: LazyLinear(10)`, with `in:`, `repeat:`, `when:` "
                       "(or `args:`/`kwargs:`) on the following lines. Exactly one key is the "
                       "name; in a flow mapping {...} quote an op that holds a comma.",
        "type": "object",
        "properties": keys(*named_keys, deny=("op", "name", "share")),
        "additionalProperties": _ref("op"),
        "allOf": [
            _counted(named_keys, 1, exact=True),
            {"if": long_args,
             "then": {"properties": {k: True for k in named_keys},
                      "additionalProperties": _ref("opName")}},
        ],
    }
    share_keys = ("in", "when")
    defs["shareNode"] = {
        "description": "A node that reuses an earlier node's module: `- enc_b:` then "
                       "`share: enc_a` (and `in:`, `when:`).",
        "type": "object",
        "required": ["share"],
        "properties": keys("share", "name", *share_keys,
                           deny=("op", "args", "kwargs", "repeat")),
        "additionalProperties": {"description": "The node's name; a share node has no op.",
                                 "type": "null"},
        # share, plus the name (a name key or `name:`, not both), plus in/when.
        **_counted(share_keys, 2, exact=False),
    }
    # `- index: Embedding(10, 4)`: a node whose one key is a key added after version 1 is named
    # by it, as it was before that key existed.
    lone_later_key: Schema = {"maxProperties": 1,
                              "anyOf": [{"required": [k]} for k in LATER_NODE_KEYS]}
    defs["nodeMapping"] = {
        "type": "object",
        "propertyNames": _ref("name"),
        "if": {"required": ["op"]},
        "then": _ref("opNode"),
        "else": {"if": {"required": ["share"]},
                 "then": _ref("shareNode"),
                 "else": {"if": lone_later_key,
                          "then": {"additionalProperties": _ref("op")},
                          "else": _ref("namedNode")}},
    }
    defs["node"] = {
        "description": "A node: an op (`ReLU`, `LazyLinear(256)`), a named node "
                       "(`fc: LazyLinear(10)`), an unnamed node with extra keys (`op: ...`), "
                       "the long form (op, name, args, kwargs) or a share node. Extra keys: "
                       + ", ".join(NODE_KEYS) + ".",
        "type": ["string", "object"],
        "pattern": OP_PATTERN,
        "if": {"type": "object"},
        "then": _ref("nodeMapping"),
    }
    defs["layers"] = {
        "description": "The list of nodes, at least one.",
        "type": "array", "items": _ref("node"), "minItems": 1,
    }
    defs["outputs"] = _ref("refs") | {
        "description": "What the graph returns: a reference or a list of them (a tuple). "
                       "Default: the last node's output."}
    block_props: dict[str, Schema] = {
        "params": _ref("params") | {"description": "The block's params, in order: positional "
                                                   "arguments bind in this order; the values "
                                                   "are the defaults."},
        "inputs": _ref("inputs") | {"description": "The block's named inputs (only the names "
                                                   "matter); absent: one input, `input`."},
        "layers": _ref("layers"),
        "outputs": _ref("outputs"),
        "description": _ref("text") | {"description": "Free text."},
    }
    _check_keys(BLOCK_KEYS, block_props, "a block")
    defs["block"] = {
        "description": "A reusable sub-network, used like an op: `DoubleConv(32)`.",
        "type": "object",
        "properties": block_props,
        "required": ["layers"],
        "additionalProperties": False,
    }
    defs["tie"] = {
        "description": "A pair [target, source] of parameter paths: after the dry run the "
                       "target becomes the source's parameter.",
        "type": "array",
        "items": {"type": "string", "pattern": PARAM_PATH_PATTERN},
        "minItems": 2, "maxItems": 2,
    }
    return defs


def spec_schema() -> Schema:
    """The JSON Schema (draft 2020-12) of a lazyspec spec file, language versions 1 and 2."""
    top: dict[str, Schema] = {
        "lazyspec": {"description": "The language version: 1 (the default) or 2 (copies made "
                                    "by `repeat:` also receive the node's other inputs).",
                     "type": "integer", "enum": [1, 2]},
        "name": _ref("text") | {"description": "The model's name, the report's title."},
        "description": _ref("text") | {"description": "Free text about the model."},
        "params": _ref("params"),
        "scales": _ref("scales"),
        "inputs": _ref("inputs"),
        "include": _nullable({
            "description": "Spec files, relative to this one, whose params, scales and blocks "
                           "this spec may use.",
            "type": "array", "items": {"type": "string", "minLength": 1},
        }),
        "blocks": _nullable({
            "description": "Reusable sub-networks by name, used like ops.",
            "type": "object",
            "propertyNames": _ref("name"),
            "additionalProperties": _ref("block"),
        }),
        "layers": _ref("layers") | {"description": "The model's list of nodes (required)."},
        "outputs": _ref("outputs"),
        "tie": _nullable({
            "description": "Pairs of parameter paths made one parameter after the dry run: "
                           "`tie: [[lm_head.weight, wte.weight]]`.",
            "type": "array", "items": _ref("tie"),
        }),
    }
    _check_keys(TOP_LEVEL_KEYS, top, "the spec")
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_ID,
        "title": "lazyspec spec, language versions 1 and 2",
        "description": "A YAML model spec that lazyspec compiles into a lazy PyTorch network. "
                       "This schema checks the file's structure (keys, value types, names, "
                       "node forms); `lazyspec infer` checks ops, references and expressions.",
        "type": "object",
        "properties": top,
        "required": ["layers"],
        "additionalProperties": False,
        "$defs": _defs(),
    }


def schema_json() -> str:
    """The schema as pretty JSON, the same text on every run (ends with a newline)."""
    return json.dumps(spec_schema(), indent=2, ensure_ascii=True) + "\n"
