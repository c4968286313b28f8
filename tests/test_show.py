"""`lazyspec show`: the model before any input, with ? for the sizes the data will fix."""

from __future__ import annotations

import json

import pytest
from conftest import SPECS
from test_bundled_specs import SMALL

import lazyspec
from lazyspec.compile import BuildOptions, build
from lazyspec.preview import preview


def test_mlp_shows_unknown_input_sizes(cli):
    r = cli("show", SPECS / "mlp.yaml")
    assert r.code == 0, r.stderr
    rows = {line.split()[0]: " ".join(line.split()[2:4]) for line in r.stdout.splitlines()
            if line.strip().startswith(("0.", "2."))}
    assert rows == {"0.weight": "[256, ?]", "0.bias": "[256] 256",
                    "2.weight": "[10, ?]", "2.bias": "[10] 10"}


def test_fixed_first_layer_is_known_before_data(cli):
    doc = json.loads(cli("show", SPECS / "mlp_fixed.yaml", "-f", "json").stdout)
    shapes = {p["path"]: p["shape"] for p in doc["params"]}
    assert shapes["0.weight"] == [256, 20]
    assert shapes["2.weight"] == [10, None]
    assert doc["known_params"] == 256 * 20 + 256 + 10
    assert doc["unknown"] == ["2.weight"]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_known_sizes_agree_with_the_dry_run(name):
    inputs, scale = SMALL[name]
    spec = lazyspec.load(SPECS / name)
    before = preview(build(spec.spec, BuildOptions(scale=scale)))
    after = {p.path: p.shape for p in spec.infer(*inputs, scale=scale).params}
    assert before.params, name
    for p in before.params:
        if p.tied:
            continue
        assert p.path in after, p.path
        assert len(p.shape) == len(after[p.path]), p.path
        for known, real in zip(p.shape, after[p.path], strict=True):
            assert known is None or known == real, (p.path, p.shape, after[p.path])
    # every lazy module leaves at least one size unknown: nothing was guessed into a number
    assert len(before.unknown) >= before.lazy_modules > 0 or name == "mlp_fixed.yaml" \
        or before.lazy_modules == 0


def test_show_marks_ties(cli):
    doc = json.loads(cli("show", SPECS / "gpt2.yaml", "--scale", "tiny", "-f", "json").stdout)
    head = next(p for p in doc["params"] if p["path"] == "lm_head.weight")
    assert head["tied"] == "wte.weight" and head["shape"] == [512, None]


def test_show_reports_spec_errors(cli, write_spec):
    r = cli("show", write_spec("layers:\n  - LazyLinar(3)\n"))
    assert r.code == 1 and "error[LS120]" in r.stderr


def test_show_json_validates_against_the_schema(cli):
    from test_gate import _validator

    _validator().validate(json.loads(cli("show", SPECS / "resnet18.yaml", "-f", "json").stdout))
