"""The JSON Schema of the spec language: valid, in step with the parser, accepts every bundled
spec and documented example, rejects structural mistakes, and is built without torch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from jsonschema.exceptions import best_match

from lazyspec.inputs import DTYPES
from lazyspec.spec.parse import BLOCK_KEYS, INPUT_KEYS, NODE_KEYS, TOP_LEVEL_KEYS, parse_file
from lazyspec.spec.schema import SCHEMA_DIALECT, SCHEMA_ID, schema_json, spec_schema

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
DOC = ROOT / "docs" / "spec-language.md"
CATALOGUE = ROOT / "tests" / "cases" / "invalid"

YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)
INVALID = re.compile(r"^# invalid", re.MULTILINE)
TOP_LAYERS = re.compile(r"^layers:", re.MULTILINE)


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(spec_schema())


def errors(validator: jsonschema.Draft202012Validator, doc: Any) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]


def doc_examples() -> list[tuple[int, str]]:
    """(line, text) of the doc's ```yaml blocks that are whole specs meant to be valid."""
    text = DOC.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in YAML_BLOCK.finditer(text)
            if TOP_LAYERS.search(m.group(1)) and not INVALID.search(m.group(1))]


# --- the schema itself ---------------------------------------------------------------------------


def test_schema_is_a_valid_2020_12_schema():
    schema = spec_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == SCHEMA_DIALECT == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == SCHEMA_ID
    assert schema["title"] and schema["description"]
    assert schema["required"] == ["layers"]
    assert schema["additionalProperties"] is False


def test_schema_follows_the_parsers_key_tables():
    schema = spec_schema()
    defs = schema["$defs"]
    assert list(schema["properties"]) == list(TOP_LEVEL_KEYS)
    assert list(defs["block"]["properties"]) == list(BLOCK_KEYS)
    assert list(defs["input"]["properties"]) == list(INPUT_KEYS)
    assert defs["input"]["properties"]["dtype"]["enum"] == list(DTYPES)
    node_keys = set(defs["opNode"]["properties"]) | set(defs["namedNode"]["properties"]) \
        | set(defs["shareNode"]["properties"])
    assert node_keys == set(NODE_KEYS)


def test_schema_reads_the_same_as_draft_7():
    """Editors' YAML plugins mostly implement draft 7: the schema uses no keyword that draft 7
    lacks, and puts nothing but a description beside a `$ref` (draft 7 ignores `$ref`'s
    siblings)."""
    schema = spec_schema()
    newer = {"prefixItems", "unevaluatedProperties", "unevaluatedItems", "dependentSchemas",
             "dependentRequired", "$dynamicRef", "$dynamicAnchor", "$anchor", "minContains",
             "maxContains", "$recursiveRef"}
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            found.update(newer & set(node))
            if "$ref" in node:
                assert set(node) <= {"$ref", "description"}, node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    assert found == set()
    jsonschema.Draft7Validator.check_schema(schema)
    draft7 = jsonschema.Draft7Validator(schema)
    for path in SPECS:
        assert list(draft7.iter_errors(yaml.safe_load(path.read_text(encoding="utf-8")))) == []
    for text, *_ in INVALID_SPECS.values():
        assert list(draft7.iter_errors(yaml.safe_load(text))) != [], text


def test_main_properties_have_descriptions():
    schema = spec_schema()
    defs = schema["$defs"]

    def described(s: dict[str, Any]) -> bool:
        return bool(s.get("description")) or (
            "$ref" in s and bool(defs[s["$ref"].rsplit("/", 1)[1]].get("description")))

    props = {**schema["properties"], **defs["block"]["properties"],
             **defs["opNode"]["properties"], "share": defs["shareNode"]["properties"]["share"]}
    missing = [k for k, s in props.items() if not described(s)]
    assert missing == []


