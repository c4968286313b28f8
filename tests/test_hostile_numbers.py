"""Numbers and nesting are errors, not crashes (issue 9, item 8).

Python refuses to convert a decimal of more than 4,300 digits (ValueError), `round()` of an
infinite float overflows, torch's seed takes 64 bits, and a param that reads another recursed
once per link. Each now gives a located diagnostic: exit 1 for a spec (its line:col), exit 2 for a
flag, a lock file or a pyproject. The catalogue: the `Bad` cases below and the invalid specs
tests/cases/invalid/num_*.yaml.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_bad_inputs import ENTRY, GOOD_LOCK, MLP, PYPROJECT, RUN, Bad, infer, run_case

from lazyspec.cli import main
from lazyspec.config import MAX_BUDGET, parse_bytes, parse_count, parse_shape
from lazyspec.errors import SpecError, UsageError
from lazyspec.inputs import parse_input
from lazyspec.spec.yamlload import load_yaml, plain

HERE = Path(__file__).parent
BIG = "9" * 5000  # past Python's 4,300-digit int-string limit
HEX = "0x" + "f" * 4000  # 16,000 bits: read without a limit, but no message could print it


def chain(n: int, reverse: bool = False) -> str:
    """n params, each reading the next: p0 = p1 = ... = p{n} = 4."""
    lines = [f"  p{i}: ${{p{i + 1}}}" for i in range(n)] + [f"  p{n}: 4"]
    if reverse:
        lines.reverse()
    return "params:\n" + "\n".join(lines) + "\nlayers:\n  - LazyLinear(p0)\n"


def run(args: list[str | Path], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback (most recent call last)" not in out + err
    assert "LS303" not in err, err
    code = info.value.code
    return (code if isinstance(code, int) else 1), out, err


# --- the catalogue ------------------------------------------------------------------------------

TOML_HEX = "0x" + "f" * 100
NUM_CASES: list[Bad] = [
    Bad("num_set_5000_digits", **infer("--input", "2,20", "--set", f"d={BIG}"),
        text="--set d: integer of 5,000 characters is too large (limit: 256-bit numbers)"),
    Bad("num_set_huge_hex", **infer("--input", "2,20", "--set", f"d={HEX}"),
        text="--set d: integer of 4,002 characters is too large"),
    Bad("num_set_expression_literal", **infer("--input", "2,20", "--set", "d=${" + "9" * 1900
                                              + "}"),
        text="--set d: number too large (limit: 256-bit numbers)"),
    Bad("num_input_5000_digits", **infer("--input", f"2,{BIG}"), text="is too large"),
    Bad("num_input_unicode_digits", **infer("--input", "2,\u0662\u0660"),
        text="bad dimension '\u0662\u0660'"),
    Bad("num_expect_output_5000_digits", **infer("--input", "2,20", "--expect-output",
                                                 f"2,{BIG}"),
        text="--expect-output: dimension '999999999999"),
    Bad("num_expect_output_superscript", **infer("--input", "2,20", "--expect-output", "2,\u00b2"),
        text="--expect-output: cannot read shape '2,\u00b2'"),
    Bad("num_max_params_5000_digits", **infer("--input", "2,20", "--max-params", BIG),
        text="--max-params: the number is too large (limit: 2**63 - 1)"),
    Bad("num_max_params_past_int64", **infer("--input", "2,20", "--max-params", "9.3E"),
        text="--max-params: cannot read '9.3E'"),
    Bad("num_max_params_huge_with_suffix", **infer("--input", "2,20", "--max-params",
                                                   "10000000000T"),
        text="--max-params: the number is too large"),
    Bad("num_max_bytes_huge_fraction", **infer("--input", "2,20", "--max-bytes",
                                               "1" + "0" * 400 + ".5"),
        text="--max-bytes: the number is too large"),
    Bad("num_max_bytes_exponent", **infer("--input", "2,20", "--max-bytes", "1e400"),
        text="--max-bytes: cannot read '1e400'"),
    Bad("num_max_bytes_long_garbage", **infer("--input", "2,20", "--max-bytes", "x" * 5000),
        text="(5,000 characters)"),
    Bad("num_seed_past_64_bits", ["export", "m.yaml", "--input", "2,20", "--to", "state-dict",
                                  "-o", "x.pt", "--seed", str(2**64)], {"m.yaml": MLP},
        text="--seed is out of range"),
    Bad("num_seed_below_int64", ["export", "m.yaml", "--input", "2,20", "--to", "state-dict",
                                 "-o", "x.pt", "--seed", str(-(2**63) - 1)], {"m.yaml": MLP},
        text="--seed is out of range"),
    Bad("num_lock_total_5000_digits", ["check", "m.yaml", "--lock", "l.lock"],
        {"m.yaml": MLP, "l.lock": ENTRY.replace("7946", BIG)}, code="LS305",
        text="not valid YAML: integer of 5,000 characters is too large"),
    Bad("num_lock_shape_huge_hex", ["check", "m.yaml", "--lock", "l.lock"],
        {"m.yaml": MLP, "l.lock": GOOD_LOCK.replace("[256, 20]", f"[{HEX}, 20]")},
        code="LS305", text="integer of 4,002 characters is too large"),
    Bad("num_toml_max_params_5000_digits", ["check"],
        {"m.yaml": MLP, "pyproject.toml": PYPROJECT + f"max-params = {BIG}\n"}, code="LS304",
        text="invalid TOML: a number too large to read"),
    Bad("num_toml_nesting_5000_deep", ["check"],
        {"m.yaml": MLP, "pyproject.toml": "[tool.lazyspec]\nspecs = " + "[" * 5000 + "]" * 5000},
        code="LS304", text="invalid TOML: nesting too deep"),
    Bad("num_toml_max_bytes_huge_hex", ["check"],
        {"m.yaml": MLP, "pyproject.toml": PYPROJECT + f"max-bytes = {TOML_HEX}\n"},
        code="LS304", text="max-bytes: the number is too large (limit: 2**63 - 1)"),
    Bad("num_toml_max_params_huge_negative", ["check"],
        {"m.yaml": MLP, "pyproject.toml": PYPROJECT + f"max-params = -{'9' * 100}\n"},
        code="LS304", text="max-params: cannot read a negative number"),
    Bad("num_toml_expect_output_huge_hex", ["check"],
        {"m.yaml": MLP, "pyproject.toml": PYPROJECT + RUN + f"expect-output = {TOML_HEX}\n"},
        code="LS304", text="expect-output: the number is too large"),
    Bad("num_toml_set_huge_hex", ["check"],
        {"m.yaml": MLP, "pyproject.toml": PYPROJECT + RUN + f"set = {{d = {TOML_HEX}}}\n"},
        code="LS304", text="`set` values must be numbers"),
    Bad("num_declared_dim_bool_with_input", **infer(
        "--input", "2,20", spec="params: {w: true}\ninputs:\n  x: [B, w]\nlayers:\n  - ReLU\n"),
        exit=1, code="LS146", text="input 'x': dimension 1 is True (bool)"),
    Bad("num_expect_output_zeros_past_the_limit", **infer("--input", "2,20", "--expect-output",
                                                          "2," + "0" * 5000 + "11"),
        exit=1, code="LS210", text="differs from the expected [2, 11]"),
]


@pytest.mark.parametrize("case", NUM_CASES, ids=[c.id for c in NUM_CASES])
def test_hostile_number_case(case: Bad, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    _, err = run_case(case, tmp_path, monkeypatch, capsys)
    assert max(map(len, err.splitlines()), default=0) < 1_000, "a message prints the number"


def test_the_number_catalogue_is_large_enough() -> None:
    specs = list((HERE / "cases" / "invalid").glob("num_*.yaml"))
    assert len(NUM_CASES) + len(specs) >= 15


def test_leading_zeros_past_the_digit_limit_are_read(write_spec, cli) -> None:
    r = cli("infer", write_spec(MLP), "--input", "2," + "0" * 5000 + "20")
    assert r.code == 0, r.stderr
    assert "[2, 10]" in r.stdout


# --- params: chains of any length ---------------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True], ids=["in_order", "defined_backwards"])
def test_a_long_acyclic_chain_of_params_resolves(reverse: bool, write_spec, cli) -> None:
    # 3,000 links: the recursive resolution failed from about 300 (RecursionError)
    r = cli("infer", write_spec(chain(3000, reverse)), "--input", "2,20", "--format", "json")
    assert r.code == 0, r.stderr
    assert '"0.weight"' in r.stdout and "[\n        4,\n        20\n      ]" in r.stdout


def test_a_long_chain_in_a_block_resolves(write_spec, cli) -> None:
    params = "".join(f"      q{i}: ${{q{i + 1}}}\n" for i in range(2000)) + "      q2000: n\n"
    spec = (f"blocks:\n  B:\n    params:\n      n: 4\n{params}    layers:\n"
            "      - LazyLinear(q0)\nlayers:\n  - B(6)\n")
    spec = spec.replace("q2000: n", "q2000: ${n}")
    r = cli("infer", write_spec(spec), "--input", "2,20")
    assert r.code == 0, r.stderr
    assert "[6, 20]" in r.stdout


def test_a_cycle_is_still_found_and_named(write_spec, cli) -> None:
    spec = ("params:\n  a: ${b + 1}\n  b: ${c}\n  c: ${a * 2}\n  d: ${c}\n"
            "layers:\n  - LazyLinear(d)\n")
    r = cli("infer", write_spec(spec), "--input", "2,20")
    assert r.code == 1
    assert "2:3: error[LS145]: params depend on each other: a -> b -> c -> a" in r.stderr
    assert r.stderr.count("error[LS145]") == 1


def test_a_branch_never_taken_is_no_cycle(write_spec, cli) -> None:
    # `b` is read only when `flag` is false: a and b do not depend on each other (as before)
    spec = ("params:\n  flag: true\n  a: ${1 if flag else b}\n  b: ${a + 1}\n"
            "layers:\n  - LazyLinear(b)\n")
    r = cli("infer", write_spec(spec), "--input", "2,20")
    assert r.code == 0, r.stderr
    assert "[2, 2]" in r.stdout


def test_an_error_deep_in_a_chain_is_reported_once_where_it_is(write_spec, cli) -> None:
    spec = chain(500).replace("p500: 4", "p500: ${1 // 0}")
    r = cli("infer", write_spec(spec), "--input", "2,20")
    assert r.code == 1
    assert r.stderr.count("error[") == 1, r.stderr
    assert ":502:11: error[LS125]: cannot evaluate '1 // 0'" in r.stderr


# --- numbers where they enter -------------------------------------------------------------------


def test_yaml_integers_are_held_to_256_bits() -> None:
    assert plain(load_yaml(f"a: {2**256 - 1}\nb: -{2**256 - 1}\n", "s.yaml")) == \
        {"a": 2**256 - 1, "b": -(2**256 - 1)}
    for text in (str(2**256), BIG, HEX, "0b" + "1" * 300, "0" + "7" * 100, "1" + ":59" * 50):
        with pytest.raises(SpecError) as info:
            load_yaml(f"params:\n  d: {text}\n", "s.yaml")
        (d,) = info.value.diagnostics
        assert (d.code, d.location.line, d.location.col) == ("LS126", 2, 6)  # type: ignore[union-attr]


@given(st.text(max_size=60) | st.from_regex(r"[0-9]{1,6000}(\.[0-9]{1,500})?[KMGTBi]{0,3}",
                                              fullmatch=True))
def test_budget_flags_raise_only_usage_errors(text: str) -> None:
    for parse in (parse_count, parse_bytes):
        try:
            value = parse(text)
        except UsageError as e:
            assert len(e.diagnostics[0].message) < 200
        else:
            assert 0 <= value <= MAX_BUDGET


@given(st.text(max_size=60) | st.from_regex(r"[0-9, \[\]]{1,6000}", fullmatch=True))
def test_shape_flags_raise_only_usage_errors(text: str) -> None:
    for parse in (parse_shape, parse_input):
        try:
            parse(text)
        except UsageError as e:
            assert len(e.diagnostics[0].message) < 300


@given(st.integers(min_value=-(2**20000), max_value=2**20000) | st.integers())
def test_any_yaml_integer_is_a_value_or_a_located_error(n: int) -> None:
    for text in (hex(n), str(n) if n.bit_length() < 14000 else hex(n)):
        try:
            value = plain(load_yaml(f"d: {text}\n", "s.yaml"))["d"]
        except SpecError as e:
            assert e.diagnostics[0].code == "LS126" and n.bit_length() > 256
        else:
            assert value == n


def test_budgets_are_read_exactly() -> None:
    assert parse_count("1.5B") == 1_500_000_000
    assert parse_count("0.000001M") == 1
    assert parse_bytes("1.5KiB") == 1536
    assert parse_count(str(MAX_BUDGET)) == MAX_BUDGET
    with pytest.raises(UsageError, match="too large"):
        parse_count(str(MAX_BUDGET + 1))
