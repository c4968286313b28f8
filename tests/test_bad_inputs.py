"""The catalogue of bad inputs beyond specs: command-line flags, lock files, `pyproject.toml`, and
the limits that keep a hostile spec from using up time or memory.

Each case is (id, command line, files to write, expected exit code, expected code, expected text).
The command runs in-process in a fresh folder holding only the case's files (no pyproject.toml
above it). The expected code is an `error[LSxxx]` that stderr must show (None: a click usage error,
`Error: ...`); the text must appear in stderr, or in stdout for lock drift, which `check` reports
there. No case may print a traceback or an internal error (LS303).

The invalid specs themselves are the other catalogue, tests/cases/invalid/*.yaml
(tests/test_invalid_catalogue.py); together they hold well over 60 cases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import hang_guard

from lazyspec.cli import main
from lazyspec.errors import CODES

MLP = "params: {d: 256}\nlayers:\n  - LazyLinear(d)\n  - ReLU\n  - LazyLinear(10)\n"
TWO = "inputs: {a: [B, 20], b: [B, 20]}\nlayers:\n  - op: Add\n    in: [a, b]\n"
ENTRY = ('version: 1\nspecs:\n  m.yaml:\n    "input=2,20":\n      inputs: ["2,20"]\n'
         "      outputs: [[2, 10]]\n      total: 7946\n")
GOOD_LOCK = ENTRY + ('      params:\n        "0.weight": [256, 20]\n        "0.bias": [256]\n'
                     '        "2.weight": [10, 256]\n        "2.bias": [10]\n')
PYPROJECT = "[tool.lazyspec]\nspecs = ['m.yaml']\n"
RUN = "[[tool.lazyspec.run]]\nspec = 'm.yaml'\ninputs = ['2,20']\n"


@dataclass(frozen=True)
class Bad:
    id: str
    args: list[str]
    files: dict[str, str | bytes] = field(default_factory=dict)
    exit: int = 2
    code: str | None = "LS301"  # None: a click usage error ("Error: ...")
    text: str = ""
    stdout: bool = False  # the text is in stdout (check's report) instead of stderr


def infer(*args: str, spec: str = MLP, **files: str | bytes) -> dict[str, object]:
    """args and files for `lazyspec infer m.yaml ARGS` on the MLP (or `spec`)."""
    return {"args": ["infer", "m.yaml", *args], "files": {"m.yaml": spec, **files}}


def check_lock(lock: str | bytes, *args: str) -> dict[str, object]:
    return {"args": ["check", "m.yaml", "--lock", "l.lock", *args],
            "files": {"m.yaml": MLP, "l.lock": lock}}


def config(toml: str | bytes, *args: str) -> dict[str, object]:
    return {"args": ["check", *args], "files": {"m.yaml": MLP, "pyproject.toml": toml}}


def chain(n: int) -> dict[str, str]:
    """m.yaml includes i1.yaml, which includes i2.yaml, ... n levels."""
    files = {"m.yaml": "include: [i1.yaml]\nlayers:\n  - LazyLinear(d)\n"}
    for i in range(1, n + 1):
        nxt = f"include: [i{i + 1}.yaml]\n" if i < n else ""
        files[f"i{i}.yaml"] = nxt + "params: {d: 4}\n"
    return files


def nested_blocks(n: int) -> str:
    blocks = "".join(f"  B{i}:\n    layers:\n      - B{i + 1}\n" for i in range(n))
    return f"blocks:\n{blocks}  B{n}:\n    layers:\n      - ReLU\nlayers:\n  - B0\n"


def doubling_params(n: int, yaml_lists: bool = False) -> str:
    """Each param a list of two of the one before: 2**n * 9,000 items in little memory."""
    lines = ["params:", "  a: ${[1] * 9000}"]
    prev = "a"
    for i in range(n):
        value = f'["${{{prev}}}", "${{{prev}}}"]' if yaml_lists else f"${{[{prev}, {prev}]}}"
        lines.append(f"  p{i}: {value}")
        prev = f"p{i}"
    return "\n".join([*lines, f"  same: ${{{prev} == {prev}[:]}}", "layers:", "  - ReLU", ""])


CASES: list[Bad] = [
    # --- command-line flags: --input ------------------------------------------------------------
    Bad("input_negative_dim", **infer("--input", "2,-3"), text="bad dimension '-3'"),
    Bad("input_float_dim", **infer("--input", "2,1.5"), text="bad dimension '1.5'"),
    Bad("input_empty", **infer("--input", ""), text="has no dimensions"),
    Bad("input_unreadable", **infer("--input", "2=3"), text="cannot read --input '2=3'"),
    Bad("input_bad_dtype", **infer("--input", "2,20:int46"),
        text="unknown input dtype 'int46'\n  hint: did you mean 'int64'?"),
    Bad("input_unknown_name", **infer("--input", "x=2,20"), text="the model has no input 'x'"),
    Bad("input_dim_over_limit", **infer("--input", "2,99999999999999"), text="is too large"),
    Bad("input_too_many_elements", **infer("--input", "1099511627776,1099511627776"),
        text="more than torch can address"),
    Bad("input_missing", **infer(), text="no shape for input 'input'"),
    Bad("input_declared_rank", **infer("--input", "a=2,20,1", "--input", "b=2,20", spec=TWO),
        exit=1, code="LS202", text="input 'a' is declared [B, 20] (2-d)"),
    Bad("input_named_dim_differs", **infer("--input", "a=2,20", "--input", "b=3,20", spec=TWO),
        exit=1, code="LS202", text="dimension 'B' is 2 in input 'a' but 3 in input 'b'"),
    # --- other flags ----------------------------------------------------------------------------
    Bad("dtype_unknown", **infer("--input", "2,20", "--dtype", "float33"),
        text="unknown dtype 'float33'\n  hint: did you mean 'float32'?"),
    Bad("device_unknown", **infer("--input", "2,20", "--device", "tpu"),
        text="unknown device 'tpu'"),
    Bad("device_unavailable", **infer("--input", "2,20", "--device", "cuda:99"), code="LS302",
        text="device 'cuda:99' is not available"),
    Bad("format_unknown", **infer("--input", "2,20", "--format", "yaml"),
        text="unknown format 'yaml'"),
    Bad("depth_zero", **infer("--input", "2,20", "--depth", "0"), code=None,
        text="Invalid value for '--depth'"),
    Bad("depth_not_a_number", **infer("--input", "2,20", "--depth", "x"), code=None,
        text="Invalid value for '--depth'"),
    Bad("scale_unknown", **infer("--input", "2,20", "--scale", "big"),
        text="unknown scale 'big'"),
    Bad("expect_output_unreadable", **infer("--input", "2,20", "--expect-output", "2,x"),
        text="--expect-output: cannot read shape '2,x'"),
    Bad("expect_output_differs", **infer("--input", "2,20", "--expect-output", "2,11"), exit=1,
        code="LS210", text="output shape [2, 10] differs from the expected [2, 11]"),
    Bad("max_params_unreadable", **infer("--input", "2,20", "--max-params", "lots"),
        text="--max-params: cannot read 'lots'"),
    Bad("max_params_exceeded", **infer("--input", "2,20", "--max-params", "1K"), exit=1,
        code="LS211", text="7,946 parameters exceed the budget of 1,000"),
    Bad("max_bytes_unreadable", **infer("--input", "2,20", "--max-bytes", "2PB"),
        text="--max-bytes: cannot read '2PB'"),
    Bad("max_bytes_exceeded", **infer("--input", "2,20", "--max-bytes", "1KB"), exit=1,
        code="LS212", text="31,784 bytes of parameters at float32 exceed the budget of 1,000"),
    Bad("unknown_option", **infer("--input", "2,20", "--bogus"), code=None,
        text="No such option: --bogus"),
    Bad("traceback_after_the_command", **infer("--traceback"), code=None,
        text="No such option: --traceback"),
    Bad("missing_spec_argument", ["infer"], code=None, text="Missing argument"),
    Bad("unknown_command", ["frobnicate"], code=None, text="No such command 'frobnicate'"),
    Bad("unknown_root_option", ["--nope"], code=None, text="No such option: --nope"),
    Bad("spec_missing", ["infer", "nope.yaml", "--input", "2,20"], code="LS100",
        text="cannot read spec 'nope.yaml'"),
    Bad("spec_is_a_folder", ["infer", ".", "--input", "2,20"], code="LS100",
        text="cannot read spec '.'"),
    Bad("spec_not_utf8", ["infer", "b.yaml", "--input", "2,20"],
        {"b.yaml": b"layers:\n  - \xff\xfe\n"}, code="LS100", text="can't decode byte 0xff"),
    Bad("output_file_missing_folder", **infer("--input", "2,20", "--output-file", "no/out.txt"),
        code="LS100", text="cannot write the report no/out.txt"),
    Bad("config_missing", **infer("--input", "2,20", "--config", "nope.toml"),
        text="--config nope.toml: no such file"),
    Bad("cpu_run_too_large", **infer("--device", "cpu", "--input", "100000,100000,100000"),
        code="LS306", text="a dry run on cpu needs about"),
    Bad("cpu_later_run_too_large",
        **infer("--device", "cpu", "--input", "2,20", "--input", "100000,100000,100000"),
        code="LS306", text="a dry run on cpu needs about"),
    # --- --set ----------------------------------------------------------------------------------
    Bad("set_not_key_value", **infer("--input", "2,20", "--set", "d"),
        text="--set 'd' is not KEY=VALUE"),
    Bad("set_empty_key", **infer("--input", "2,20", "--set", "=5"),
        text="--set '=5' is not KEY=VALUE"),
    Bad("set_unknown_param", **infer("--input", "2,20", "--set", "w=5"),
        text="the spec has no param 'w'"),
    Bad("set_mapping", **infer("--input", "2,20", "--set", "d={a: 1}"),
        text="is not a number, string, boolean or list"),
    Bad("set_yaml_alias", **infer("--input", "2,20", "--set", "d=&a [*a]"),
        text="--set d: the value is not plain YAML data (YAML anchor '&a'"),
    Bad("set_yaml_tag", **infer("--input", "2,20", "--set",
                                "d=!!python/object/apply:os.system [true]"),
        text="YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed"),
    Bad("set_yaml_too_deep", **infer("--input", "2,20", "--set", "d=" + "[" * 100),
        text="nesting deeper than 64 levels"),
    Bad("set_yaml_two_documents", **infer("--input", "2,20", "--set", "d=1\n---\n2"),
        text="exactly one YAML document"),
    Bad("set_expression_syntax", **infer("--input", "2,20", "--set", "d=${1 +}"),
        text="--set d: invalid expression '1 +'"),
    Bad("set_expression_import", **infer("--input", "2,20", "--set", "d=${__import__('os')}"),
        text="--set d: call of '__import__' is not allowed"),
    Bad("set_expression_fails", **infer("--input", "2,20", "--set", "d=${1 // 0}"),
        text="--set d: cannot evaluate '1 // 0'"),
    Bad("set_expression_huge", **infer("--input", "2,20", "--set", "d=${10**10**10}"),
        text="too large (limit: 256-bit numbers)"),
    # --- other commands -------------------------------------------------------------------------
    Bad("show_format_dot", ["show", "m.yaml", "--format", "dot"], {"m.yaml": MLP},
        text="unknown format 'dot'"),
    Bad("graph_format_svg", ["graph", "m.yaml", "--format", "svg"], {"m.yaml": MLP},
        text="unknown graph format 'svg'"),
    Bad("export_target_onnx", ["export", "m.yaml", "--input", "2,20", "--to", "onnx"],
        {"m.yaml": MLP}, text="unknown export target 'onnx'"),
    Bad("export_state_dict_needs_output", ["export", "m.yaml", "--input", "2,20", "--to",
                                           "state-dict"], {"m.yaml": MLP},
        text="--to state-dict writes a binary file: give --output PATH"),
    Bad("export_init_unknown", ["export", "m.yaml", "--input", "2,20", "--to", "state-dict",
                                "--output", "x.pt", "--init", "bogus"], {"m.yaml": MLP},
        text="unknown init 'bogus'"),
    Bad("export_init_bad_value", ["export", "m.yaml", "--input", "2,20", "--to", "state-dict",
                                  "--output", "x.pt", "--init", "normal:x"], {"m.yaml": MLP},
        text="the value after ':' must be a number"),
    Bad("export_output_missing_folder", ["export", "m.yaml", "--input", "2,20", "--output",
                                         "no/x.yaml"], {"m.yaml": MLP}, code="LS100",
        text="cannot write the report no/x.yaml"),
    Bad("export_state_dict_missing_folder", ["export", "m.yaml", "--input", "2,20", "--to",
                                             "state-dict", "--output", "no/x.pt"],
        {"m.yaml": MLP}, code="LS100", text="cannot write the state dict no/x.pt"),
    Bad("export_seed_not_a_number", ["export", "m.yaml", "--input", "2,20", "--seed", "x"],
        {"m.yaml": MLP}, code=None, text="Invalid value for '--seed'"),
    Bad("check_no_specs", ["check", "empty"], {"empty/readme.txt": "not a spec"},
        text="no specs to check"),
    Bad("lock_into_missing_folder", ["lock", "m.yaml", "--input", "2,20", "--lock",
                                     "no/dir/l.lock"], {"m.yaml": MLP}, code="LS100",
        text="cannot write the lock file no/dir/l.lock: No such file or directory"),
    # --- lock files -----------------------------------------------------------------------------
    Bad("lock_missing_entry", **check_lock("version: 1\nspecs: {}\n", "--input", "2,20"),
        exit=1, code=None, stdout=True, text="no lock entry for m.yaml [input=2,20]"),
    Bad("lock_changed", **check_lock(GOOD_LOCK.replace("[256, 20]", "[128, 20]")), exit=1,
        code=None, stdout=True, text="0.weight [128, 20] -> [256, 20]"),
    Bad("lock_unused_entry", **check_lock(GOOD_LOCK + '    "input=3,20":\n      inputs: ["3,20"]\n'
                                          "      outputs: [[3, 10]]\n      total: 7946\n",
                                          "--input", "2,20"),
        exit=1, code=None, stdout=True, text="unused lock entry: m.yaml [input=3,20]"),
    Bad("lock_not_yaml", **check_lock("version: 1\nspecs: {\n"), code="LS305",
        text="not valid YAML"),
    Bad("lock_no_version", **check_lock("specs: {}\n"), code="LS305",
        text="expected `version: 1` at the top"),
    Bad("lock_version_2", **check_lock("version: 2\nspecs: {}\n"), code="LS305",
        text="expected `version: 1` at the top"),
    Bad("lock_empty", **check_lock(""), code="LS305", text="expected `version: 1` at the top"),
    Bad("lock_specs_a_list", **check_lock("version: 1\nspecs: [a, b]\n"), code="LS305",
        text="`specs` must be a mapping"),
    Bad("lock_spec_not_a_mapping", **check_lock("version: 1\nspecs:\n  m.yaml: 5\n"),
        code="LS305", text="malformed entry"),
    Bad("lock_entry_without_outputs", **check_lock(ENTRY.replace("      outputs: [[2, 10]]\n",
                                                                 "")),
        code="LS305", text="malformed entry (KeyError: 'outputs')"),
    Bad("lock_outputs_not_a_list", **check_lock(ENTRY.replace("[[2, 10]]", "5")),
        code="LS305", text="`outputs` must be a list of shapes"),
    Bad("lock_total_not_a_number", **check_lock(ENTRY.replace("7946", "many")), code="LS305",
        text="`total` must be a whole number"),
    Bad("lock_total_infinite", **check_lock(ENTRY.replace("7946", ".inf")), code="LS305",
        text="`total` must be a whole number"),
    Bad("lock_params_a_list", **check_lock(ENTRY + "      params: [1, 2]\n"), code="LS305",
        text="malformed entry"),
    Bad("lock_param_shape_not_numbers", **check_lock(ENTRY + "      params: {a: [x]}\n"),
        code="LS305", text="the shape of 'a' must be a list of whole numbers"),
    Bad("lock_param_shape_infinite", **check_lock(ENTRY + "      params: {a: [2, .inf]}\n"),
        code="LS305", text="the shape of 'a' must be a list of whole numbers"),
    Bad("lock_scale_not_a_name", **check_lock(ENTRY + "      scale: [1]\n"), code="LS305",
        text="`scale` must be a name"),
    Bad("lock_set_not_a_mapping", **check_lock(ENTRY + "      set: [1]\n"), code="LS305",
        text="`set` must map param names to values"),
    Bad("lock_not_utf8", **check_lock(b"version: 1\n\xff\xfe\n"), code="LS305",
        text="cannot read it"),
    Bad("lock_yaml_alias", **check_lock("version: 1\nspecs: &s {a: *s}\n"), code="LS305",
        text="YAML anchor '&s' is not allowed"),
    Bad("lock_billion_laughs", **check_lock(
        "version: 1\nx: &a [1, 1, 1, 1, 1, 1, 1, 1]\ny: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
        "specs:\n  m.yaml:\n    k: {inputs: [*b, *b, *b, *b], outputs: [], total: 1}\n"),
        code="LS305", text="YAML anchor '&a' is not allowed"),
    Bad("lock_python_tag", **check_lock("version: !!python/object/apply:os.system [true]\n"),
        code="LS305", text="YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
    Bad("lock_duplicate_key", **check_lock("version: 1\nversion: 1\nspecs: {}\n"),
        code="LS305", text="duplicate key 'version'"),
    Bad("lock_is_a_folder", **check_lock("x", "--input", "2,20") | {
        "files": {"m.yaml": MLP, "l.lock/x": ""}}, code="LS305", text="cannot read it"),
    # --- pyproject.toml -------------------------------------------------------------------------
    Bad("toml_invalid", **config("[tool.lazyspec\n"), code="LS304", text="invalid TOML"),
    Bad("toml_not_utf8", **config(b"[tool.lazyspec]\nspecs = ['\xff']\n"), code="LS304",
        text="can't decode byte 0xff"),
    Bad("toml_unknown_key", **config("[tool.lazyspec]\nspec = ['m.yaml']\n"), code="LS304",
        text="unknown key 'spec' in [tool.lazyspec]\n 1 | [tool.lazyspec]\n   | ^\n"
        "  hint: did you mean 'specs'?"),
    Bad("toml_unknown_key_for_infer",
        **infer("--input", "2,20", **{"pyproject.toml": "[tool.lazyspec]\nalow = ['x']\n"}),
        code="LS304", text="did you mean 'allow'?"),
    Bad("toml_tool_not_a_table", **config("tool = 5\n"), code="LS304",
        text="[tool] must be a table"),
    Bad("toml_lazyspec_not_a_table", **config("[tool]\nlazyspec = 5\n"), code="LS304",
        text="[tool.lazyspec] must be a table"),
    Bad("toml_specs_not_strings", **config("[tool.lazyspec]\nspecs = 5\n"), code="LS304",
        text="specs must be a string or a list of strings"),
    Bad("toml_allow_not_strings", **config(PYPROJECT + "allow = [1]\n"), code="LS304",
        text="allow must be a string or a list of strings"),
    Bad("toml_max_params_unreadable", **config(PYPROJECT + "max-params = 'lots'\n"),
        code="LS304", text="max-params: cannot read 'lots'"),
    Bad("toml_max_params_boolean", **config(PYPROJECT + "max-params = true\n"), code="LS304",
        text="max-params: cannot read 'True'"),
    Bad("toml_max_bytes_negative", **config(PYPROJECT + "max-bytes = -5\n"), code="LS304",
        text="max-bytes: cannot read '-5'"),
    Bad("toml_run_not_tables", **config(PYPROJECT + "run = 5\n"), code="LS304",
        text="[[tool.lazyspec.run]] entries must be tables"),
    Bad("toml_run_without_spec", **config(PYPROJECT + "[[tool.lazyspec.run]]\n"
                                          "inputs = ['2,20']\n"), code="LS304",
        text="needs `spec = "),
    Bad("toml_run_unknown_key", **config(PYPROJECT + RUN + "input = ['2,20']\n"),
        code="LS304", text="did you mean 'inputs'?"),
    Bad("toml_run_spec_missing", **config(PYPROJECT + RUN.replace("'m.yaml'", "'nope.yaml'")),
        code="LS304", text="spec 'nope.yaml' does not exist"),
    Bad("toml_run_input_unreadable", **config(PYPROJECT + RUN.replace("2,20", "2,x!")),
        code="LS304", text="bad dimension 'x!'"),
    Bad("toml_run_set_not_a_table", **config(PYPROJECT + RUN + "set = 5\n"), code="LS304",
        text="`set` must be a table of param values"),
    Bad("toml_run_set_nested_table", **config(PYPROJECT + RUN + "set = {d = {a = 1}}\n"),
        code="LS304", text="`set` values must be numbers, strings, booleans or lists"),
    Bad("toml_run_set_date", **config(PYPROJECT + RUN + "set = {d = 1979-05-27}\n"),
        code="LS304", text="`set` values must be numbers, strings, booleans or lists"),
    Bad("toml_run_scale_not_a_string", **config(PYPROJECT + RUN + "scale = 5\n"),
        code="LS304", text="`scale` must be a string"),
    Bad("toml_run_expect_output_unreadable", **config(PYPROJECT + RUN + "expect-output = 'x'\n"),
        code="LS304", text="expect-output: cannot read shape 'x'"),
    Bad("toml_lock_in_missing_folder", **{"args": ["lock"], "files": {
        "m.yaml": MLP, "pyproject.toml": PYPROJECT + "lock = 'no/l.lock'\n" + RUN}},
        code="LS100", text="cannot write the lock file"),
    # --- limits: a hostile spec fails fast, with the limit named --------------------------------
    Bad("limit_file_size", **infer("--input", "2,20", spec="# " + "x" * 1_000_001 + "\n" + MLP),
        exit=1, code="LS106", text="over the 1,000,000-byte limit"),
    Bad("limit_nesting_depth", **infer("--input", "2,20",
                                       spec="params: {a: " + "[" * 80 + "]" * 80 + "}\n" + MLP),
        exit=1, code="LS107", text="nesting deeper than 64 levels"),
    Bad("limit_repeat", **infer("--input", "2,20", spec="layers:\n  - op: ReLU\n"
                                "    repeat: 10**9\n"),
        exit=1, code="LS126", text="`repeat: 1000000000` would make more than 20,000 nodes"),
    Bad("limit_nodes_through_blocks", **infer(
        "--input", "2,20", spec="blocks:\n  B:\n    layers:\n      - op: ReLU\n"
        "        repeat: 1000\nlayers:\n  - op: B\n    repeat: 1000\n"),
        exit=1, code="LS126", text="more than 20,000 nodes after repeats (limit)"),
    Bad("limit_block_depth", **infer("--input", "2,20", spec=nested_blocks(40)), exit=1,
        code="LS126", text="blocks nested deeper than 32 levels (limit)"),
    Bad("limit_include_depth", **{"args": ["infer", "m.yaml", "--input", "2,20"],
                                "files": chain(12)},
        exit=1, code="LS126", text="includes nested deeper than 8 levels (limit)"),
    Bad("limit_expression_length", **infer("--input", "2,20",
                                           spec=f"layers:\n  - LazyLinear({'1+' * 1001}1)\n"),
        exit=1, code="LS126", text="expression longer than 2000 characters"),
    Bad("limit_expression_parts", **infer("--input", "2,20",
                                          spec=f"layers:\n  - LazyLinear({'+'.join('d' * 300)})\n"),
        exit=1, code="LS126", text="expression has more than 500 parts"),
    Bad("limit_huge_power", **infer("--input", "2,20", spec="layers:\n"
                                    "  - LazyLinear(10**10**10)\n"),
        exit=1, code="LS126", text="result of 10 ** 10000000000 is too large (limit: 256-bit"),
    Bad("limit_string_repetition", **infer("--input", "2,20", spec="params:\n  s: ${'a' * 10**9}\n"
                                           + MLP.split("\n", 1)[1]),
        exit=1, code="LS126", text="repeated sequence longer than 10,000 items (limit)"),
    Bad("limit_list_doubling", **infer("--input", "2,20", spec=doubling_params(30)), exit=1,
        code="LS126", text="list longer than 10,000 items"),
    Bad("limit_list_doubling_in_yaml", **infer("--input", "2,20",
                                               spec=doubling_params(30, yaml_lists=True)),
        exit=1, code="LS126", text="list longer than 10,000 items"),
    Bad("limit_round_digits", **infer("--input", "2,20", spec="layers:\n"
                                      "  - LazyLinear(round(5, -10**20))\n"),
        exit=1, code="LS126", text="beyond the limit of 256 digits"),
    Bad("limit_int_of_long_string", **infer("--input", "2,20", spec="params:\n  s: '"
                                            + "9" * 5000 + "'\nlayers:\n  - LazyLinear(int(s))\n"),
        exit=1, code="LS126", text="int() of a string longer than 256 characters (limit)"),
    Bad("declared_dim_negative", **infer(spec="inputs:\n  x: [-1, 4]\nlayers:\n  - ReLU\n"),
        exit=1, code="LS146", text="input 'x': dimension -1 is negative"),
    Bad("declared_dim_huge", **infer(spec="inputs:\n  x: ['${2**60}', 4]\nlayers:\n  - ReLU\n"),
        exit=1, code="LS146", text="is over the limit of 2**40"),
]


def test_the_catalogues_hold_more_than_60_cases() -> None:
    specs = list((Path(__file__).parent / "cases" / "invalid").glob("*.yaml"))
    assert len(CASES) >= 60
    assert len(CASES) + len(specs) >= 120
    assert len({c.id for c in CASES}) == len(CASES), "two cases share an id"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Bad, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   capsys: pytest.CaptureFixture[str]) -> None:
    run_case(case, tmp_path, monkeypatch, capsys)


def run_case(case: Bad, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str],
             prepare: Callable[[Path], object] | None = None) -> tuple[str, str]:
    """Write the case's files into tmp_path (then `prepare(tmp_path)`: links, devices), run it
    in-process there and check exit code, diagnostic code and text (other catalogues use it).
    Returns its stdout and stderr."""
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    if prepare is not None:
        prepare(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    capsys.readouterr()
    with hang_guard(case.id), pytest.raises(SystemExit) as info:
        main(case.args)
    out, err = capsys.readouterr()
    shown = f"exit {info.value.code}\nstderr:\n{err}\nstdout:\n{out[:2000]}"
    assert "Traceback (most recent call last)" not in out + err, shown
    assert "LS303" not in err, shown
    assert info.value.code == case.exit, shown
    if case.code is None:
        assert "error[LS" not in err or case.stdout, shown
        assert case.stdout or "Error:" in err, shown
    else:
        assert case.code in CODES
        assert f"error[{case.code}]" in err, shown
    assert case.text in (out if case.stdout else err), shown
    return out, err
