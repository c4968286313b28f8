"""Fuzzing: every spec, flag and file lazyspec reads is untrusted, and every failure is a message.

Targets, each a hypothesis test:

- the YAML loader (random text, random YAML documents with anchors, aliases and tags),
- the expression interpreter and the op-call parser (random expressions from a grammar that
  mixes allowed and forbidden forms, and random text),
- the spec validator and compiler, through the CLI (mutations of the bundled specs and of the
  invalid-spec catalogue, and random spec documents),
- the CLI's flags (random `--input`, `--set`, `--device`, `--format`, ... on the bundled specs),
- `[tool.lazyspec]` and lock files (random and mutated TOML and lock text).

The property: lazyspec returns normally or raises one of its own errors (the CLI: exits 0, 1 or 2
with a message), never prints a Python traceback or an internal error (LS303), and never hangs
(a per-example guard fails the test after HANG_SECONDS; a hard watchdog ends the process).

The default ("ci") hypothesis profile is small and derandomized; `pytest tests/test_fuzz.py
--fuzz-long` runs each target FUZZ_LONG_FACTOR times longer with fresh random seeds, and
LAZYSPEC_FUZZ_EXAMPLES=N sets the examples per target (see tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import string
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, SPECS, fuzz_examples, hang_guard
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lazyspec import cli
from lazyspec.config import load_config
from lazyspec.errors import CODES, Location, SpecError, UsageError
from lazyspec.lock import read as read_lock
from lazyspec.spec.expr import MAX_INT_BITS, MAX_SEQ_LEN, Span, evaluate, parse_call, parse_expr
from lazyspec.spec.parse import _Parser
from lazyspec.spec.yamlload import YNode, load_yaml

CASES = ROOT / "tests" / "cases" / "invalid"


# --- helpers -----------------------------------------------------------------------------------


@contextlib.contextmanager
def in_folder(folder: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


_DIAG = re.compile(r"error\[(LS\d{3})\]")


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """`lazyspec ARGV` in-process; (exit code, stdout, stderr). Checks the property."""
    out, err = io.StringIO(), io.StringIO()
    code: Any = None
    with hang_guard(f"lazyspec {argv}"), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err), warnings.catch_warnings(record=True):
        warnings.simplefilter("always")  # printed or not, a warning is not a failure here
        try:
            cli.main(argv)
        except SystemExit as e:
            code = e.code
    code = 0 if code is None else code
    stdout, stderr = out.getvalue(), err.getvalue()
    shown = f"lazyspec {argv!r}\nexit {code}\nstderr:\n{stderr[-3000:]}"
    assert code in (0, 1, 2), shown
    assert "Traceback (most recent call last)" not in stdout + stderr, shown
    assert "LS303" not in stderr, shown  # an internal error is a bug, even though it exits 2
    if code != 0:  # diagnostics on stderr, click's usage errors, or check's report (lock drift)
        found = _DIAG.findall(stderr)
        assert found or "Error:" in stderr or "Usage:" in stderr or \
            re.search(r"fail|error", stdout, re.IGNORECASE), f"no message; {shown}"
        assert all(c in CODES for c in found), shown
    return code, stdout, stderr


def check_spec_error(e: SpecError | UsageError, allowed: set[str] | None = None) -> None:
    assert e.diagnostics, "an error without a diagnostic"
    for d in e.diagnostics:
        assert d.code in CODES, d
        if allowed is not None:
            assert d.code in allowed, d
        if d.location is not None:
            assert d.location.line >= 1 and d.location.col >= 1, d


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder with no pyproject.toml above it, where CLI runs may write; GitHub's summary
    file is never touched."""
    folder = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("GITHUB_STEP_SUMMARY", raising=False)
        mp.setenv("NO_COLOR", "1")
        yield folder


# --- seeds: the bundled specs and the invalid-spec catalogue ------------------------------------

# spec -> the arguments of a run that works (small and quick on meta)
BUNDLED: dict[str, list[str]] = {
    "mlp.yaml": ["--input", "2,20"],
    "mlp_fixed.yaml": ["--input", "2,20"],
    "lenet.yaml": ["--input", "1,1,28,28"],
    "resnet18.yaml": ["--input", "1,3,32,32"],
    "gpt2.yaml": ["--input", "2,8:int64", "--set", "n_layer=2"],
    "unet.yaml": ["--input", "1,3,32,32"],
    "two_input.yaml": ["--input", "a=4,32", "--input", "b=4,32"],
    "llama2-7b.yaml": ["--input", "2,8:int64", "--scale", "tiny"],
    "synthetic-1000.yaml": ["--input", "2,64", "--scale", "tiny"],
}