def test_schema_json_is_stable():
    text = schema_json()
    assert text == schema_json()
    assert text.endswith("}\n")
    assert json.loads(text) == spec_schema()
    assert text.isascii()
    # The same text in other processes, whatever the hash seed.
    code = "import sys; from lazyspec.spec.schema import schema_json; " \
           "sys.stdout.write(schema_json())"
    for seed in ("0", "12345"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        assert out == text


def test_schema_is_built_without_torch():
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # any `import torch` now raises ImportError\n"
        "from lazyspec.spec.schema import schema_json, spec_schema\n"
        "spec_schema(); schema_json()\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy'))\n"
        "assert loaded == ['torch'], loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- what it accepts ------------------------------------------------------------------------------


def test_there_are_bundled_specs():
    assert len(SPECS) >= 8


@pytest.mark.parametrize("path", SPECS, ids=[p.name for p in SPECS])
def test_bundled_spec_is_valid(path: Path, validator: jsonschema.Draft202012Validator):
    assert errors(validator, yaml.safe_load(path.read_text(encoding="utf-8"))) == []


def test_there_are_doc_examples():
    assert len(doc_examples()) >= 15


@pytest.mark.parametrize(("line", "text"), doc_examples(),
                         ids=[f"line{line}" for line, _ in doc_examples()])
def test_doc_example_is_valid(line: int, text: str, validator: jsonschema.Draft202012Validator):
    assert errors(validator, yaml.safe_load(text)) == []


VALID = {
    "empty_keys": """
params:
scales:
inputs:
  x:
  y: {dtype: int64}
  z: {shape: }
include: []
blocks:
tie:
layers:
  - ReLU
""",
    "node_forms": """
name: 42
description:
lazyspec: 1
blocks:
  B:
    description: a block
    inputs: {a: , b: [B, "${2 * 3}"]}
    layers:
      - op: Add
        in: [a, b]
    outputs: [-1]
layers:
  - conv1: LazyConv2d           # named node with args/kwargs
    args: [8, "${1 + 2}", null, [1, 2]]
    kwargs: {padding: 1, bias: false}
    in: input
  - op: LazyLinear              # long form
    name: fc
    args:
    kwargs:
  - enc_b:                      # share, named by a key
    share: fc
    in: -2
  - name: enc_c                 # share, named by `name:`
    share: fc
    when: true
  - share: fc                   # share, unnamed
  - nn.ReLU()
  - torch.nn.ReLU
  - "  LazyLinear(\\n    4, bias=false)  "
  - pair: Chunk(2)
    repeat: "${1}"
    when: n > 0
  - op: Add
    in: ["-1.0", pair.1, "pair.-1", -3]
    repeat: 0
outputs: [pair.0, fc, -1]
tie:
  - [fc.weight, conv1.weight]
  - [h.0.attn.weight, "0.weight"]
""",
}


@pytest.mark.parametrize("name", list(VALID))
def test_valid_forms_are_accepted(name: str, validator: jsonschema.Draft202012Validator,
                                  tmp_path: Path):
    assert errors(validator, yaml.safe_load(VALID[name])) == []
    path = tmp_path / "spec.yaml"  # and the parser agrees
    path.write_text(VALID[name], encoding="utf-8")
    assert parse_file(path).problems == []


# --- what it rejects ------------------------------------------------------------------------------

# name -> (spec, JSON path of the best-matching error, text in its message, parser rejects it)
INVALID_SPECS: dict[str, tuple[str, str, str, bool]] = {
    "unknown_top_level_key": ("paramz: {d: 4}\nlayers: [ReLU]\n", "$", "'paramz'", True),
    "missing_layers": ("params: {d: 4}\n", "$", "'layers' is a required property", True),
    "empty_layers": ("layers: []\n", "$.layers", "should be non-empty", True),
    "layers_not_a_list": ("layers: ReLU\n", "$.layers", "is not of type 'array'", True),
    "not_a_mapping": ("- ReLU\n", "$", "is not of type 'object'", True),
    "version_3": ("lazyspec: 3\nlayers: [ReLU]\n", "$.lazyspec", "is not one of [1, 2]", True),
    "version_true": ("lazyspec: true\nlayers: [ReLU]\n", "$.lazyspec", "not of type", True),
    "unknown_block_key": ("blocks:\n  B:\n    param: {c: 1}\n    layers: [ReLU]\n"
                          "layers: [B]\n", "$.blocks.B", "'param' was unexpected", True),
    "block_without_layers": ("blocks:\n  B:\n    params: {c: 1}\nlayers: [B]\n", "$.blocks.B",
                             "'layers' is a required property", True),
    "bad_block_name": ("blocks:\n  my-block:\n    layers: [ReLU]\nlayers: [ReLU]\n", "$.blocks",
                       "does not match", True),
    "bad_param_name": ("params: {d-model: 4}\nlayers: [ReLU]\n", "$.params", "does not match",
                       True),
    "param_is_a_mapping": ("params: {d: {x: 1}}\nlayers: [ReLU]\n", "$.params.d", "not of type",
                           False),
    "two_name_keys": ("layers:\n  - a: ReLU\n    b: ReLU\n", "$.layers[0]",
                      "has too many properties", True),
    "flow_map_pitfall": ("layers:\n  - {head: LazyLinear(9, bias=false)}\n", "$.layers[0]",
                         "has too many properties", True),
    "typo_beside_a_name": ("layers:\n  - fc: ReLU\n    repaet: 2\n", "$.layers[0]",
                           "has too many properties", True),
    "typo_beside_op": ("layers:\n  - op: ReLU\n    repaet: 2\n", "$.layers[0]",
                       "'repaet' was unexpected", True),
    "name_key_beside_op": ("layers:\n  - fc: ReLU\n    op: ReLU\n", "$.layers[0]",
                           "'fc' was unexpected", True),
    "name_key_and_name": ("layers:\n  - fc: ReLU\n    name: g\n", "$.layers[0]",
                          "False schema", True),
    "node_without_op": ("layers:\n  - in: input\n    repeat: 2\n", "$.layers[0]",
                        "does not have enough properties", True),
    "named_node_without_op": ("layers:\n  - fc:\n", "$.layers[0].fc", "not of type 'string'",
                              True),
    "node_is_a_number": ("layers:\n  - 42\n", "$.layers[0]", "not of type", True),
    "op_not_a_call": ("layers:\n  - 3 + 4\n", "$.layers[0]", "does not match", True),
    "op_unclosed": ("layers:\n  - LazyLinear(4\n", "$.layers[0]", "does not match", True),
    "bad_node_name": ("layers:\n  - fc-1: ReLU\n", "$.layers[0]", "does not match", True),
    "args_beside_a_call": ("layers:\n  - op: LazyLinear(4)\n    args: [4]\n",
                           "$.layers[0].op", "does not match", True),
    "repeat_negative": ("layers:\n  - op: ReLU\n    repeat: -1\n", "$.layers[0].repeat",
                        "less than the minimum of 0", False),
    "repeat_float": ("layers:\n  - op: ReLU\n    repeat: 1.5\n", "$.layers[0].repeat",
                     "not of type", False),
    "repeat_bool": ("layers:\n  - op: ReLU\n    repeat: true\n", "$.layers[0].repeat",
                    "not of type", False),
    "when_a_list": ("layers:\n  - op: ReLU\n    when: [true]\n", "$.layers[0].when",
                    "not of type", True),
    "in_zero": ("layers:\n  - op: ReLU\n    in: 0\n", "$.layers[0].in",
                "greater than the maximum of -1", True),
    "in_bad_index": ("layers:\n  - op: ReLU\n    in: qkv.q\n", "$.layers[0].in",
                     "does not match", True),
    "share_with_op": ("layers:\n  - a: ReLU\n  - b: ReLU\n    share: a\n", "$.layers[1].b",
                      "not of type 'null'", True),
    "share_with_repeat": ("layers:\n  - a: ReLU\n  - b:\n    share: a\n    repeat: 2\n",
                          "$.layers[1]", "False schema", True),
    "outputs_empty": ("layers: [ReLU]\noutputs: []\n", "$.outputs", "should be non-empty",
                      False),
    "tie_three_items": ("layers: [ReLU]\ntie:\n  - [a.weight, b.weight, c.weight]\n",
                        "$.tie[0]", "is too long", True),
    "tie_not_a_pair": ("layers: [ReLU]\ntie: [a.weight]\n", "$.tie[0]",
                       "not of type 'array'", True),
    "unknown_dtype": ("inputs:\n  x: {shape: [B, 4], dtype: int46}\nlayers: [ReLU]\n",
                      "$.inputs.x.dtype", "is not one of", False),
    "unknown_input_key": ("inputs:\n  x: {shap: [B, 4]}\nlayers: [ReLU]\n", "$.inputs.x",
                          "'shap' was unexpected", True),
    "shape_not_a_list": ("inputs:\n  x: {shape: 20}\nlayers: [ReLU]\n", "$.inputs.x.shape",
                         "not of type", True),
    "include_not_text": ("include: [3]\nlayers: [ReLU]\n", "$.include[0]", "not of type", True),
}


@pytest.mark.parametrize("name", list(INVALID_SPECS))
def test_invalid_spec_is_rejected(name: str, validator: jsonschema.Draft202012Validator,
                                  tmp_path: Path):
    text, path, message, parser_rejects = INVALID_SPECS[name]
    error = best_match(validator.iter_errors(yaml.safe_load(text)))
    assert error is not None, "the schema accepts it"
    assert (error.json_path, message in error.message) == (path, True), error.message
    if parser_rejects:  # the schema rejects nothing that lazyspec's parser accepts here
        spec_path = tmp_path / "spec.yaml"
        spec_path.write_text(text, encoding="utf-8")
        assert parse_file(spec_path).problems != []


# Cases of the invalid-spec catalogue whose mistake is in the file's structure: the schema sees
# them. (The other cases need the spec's meaning: unknown ops, references, shapes, ...)
STRUCTURAL_CASES = [
    "block_unknown_key", "input_bad_declaration", "input_bad_dtype", "node_flow_map_pitfall",
    "node_invalid_name", "node_name_and_op", "node_name_not_text", "node_no_op", "node_not_op",
    "node_unknown_key", "node_unknown_key_with_op", "op_call_not_a_name", "op_call_syntax",
    "ref_bad_index", "repeat_negative", "share_with_op", "top_allow_key", "top_layers_not_list",
    "top_missing_layers", "top_not_mapping", "top_params_not_mapping", "top_unknown_key",
    "top_version_3", "top_version_true", "when_not_scalar",
]


@pytest.mark.parametrize("case", STRUCTURAL_CASES)
def test_structural_catalogue_case_is_rejected(case: str,
                                               validator: jsonschema.Draft202012Validator):
    doc = yaml.safe_load((CATALOGUE / f"{case}.yaml").read_text(encoding="utf-8"))
    assert errors(validator, doc) != []


@pytest.mark.parametrize("case", ["expr_undefined_name", "op_unknown_suggest", "ref_unknown",
                                  "share_unknown", "sig_unknown_keyword", "tie_unknown_path"])
def test_semantic_catalogue_case_is_left_to_lazyspec(case: str,
                                                     validator: jsonschema.Draft202012Validator):
    doc = yaml.safe_load((CATALOGUE / f"{case}.yaml").read_text(encoding="utf-8"))
    assert errors(validator, doc) == []
