"""Named input dimensions: output shapes as expressions, parameters that must not depend on them."""

from __future__ import annotations

import json

from conftest import SPECS

import lazyspec


def test_resnet_symbolic_shapes_for_every_node(cli):
    r = cli("infer", SPECS / "resnet18.yaml", "--input", "B,3,H,W", "-f", "json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    ran = [n for n in doc["nodes"] if n["output"] is not None]
    assert ran and all(n["symbolic"] for n in ran)
    by_path = {n["path"]: n["symbolic"] for n in doc["nodes"]}
    assert by_path["conv1"] == "[B, 64, ((H - 1)//2) + 1, ((W - 1)//2) + 1]"
    assert by_path["layer1"] == "[B, 64, ((H - 1)//4) + 1, ((W - 1)//4) + 1]"
    assert by_path["fc"] == "[B, 1000]"
    assert doc["symbolic_outputs"] == ["[B, 1000]"]
    assert doc["symbols"] == {"B": 2, "H": 64, "W": 64}
    concrete = lazyspec.infer(SPECS / "resnet18.yaml", "2,3,64,64")
    assert [(p["path"], tuple(p["shape"])) for p in doc["params"]] == \
        [(p.path, p.shape) for p in concrete.params]
    assert not any("depend on" in note for note in doc["notes"])


def test_declared_names_are_used_when_no_input_is_given():
    result = lazyspec.infer(SPECS / "gpt2.yaml", scale="tiny")
    assert result.symbolic_outputs == ["[B, T, 512]"]
    assert result.symbols == {"B": 2, "T": 64}


def test_a_parameter_that_depends_on_a_name_is_reported(cli):
    r = cli("infer", SPECS / "lenet.yaml", "--input", "B,1,H,W")
    assert r.code == 0
    assert "output: [B, 10]" in r.stdout
    note = " ".join(r.stdout.split())
    assert "node 'fc1' (LazyLinear) needs" in note
    assert "its parameters depend on H, W" in note


def test_fixed_and_named_dims_mix(cli):
    r = cli("infer", SPECS / "unet.yaml", "--input", "1,3,H,W")
    assert r.code == 0
    assert "output: [1, 2, H, W]" in r.stdout