def _case_args(text: str) -> list[str]:
    args: list[str] = []
    inputs = re.findall(r"^# input:\s*(.*?)\s*$", text, re.MULTILINE) or ["2,20"]
    for i in inputs:
        args += ["--input", i]
    for extra in re.findall(r"^# args:\s*(.*?)\s*$", text, re.MULTILINE):
        args += extra.split()
    return args


SEEDS: dict[str, tuple[str, list[str]]] = {
    **{f"specs/{name}": ((SPECS / name).read_text(encoding="utf-8"), args)
       for name, args in BUNDLED.items()},
    **{f"cases/{p.name}": (p.read_text(encoding="utf-8"),
                           _case_args(p.read_text(encoding="utf-8")))
       for p in sorted(CASES.glob("*.yaml"))},
}

# Text a mutation may put in place of a token, or insert.
NASTY = [
    "", " ", "-", ":", ": ", "- ", "[", "]", "{", "}", ",", "&a", "*a", "&a [*a]", "!!str",
    "!!python/object/apply:os.system ['true']", "!custom", "|", ">", "#", "%YAML 1.1", "---",
    "...", "'", '"', "\\", "\t", "\x00", "\x1b", "\u2028", "\ufeff", "é", "≥", "\U0001f600",
    "${", "}", "${d}", "${10**10**10}", "${'a' * 10**9}", "10**10**10", "'a' * 10**9",
    "__import__('os').system('true')", "x.__class__", "().__class__.__base__", "eval('1')",
    "os.system", "torch.load", "nn.functional.relu", "Sequential", "Parameter", "input", "-1",
    "-99", "0", "1", "2", "3", "64", "-1", "1.5", "1e309", "nan", ".inf", "null", "~", "true",
    "yes", "repeat: 10**9", "repeat: -1", "when: false", "in: [-1, -2]", "share: fc",
    "include: [../x.yaml]", "include: [spec.yaml]", "10**6", "2**63", "[1, 2]", "[[]]", "{}",
    "LazyLinear(", "LazyLinear(10**9)", "Add", "Concat(0)", "Chunk(0, 1)", "Reshape(-1, -1)",
    "Split([1], 0)", "Positions", "Embedding(10, 4)", "ScaledDotProductAttention",
    "LazyConv2d(4, 3)", "Mean(-9)", "Transpose(0, 9)", "Permute(0)", "MatMul",
]
_TOKEN = re.compile(r"\w+|[^\w\s]|\s+")


@st.composite
def mutated(draw: st.DrawFn, seeds: dict[str, tuple[str, list[str]]]) -> tuple[str, str,
                                                                             list[str]]:
    """(seed name, mutated text, its run's arguments)."""
    name = draw(st.sampled_from(sorted(seeds)))
    text, args = seeds[name]
    lines = text.splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            lines = [""]
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["delete", "duplicate", "swap", "indent", "dedent",
                                     "token", "token", "token", "insert", "truncate"]))
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "indent":
            lines[i] = draw(st.sampled_from(["  ", " ", "    ", "\t"])) + lines[i]
        elif kind == "dedent":
            lines[i] = lines[i][draw(st.integers(1, 4)):]
        elif kind == "truncate":
            lines[i] = lines[i][:draw(st.integers(0, max(len(lines[i]), 1)))]
        else:
            tokens = _TOKEN.findall(lines[i]) or [""]
            k = draw(st.integers(0, len(tokens) - 1))
            new = draw(st.one_of(st.sampled_from(NASTY), st.text(max_size=6)))
            if kind == "token":
                tokens[k] = new
            else:
                tokens.insert(k, new)
            lines[i] = "".join(tokens)
    return name, "\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n"])), args


# --- target 1: the YAML loader --------------------------------------------------------------------

YAML_ALPHABET = string.ascii_letters[:8] + string.digits[:4] + " -:[]{},&*!|>'\"#%@`?\n\t\\.$()~="
YAML_CODES = {"LS101", "LS102", "LS103", "LS104", "LS105", "LS106", "LS107", "LS111"}

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                    st.text(max_size=12))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20)


