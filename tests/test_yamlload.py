"""The safe YAML reader: positions kept, dangerous or ambiguous YAML refused with its position."""

from __future__ import annotations

import pytest

from lazyspec.errors import SpecError
from lazyspec.spec.yamlload import MAX_DEPTH, YMap, YScalar, YSeq, load_yaml, plain


def codes(text: str) -> list[tuple[str, int, int]]:
    with pytest.raises(SpecError) as exc:
        load_yaml(text, "s.yaml")
    return [(d.code, d.location.line, d.location.col) for d in exc.value.diagnostics]


def test_positions_are_one_based():
    tree = load_yaml("layers:\n  - ReLU\n  - fc: LazyLinear(3)\n", "s.yaml")
    assert isinstance(tree, YMap)
    layers = tree.get("layers")
    assert isinstance(layers, YSeq)
    relu, fc = layers.items
    assert isinstance(relu, YScalar) and (relu.loc.line, relu.loc.col) == (2, 5)
    assert isinstance(fc, YMap) and (fc.loc.line, fc.loc.col) == (3, 5)
    assert plain(tree) == {"layers": ["ReLU", {"fc": "LazyLinear(3)"}]}


def test_values_keep_yaml_types():
    assert plain(load_yaml("a: 1\nb: 1.5\nc: true\nd: null\ne: '1'\nf: 2020-01-01\n", "s")) == {
        "a": 1, "b": 1.5, "c": True, "d": None, "e": "1", "f": "2020-01-01"}


@pytest.mark.parametrize(("text", "want"), [
    ("a: &x 1\nb: *x\n", [("LS102", 1, 4)]),
    ("a: [1, 2]\nb: !!python/object/apply:os.system ['ls']\n", [("LS104", 2, 4)]),
    ("a: !foo 1\n", [("LS104", 1, 4)]),
    ("a: !!binary aGk=\n", [("LS104", 1, 4)]),
    ("a: 1\n---\nb: 2\n", [("LS105", 2, 1)]),
    ("a: 1\nb: 2\na: 3\n", [("LS103", 3, 1)]),
    ("x:\n  a: 1\n  a: 2\ny:\n  b: 1\n  b: 1\n", [("LS103", 3, 3), ("LS103", 6, 3)]),
    ("a: [1, 2\n", [("LS101", 1, 9)]),
    ("a:\n\t- 1\n", [("LS101", 2, 1)]),
])
def test_refused_yaml(text, want):
    assert codes(text) == want


def test_nesting_depth_is_capped():
    deep = "a: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    assert codes(deep)[0][0] == "LS107"
    very_deep = "a: " + "[" * 100_000 + "]" * 100_000 + "\n"
    assert codes(very_deep)[0][0] == "LS107"


def test_file_size_is_capped():
    assert codes("a: '" + "x" * 2_000_000 + "'\n")[0][0] == "LS106"


def test_empty_file_is_an_empty_mapping():
    assert isinstance(load_yaml("", "s.yaml"), YMap)
    assert isinstance(load_yaml("# only a comment\n", "s.yaml"), YMap)