def _load_and_parse(text: str) -> YNode | None:
    """load_yaml, then the spec parser (which collects problems instead of raising)."""
    try:
        with hang_guard("load_yaml"):
            tree = load_yaml(text, "fuzz.yaml")
    except SpecError as e:
        check_spec_error(e, YAML_CODES)
        return None
    with hang_guard("parse"):
        parser = _Parser("fuzz.yaml", text)
        parser.spec(tree)
    for d in parser.problems:
        assert d.code in CODES and d.location is not None, d
    return tree


@settings(max_examples=fuzz_examples(200))
@given(st.text(alphabet=YAML_ALPHABET, max_size=80) | st.text(max_size=40))
@example("a: &x [*x]\n")
@example("[" * 70 + "]" * 70)
@example("a: !!python/object/apply:os.system ['true']\n")
@example("a: 1\n---\nb: 2\n")
@example("? [a, b]\n: c\n")
@example("\x00")
def test_fuzz_yaml_loader_random_text(text: str) -> None:
    _load_and_parse(text)


@settings(max_examples=fuzz_examples(100))
@given(documents, st.booleans(), st.sampled_from(["", "&a ", "!!str ", "!x ", "*a"]))
def test_fuzz_yaml_loader_random_documents(doc: Any, flow: bool, decoration: str) -> None:
    text = yaml.safe_dump(doc, default_flow_style=flow, allow_unicode=True)
    if decoration and ": " in text:  # put an anchor, a tag or an alias in front of a value
        text = text.replace(": ", ": " + decoration, 1)
    _load_and_parse(text)


# --- target 2: the expression interpreter and the op-call parser --------------------------------

ENV: dict[str, Any] = {
    "d": 64, "widths": [64, 128, 256], "s": "abc", "big": 2**200, "f": 1.5, "neg": -3,
    "flag": True, "nothing": None, "nested": [[1, 2], [3, [4, 5]]],
    "long": [1] * 9_000, "text": "x" * 9_000,  # close to the sequence limit
}
ATOMS = st.one_of(
    st.integers(-300, 300).map(str),
    st.sampled_from([
        "0", "1", "2", "3", "10", "255", "256", "-1", "10**9", "2**255", "2**256", "1e308",
        "1e-308", "0.5", "-0.0", "1_000", "0x10", "0b11", "1j", "True", "false", "null", "None",
        "'a'", '"tanh"', "''", "[]", "()", "[1, 2, 3]", "(1,)", "d", "widths", "s", "big", "f",
        "neg", "flag", "nothing", "nested", "long", "text", "undefined_name", "__import__",
        "__class__", "...", "b'x'", "f'{d}'", "float('inf')", "float('nan')", "-10**20",
        "10**10**10", "'a' * 10**9",
    ]),
)
UNARY = ["-", "+", "not ", "~"]
BINARY = ["+", "-", "*", "/", "//", "%", "**", "<<", ">>", "|", "&", "^", "@", " and ", " or ",
          "==", "!=", "<", "<=", ">", ">=", " in ", " not in ", " is ", " is not "]
FUNCS = ["min", "max", "abs", "int", "float", "round", "ceil", "floor", "len", "print", "eval",
         "__import__", "getattr", "open", "range", "sum", "pow", "d"]
ATTRS = ["real", "__class__", "bit_length", "__globals__", "__subclasses__", "system"]


def _slice(t: tuple[str, str | None, str | None, str | None]) -> str:
    seq, a, b, c = t
    return f"({seq})[{a or ''}:{b or ''}" + (f":{c}]" if c is not None else "]")


expressions = st.recursive(ATOMS, lambda inner: st.one_of(
    st.tuples(st.sampled_from(UNARY), inner).map(lambda t: f"{t[0]}({t[1]})"),
    st.tuples(inner, st.sampled_from(BINARY), inner).map(lambda t: f"({t[0]}){t[1]}({t[2]})"),
    st.tuples(st.sampled_from(FUNCS), st.lists(inner, max_size=3))
    .map(lambda t: f"{t[0]}({', '.join(t[1])})"),
    st.tuples(inner, inner).map(lambda t: f"({t[0]})[{t[1]}]"),
    st.tuples(inner, st.none() | inner, st.none() | inner, st.none() | inner).map(_slice),
    st.tuples(inner, inner, inner).map(lambda t: f"({t[0]}) if ({t[1]}) else ({t[2]})"),
    st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
    st.lists(inner, max_size=4).map(lambda xs: "(" + ", ".join(xs) + ",)"),
    st.tuples(inner, st.sampled_from(ATTRS)).map(lambda t: f"({t[0]}).{t[1]}"),
    inner.map(lambda e: f"[x for x in {e}]"),
    inner.map(lambda e: f"lambda: {e}"),
    inner.map(lambda e: f"{{{e}: 1}}"),
), max_leaves=12)

EXPR_CODES = {"LS123", "LS124", "LS125", "LS126"}


def _check_bounded(value: Any) -> None:
    """What an expression returns stays within the documented limits."""
    if isinstance(value, int) and not isinstance(value, bool):
        assert value.bit_length() <= MAX_INT_BITS + 1, value.bit_length()
    if isinstance(value, (str, list, tuple)):
        from lazyspec.spec.expr import _size

        assert _size(value) <= MAX_SEQ_LEN, f"a value of {_size(value)} items"


def _evaluate(text: str) -> None:
    span = Span(text, Location("fuzz.yaml", 1, 1), True)
    try:
        with hang_guard(f"expression {text!r}"):
            value = evaluate(parse_expr(span), ENV)
    except SpecError as e:
        check_spec_error(e, EXPR_CODES)
        return
    _check_bounded(value)


@settings(max_examples=fuzz_examples(500))
@given(expressions)
@example("round(5, -10**20)")
@example("round(1.5, 10**20)")
@example("int('9' * 5000)")
@example("[long, long] == [long, long]")
@example("(text, text)")
@example("[[1] * 100] * 100")
@example("2 ** 256")
@example("(-8) ** (1 / 3)")
@example("long[::0]")
@example("s[10**100]")
def test_fuzz_expressions(text: str) -> None:
    _evaluate(text)


@settings(max_examples=fuzz_examples(150))
@given(st.text(max_size=40) | st.text(alphabet="()[]{},.:=*+-/%<>!'\"0123456789abdx _",
                                      max_size=40))
def test_fuzz_expressions_random_text(text: str) -> None:
    _evaluate(text)


@settings(max_examples=fuzz_examples(150))
@given(st.one_of(
    st.tuples(st.sampled_from(["LazyLinear", "nn.ReLU", "torch.nn.Conv2d", "os.system", "a.b.c",
                               "Foo", "_x", "1x", "", "x()"]),
              st.lists(expressions, max_size=3),
              st.lists(st.tuples(st.sampled_from(["bias", "x", "**", "1", ""]), expressions),
                       max_size=2))
    .map(lambda t: f"{t[0]}({', '.join(t[1] + [f'{k}={v}' for k, v in t[2]])})"),
    st.text(max_size=40),
))
def test_fuzz_op_calls(text: str) -> None:
    span = Span(text, Location("fuzz.yaml", 1, 1), True)
    try:
        with hang_guard(f"op call {text!r}"):
            parse_call(span)
    except SpecError as e:
        check_spec_error(e, {"LS122", "LS123", "LS126"})


# --- target 3: the spec validator and compiler, through the CLI ---------------------------------


@pytest.fixture(scope="module")
def spec_folder(workdir: Path) -> Path:
    """Where mutated specs are written; the catalogue's include files sit beside them."""
    folder = workdir / "specs"
    folder.mkdir()
    shutil.copytree(CASES / "_inc", folder / "_inc")
    return folder


@settings(max_examples=fuzz_examples(300))
@given(mutated(SEEDS))
def test_fuzz_mutated_specs(spec_folder: Path, case: tuple[str, str, list[str]]) -> None:
    _seed, text, args = case
    path = spec_folder / "spec.yaml"
    path.write_text(text, encoding="utf-8", newline="")
    with in_folder(spec_folder):
        run_cli(["infer", "spec.yaml", *args])


OP_NAMES = ["LazyLinear", "ReLU", "Add", "Concat", "Chunk", "Reshape", "Embedding", "LazyConv2d",
            "Flatten", "B", "Identity", "Dropout", "Split", "Positions", "MatMul", "Mean",
            "LazyBatchNorm1d", "Transpose", "nn.Tanh", "Nope", "os.system"]
small_values = st.one_of(st.integers(-2, 16), st.sampled_from([10**6, 2**63, 1.5, True, None]),
                         st.sampled_from(["d", "n", "-1", "'x'", "d * 2", "${d}"]))
op_strings = st.tuples(st.sampled_from(OP_NAMES), st.lists(small_values, max_size=3)).map(
    lambda t: t[0] + (f"({', '.join(map(str, t[1]))})" if t[1] else ""))
node_keys = st.fixed_dictionaries({}, optional={
    "in": st.one_of(st.sampled_from(["input", "a", "-1", "-2", "a.0", "x.1"]),
                    st.lists(st.sampled_from(["input", "a", -1, -2, "b"]), max_size=3)),
    "repeat": st.one_of(st.integers(-1, 3), st.sampled_from(["n", "n - 1", "10**9", "true"])),
    "when": st.sampled_from([True, False, "d > 2", "n", "undefined"]),
    "share": st.sampled_from(["a", "b", "zz"]),
})
nodes = st.one_of(
    op_strings,
    st.tuples(st.sampled_from(["a", "b", "c", "fc", "forward", "1x"]), op_strings, node_keys)
    .map(lambda t: {t[0]: t[1], **t[2]}),
    st.tuples(op_strings, node_keys).map(lambda t: {"op": t[0], **t[1]}),
    st.builds(lambda op, args, kwargs: {"op": op, "args": args, "kwargs": kwargs},
              st.sampled_from(OP_NAMES), st.lists(small_values, max_size=2),
              st.dictionaries(st.sampled_from(["bias", "dim", "p", "x"]), small_values,
                              max_size=2)),
    scalars,
)
spec_documents = st.fixed_dictionaries(
    {"layers": st.lists(nodes, max_size=6)},
    optional={
        "params": st.dictionaries(st.sampled_from(["d", "n", "widths", "x", "1bad"]),
                                  small_values, max_size=3),
        "inputs": st.one_of(
            st.dictionaries(st.sampled_from(["x", "input", "a"]),
                            st.one_of(st.lists(st.sampled_from([2, 4, "B", "d", "${d}", -1]),
                                               max_size=3),
                                      st.fixed_dictionaries({"shape": st.just([2, 4])},
                                                            optional={"dtype": st.sampled_from(
                                                                ["int64", "float16", "int46"])}),
                                      st.none()),
                            max_size=2),
            scalars),
        "blocks": st.dictionaries(st.sampled_from(["B", "C"]), st.fixed_dictionaries(
            {"layers": st.lists(nodes, max_size=3)},
            optional={"params": st.dictionaries(st.sampled_from(["d", "k"]), small_values,
                                                max_size=2)}), max_size=2),
        "outputs": st.one_of(st.sampled_from(["a", "b", "-1"]), st.lists(st.sampled_from(
            ["a", "b", "input"]), max_size=2)),
        "tie": st.lists(st.lists(st.sampled_from(["a.weight", "b.weight", "0.bias"]),
                                 min_size=1, max_size=3), max_size=2),
        "scales": st.dictionaries(st.sampled_from(["s", "t"]), st.dictionaries(
            st.sampled_from(["d", "n", "q"]), small_values, max_size=2), max_size=2),
        "lazyspec": st.sampled_from([1, 2, "1", True]),
        "name": scalars,
        "extra": scalars,
    })


@settings(max_examples=fuzz_examples(200))
@given(spec_documents, st.sampled_from([["--input", "2,4"], ["--input", "2,4,4,4"], [],
                                        ["--input", "2,4:int64"], ["--scale", "s"]]))
def test_fuzz_random_specs(spec_folder: Path, doc: dict[str, Any], args: list[str]) -> None:
    path = spec_folder / "random.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    with in_folder(spec_folder):
        run_cli(["infer", "random.yaml", *args])


# --- target 4: the CLI's flags ------------------------------------------------------------------

DTYPE_WORDS = ["float32", "int64", "bool", "bfloat16", "float16", "complex64", "float8_e4m3fn",
               "uint8", "int46", "torch.float32", "str", "", "float64"]
dims = st.one_of(st.integers(0, 64).map(str), st.sampled_from([
    "0", "1", "2", "1099511627776", "1099511627777", "99999999999999999999999", "-1", "B", "T",
    "x", "", " ", "1.5", "1e3", "٣", "2**4", "_"]))
input_strings = st.one_of(
    st.tuples(st.sampled_from(["", "a=", "b=", "x=", "idx=", "=", "1a="]),
              st.lists(dims, max_size=5),
              st.sampled_from([""] + [":" + d for d in DTYPE_WORDS]),
              st.sampled_from([",", " ", ", "]),
              st.sampled_from(["{}", "[{}]", "({})", "{}]"]))
    .map(lambda t: t[0] + t[4].format(t[3].join(t[1])) + t[2]),
    st.text(alphabet="0123456789,[]()=:abBT_ .-", max_size=20),
    st.text(max_size=12),
)
set_values = st.one_of(
    st.integers(-3, 40).map(str),
    st.sampled_from(["", "[1, 2]", "[]", "true", "null", "tanh", "1.5", "1e3", ".inf", "{a: 1}",
                     "&a [*a]", "!!python/object/apply:os.system ['true']", "[" * 200,
                     "a: b: c", "'unclosed", "2020-01-01", "0x10", "10**9", "${d * 2}",
                     "${__import__('os')}", "${1 +}", "${10**10**10}", "${[1] * 10**9}",
                     "- 1\n- 2", "1\n---\n2", "[[1, 2], [3]]", "\x00", "≥"]),
    expressions.map(lambda e: "${" + e + "}"),
    st.text(max_size=10),
)
set_flags = st.tuples(st.sampled_from(["d", "n_layer", "n_head", "d_model", "widths", "depths",
                                       "num_classes", "x", "", " d ", "=", "d=1"]),
                      st.sampled_from(["=", "", "=="]), set_values).map("".join)


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    command = draw(st.sampled_from(["infer", "infer", "infer", "show", "graph", "export",
                                    "check", "lock", "schema"]))
    spec = draw(st.sampled_from([str(SPECS / n) for n in
                                 ("mlp.yaml", "two_input.yaml", "lenet.yaml", "gpt2.yaml",
                                  "resnet18.yaml", "unet.yaml")]
                                + ["missing.yaml", ".", "", "-"]))
    argv = [command] if command == "schema" else [command, spec]
    options: dict[str, st.SearchStrategy[str]] = {
        "--input": input_strings, "--set": set_flags,
        "--scale": st.sampled_from(["tiny", "r34", "", "x"]),
        "--device": st.sampled_from(["meta", "META", " meta ", "cuda", "cuda:7", "gpu", "",
                                     "cuda:x", "mps"]),
        "--dtype": st.sampled_from(DTYPE_WORDS),
        "--format": st.sampled_from(["table", "json", "markdown", "github", "mermaid", "dot",
                                     "yaml", ""]),
        "--depth": st.sampled_from(["0", "1", "3", "-1", "x", "99999999999999999999"]),
        "--allow": st.sampled_from(["nosuchpkg", "torch", "x.y", "", "_private", "torch.nn"]),
        "--expect-output": st.sampled_from(["2,10", "x", "", "[2, 10]", "2,-1", "10**9"]),
        "--max-params": st.sampled_from(["10K", "1.5B", "x", "", "-1", "1e3", "10**10**10"]),
        "--max-bytes": st.sampled_from(["1GiB", "500MB", "x", "", "2PB", "1.5"]),
        "--output-file": st.sampled_from(["out.txt", "missing/out.txt", ".", ""]),
        "--lock": st.sampled_from(["lazyspec.lock", "missing/x.lock", ".", "bad.lock"]),
        "--config": st.sampled_from(["pyproject.toml", "missing.toml", ".", ""]),
        "--to": st.sampled_from(["spec", "pytorch", "state-dict", "onnx", ""]),
        "--output": st.sampled_from(["out.py", "missing/out.py", "."]),
        "--init": st.sampled_from(["default", "normal:0.5", "uniform:x", "bogus", ""]),
        "--seed": st.sampled_from(["0", "-1", "x", "99999999999999999999999"]),
        "--update": st.just(""),
        "--bogus": st.just(""),
    }
    names = draw(st.lists(st.sampled_from(sorted(options)), max_size=6))
    if command in ("infer", "graph", "export") and draw(st.booleans()):
        names = ["--input", *names]
    for name in names:
        value = draw(options[name])
        if name in ("--update", "--bogus"):
            argv.append(name)
        elif name == "--to" and value == "state-dict":
            argv += ["--to", "spec"]  # state-dict runs on the CPU for real: not fuzzed here
        else:
            argv += [name, value]
    if draw(st.integers(0, 9)) == 0:
        argv.insert(0, draw(st.sampled_from(["--traceback", "--version", "--help", "-x"])))
    if command in ("infer", "graph", "export", "show") and "--device" in argv:
        i = argv.index("--device")
        argv[i + 1] = "meta" if argv[i + 1].strip().lower() == "cpu" else argv[i + 1]
    return argv


@pytest.fixture(scope="module")
def cli_folder(workdir: Path) -> Path:
    folder = workdir / "cli"
    folder.mkdir()
    (folder / "pyproject.toml").write_text('[tool.lazyspec]\nmax-params = "1B"\n',
                                           encoding="utf-8")
    (folder / "bad.lock").write_text("version: 1\nspecs: [1, 2]\n", encoding="utf-8")
    return folder


@settings(max_examples=fuzz_examples(300))
@given(command_lines())
@example(["infer", str(SPECS / "mlp.yaml"), "--input", "2,20", "--set", "d=&a [*a]"])
@example(["infer", str(SPECS / "mlp.yaml"), "--input", "2,20", "--set", "d=" + "[" * 3000])
@example(["infer", str(SPECS / "gpt2.yaml"), "--input", "2,8:int64", "--set", "n_layer=${1 +}"])
@example(["infer", str(SPECS / "mlp.yaml"), "--input", "1099511627776,1099511627776"])
@example(["infer", str(SPECS / "mlp.yaml"), "--input", "2,20", "--dtype", "float8_e4m3fn"])
@example(["infer", str(SPECS / "mlp.yaml"), "--input", "2,20:bool"])
@example(["infer", str(SPECS / "mlp.yaml"), "--input", "2,20:complex64", "--format", "json"])
@example(["show", str(SPECS / "gpt2.yaml"), "--set", "n_layer=-1"])
@example(["graph", str(SPECS / "mlp.yaml"), "--input", "B,20", "--format", "dot"])
def test_fuzz_cli_flags(cli_folder: Path, argv: list[str]) -> None:
    with in_folder(cli_folder):
        run_cli(argv)


# --- target 5: [tool.lazyspec] and lock files --------------------------------------------------

PYPROJECT_SEED = """\
[tool.lazyspec]
specs = ["specs"]
lock = "lazyspec.lock"
allow = ["mypkg"]
max-params = "100B"
max-bytes = "400GB"

[[tool.lazyspec.run]]
spec = "specs/mlp.yaml"
inputs = ["2,20"]
expect-output = "2,10"
max-params = "10K"
scale = "r34"
set = { d = 256 }
"""
LOCK_SEED = (ROOT / "lazyspec.lock").read_text(encoding="utf-8")[:3000].rsplit("\n", 1)[0] + "\n"
FILE_SEEDS = {"pyproject": (PYPROJECT_SEED, []), "lock": (LOCK_SEED, [])}


@settings(max_examples=fuzz_examples(150))
@given(st.one_of(mutated(FILE_SEEDS), st.tuples(st.sampled_from(["pyproject", "lock"]),
                                                st.text(max_size=60), st.just([]))))
@example(("lock", LOCK_SEED.replace("[768]", "[.inf]", 1), []))  # found by a long run
@example(("lock", LOCK_SEED.replace("version: 1", "version: 1\nx: &a [1, *a]"), []))
@example(("pyproject", "tool = 5\n", []))
@example(("pyproject", PYPROJECT_SEED.replace("d = 256", "d = 1979-05-27"), []))
def test_fuzz_config_and_lock_files(workdir: Path, case: tuple[str, str, list[str]]) -> None:
    kind, text, _ = case
    folder = workdir / "files"
    folder.mkdir(exist_ok=True)
    path = folder / ("pyproject.toml" if kind == "pyproject" else "fuzz.lock")
    path.write_text(text, encoding="utf-8", newline="")
    try:
        with hang_guard(f"{kind} file {text!r}"):
            if kind == "pyproject":
                load_config(explicit=path)
            else:
                read_lock(path)
    except UsageError as e:
        check_spec_error(e, {"LS304", "LS301"} if kind == "pyproject" else {"LS305"})


def test_the_profile_is_bounded_in_ci() -> None:
    """The default run stays small (the longer run is opt-in: --fuzz-long)."""
    import conftest

    if not conftest.FUZZ_LONG and "--hypothesis-profile" not in " ".join(sys.argv):
        assert settings.default.derandomize and settings.default.deadline is None
        assert fuzz_examples(100) == 100
