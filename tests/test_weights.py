"""`lazyspec weights SPEC CHECKPOINT`: real checkpoints of the bundled specs fit (exit 0); one
altered shape, one dropped key, one added key and a renamed prefix are each reported exactly
(exit 1); name mapping and layout declarations; sharded checkpoints, PyTorch files, and a
70B-parameter sparse checkpoint read from its headers alone.

Checkpoints are written with torch.save and as safetensors by hand (tests/checkpoint_files.py);
the bad files are in tests/test_hostile_checkpoints.py, the gate in tests/test_weights_gate.py.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from checkpoint_files import (
    llama_hf_shapes,
    state_shapes,
    write_safetensors,
    write_sharded,
)
from conftest import ROOT, SPECS, CliResult
from reference_llama import LLAMA2_70B, LLAMA2_70B_PARAMS

import lazyspec
from lazyspec import engine
from lazyspec.checkpoint import read_checkpoint

Cli = Callable[..., CliResult]

# Bundled specs, the inputs (and scale) their tests materialise them at.
BUNDLED = {
    "mlp": ("mlp.yaml", ["2,20"], None),
    "lenet": ("lenet.yaml", ["1,1,28,28"], None),
    "resnet18": ("resnet18.yaml", ["1,3,32,32"], None),  # batch-norm buffers
    "gpt2-tiny": ("gpt2.yaml", ["1,8:int64"], "tiny"),  # a tied head: two names, one tensor
    "two_input": ("two_input.yaml", ["a=4,32", "b=4,32"], None),  # a shared encoder
    "unet": ("unet.yaml", ["1,3,32,32"], None),
}


def materialised(key: str) -> dict[str, torch.Tensor]:
    name, inputs, scale = BUNDLED[key]
    model = lazyspec.load(SPECS / name).materialize(*inputs, device="cpu", scale=scale)
    return dict(model.state_dict())


def flags(key: str) -> list[str]:
    name, inputs, scale = BUNDLED[key]
    return [str(SPECS / name), *[a for i in inputs for a in ("--input", i)],
            *(["--scale", scale] if scale else [])]


def save_safetensors(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """A real safetensors file: the header, then each tensor's bytes (little-endian, in
    order)."""
    write_safetensors(path, state_shapes(state))
    header_length = int.from_bytes(path.read_bytes()[:8], "little")
    with open(path, "r+b") as f:
        f.seek(8 + header_length)
        for t in state.values():
            f.write(t.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return path


def weights(cli: Cli, key: str, checkpoint: Path, *extra: str) -> tuple[CliResult, Any]:
    """`lazyspec weights` with --format json: the result and the parsed document."""
    r = cli("weights", *flags(key)[:1], str(checkpoint), *flags(key)[1:], *extra, "-f", "json")
    return r, json.loads(r.stdout) if r.stdout else None


def problems(doc: Any) -> dict[str, list[str]]:
    """Problem keys by status."""
    out: dict[str, list[str]] = {"missing": [], "unexpected": [], "mismatch": []}
    for k in doc["fit"]["keys"]:
        if k["status"] in out:
            out[k["status"]].append(k["name"])
    return out


# --- real checkpoints of the bundled specs fit --------------------------------------------------


@pytest.mark.parametrize("key", list(BUNDLED))
def test_bundled_specs_fit_their_own_checkpoints(cli: Cli, tmp_path: Path, key: str) -> None:
    state = materialised(key)
    torch.save(state, tmp_path / "model.pt")
    save_safetensors(tmp_path / "model.safetensors", state)
    for checkpoint in ("model.pt", "model.safetensors"):
        r, doc = weights(cli, key, tmp_path / checkpoint)
        assert r.code == 0, r.stdout + r.stderr
        assert doc["ok"] and doc["fit"]["fits"]
        assert doc["fit"]["counts"]["ok"] == len(state) and len(doc["fit"]["keys"]) == len(state)


def test_an_exported_state_dict_fits(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "lenet.pt"
    assert cli("export", SPECS / "lenet.yaml", "--input", "1,1,28,28", "--to", "state-dict",
               "--output", out).code == 0
    r = cli("weights", SPECS / "lenet.yaml", out, "--input", "1,1,28,28")
    assert r.code == 0, r.stdout + r.stderr
    assert "10 keys: 10 fit, 0 missing, 0 unexpected, 0 shape mismatch(es)" in r.stdout
    assert "fits: load_state_dict(strict=True) would take it" in r.stdout


def test_buffers_and_tied_names_are_keys(tmp_path: Path, cli: Cli) -> None:
    """Exactly the keys load_state_dict(strict=True) wants: persistent buffers (batch norm's
    running statistics and counter) and both names of GPT-2's tied head."""
    save_safetensors(tmp_path / "r.safetensors", materialised("resnet18"))
    _, doc = weights(cli, "resnet18", tmp_path / "r.safetensors")
    kinds = {k["name"]: k["spec"]["kind"] for k in doc["fit"]["keys"]}
    assert kinds["bn1.running_mean"] == kinds["bn1.num_batches_tracked"] == "buffer"
    assert kinds["conv1.weight"] == "parameter"
    save_safetensors(tmp_path / "g.safetensors", materialised("gpt2-tiny"))
    _, doc = weights(cli, "gpt2-tiny", tmp_path / "g.safetensors")
    tied = {k["name"]: k["spec"]["tied"] for k in doc["fit"]["keys"]}
    assert tied["lm_head.weight"] == ["wte.weight"] and tied["wte.weight"] == ["lm_head.weight"]


# --- each alteration reported exactly ------------------------------------------------------------


def _altered(how: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = dict(state)
    if how == "shape":
        state["fc2.weight"] = torch.zeros(84, 100)
    elif how == "drop":
        del state["fc3.bias"]
    elif how == "add":
        state["fc4.weight"] = torch.zeros(10, 84)
    elif how == "prefix":
        state = {f"net.{k}" if k.startswith("conv") else k: v for k, v in state.items()}
    return state


EXPECTED = {
    "shape": {"missing": [], "unexpected": [], "mismatch": ["fc2.weight"]},
    "drop": {"missing": ["fc3.bias"], "unexpected": [], "mismatch": []},
    "add": {"missing": [], "unexpected": ["fc4.weight"], "mismatch": []},
    "prefix": {"missing": ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"],
               "unexpected": ["net.conv1.weight", "net.conv1.bias", "net.conv2.weight",
                              "net.conv2.bias"], "mismatch": []},
}


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
@pytest.mark.parametrize("how", list(EXPECTED))
def test_each_alteration_is_reported_exactly(cli: Cli, tmp_path: Path, how: str,
                                              fmt: str) -> None:
    state = _altered(how, materialised("lenet"))
    path = tmp_path / f"lenet.{fmt}"
    if fmt == "pt":
        torch.save(state, path)
    else:
        save_safetensors(path, state)
    r, doc = weights(cli, "lenet", path)
    assert r.code == 1, r.stdout + r.stderr
    assert problems(doc) == EXPECTED[how]
    assert not doc["ok"] and not doc["fit"]["fits"] and doc["exit_code"] == 1


def test_a_shape_mismatch_names_both_shapes_and_the_spec_line(cli: Cli, tmp_path: Path,
                                                              monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    torch.save(_altered("shape", materialised("lenet")), tmp_path / "l.pt")
    r = cli("weights", SPECS / "lenet.yaml", tmp_path / "l.pt", "--input", "1,1,28,28")
    line = next(n for n, text in enumerate((SPECS / "lenet.yaml").read_text().splitlines(), 1)
                if "fc2" in text and "Linear" in text)
    assert re.search(rf"mismatch +fc2\.weight +\[84, 120\] float32 +\[84, 100\] float32 +{line}",
                     r.stdout), r.stdout
    _, doc = weights(cli, "lenet", tmp_path / "l.pt")
    row = next(k for k in doc["fit"]["keys"] if k["name"] == "fc2.weight")
    assert row["location"] == {"path": str(SPECS / "lenet.yaml"), "line": line, "col": 5}
    assert row["spec"]["shape"] == [84, 120] and row["checkpoint"]["shape"] == [84, 100]


def test_a_renamed_prefix_fits_with_the_mapping_flags(cli: Cli, tmp_path: Path) -> None:
    torch.save(_altered("prefix", materialised("lenet")), tmp_path / "l.pt")
    _, doc = weights(cli, "lenet", tmp_path / "l.pt")
    assert any("try --strip-prefix net." in n for n in doc["fit"]["notes"])  # names the fix
    assert weights(cli, "lenet", tmp_path / "l.pt", "--strip-prefix", "net.")[0].code == 0
    # a prefix on every name but one (Hugging Face's LlamaForCausalLM: `model.`, not lm_head)
    state = {k if k.startswith("2.") else f"model.{k}": v
             for k, v in materialised("mlp").items()}
    torch.save(state, tmp_path / "m.pt")
    assert weights(cli, "mlp", tmp_path / "m.pt", "--strip-prefix", "model.")[0].code == 0


def test_add_prefix(cli: Cli, tmp_path: Path, write_spec) -> None:
    """A spec whose model sits under `backbone.`; the checkpoint saved the inner model."""
    spec = write_spec("layers:\n  - backbone: Block\nblocks:\n  Block:\n    layers:\n"
                      "      - LazyLinear(4)\n")
    torch.save({"0.weight": torch.zeros(4, 3), "0.bias": torch.zeros(4)}, tmp_path / "b.pt")
    r = cli("weights", spec, tmp_path / "b.pt", "--input", "2,3", "-f", "json")
    assert r.code == 1 and "try --add-prefix backbone." in " ".join(json.loads(r.stdout)["fit"][
        "notes"])
    assert cli("weights", spec, tmp_path / "b.pt", "--input", "2,3", "--add-prefix",
               "backbone.").code == 0


def test_dtypes_are_shown_and_do_not_fail(cli: Cli, tmp_path: Path) -> None:
    """load_state_dict copies across dtypes: a bfloat16 checkpoint fits a float32 spec."""
    state = {k: v.to(torch.bfloat16) for k, v in materialised("mlp").items()}
    save_safetensors(tmp_path / "m.safetensors", state)
    r = cli("weights", SPECS / "mlp.yaml", tmp_path / "m.safetensors", "--input", "2,20")
    assert r.code == 0
    assert "dtypes: spec float32 (4); checkpoint bfloat16 (4)" in r.stdout


# --- Hugging Face layouts -----------------------------------------------------------------------


CONV1D = ("*.c_attn.weight", "*.c_proj.weight", "*.c_fc.weight")


def gpt2_hf(state_shapes_: dict[str, tuple[str, tuple[int, ...]]],
            old_buffers: bool = True) -> dict[str, tuple[str, tuple[int, ...]]]:
    """GPT2LMHeadModel as save_pretrained writes it: `transformer.` names, Conv1D weights stored
    [in, out], the tied head saved once (as wte), and (older files) each attention's mask."""
    out = {}
    for name, (dtype, shape) in state_shapes_.items():
        if name == "lm_head.weight":
            continue
        if re.search(r"\.(c_attn|c_proj|c_fc)\.weight$", name):
            shape = shape[::-1]
        out["transformer." + name] = (dtype, shape)
    if old_buffers:
        n_pos = state_shapes_["wpe.weight"][1][0]
        n_layer = 1 + max(int(n.split(".")[1]) for n in state_shapes_ if n.startswith("h."))
        for i in range(n_layer):
            out[f"transformer.h.{i}.attn.bias"] = ("F32", (1, 1, n_pos, n_pos))
    return out


def gpt2_layout() -> list[str]:
    return ["--strip-prefix", "transformer.", *[a for g in CONV1D for a in ("--transpose", g)],
            "--ignore", "*.attn.bias", "--ignore", "lm_head.weight"]


def test_the_gpt2_spec_against_a_hugging_face_gpt2_checkpoint(cli: Cli, tmp_path: Path) -> None:
    """The bundled GPT-2 small (full size) against GPT2LMHeadModel's layout, sparse (~500 MB that
    take no disk): without the layout every key is off, with it everything fits."""
    spec = lazyspec.load(SPECS / "gpt2.yaml").materialize("1,8:int64")
    path = write_safetensors(tmp_path / "model.safetensors",
                             gpt2_hf(state_shapes(spec.state_dict())))
    assert path.stat().st_size > 400_000_000 and path.stat().st_blocks * 512 < 10_000_000
    r = cli("weights", SPECS / "gpt2.yaml", path, "-f", "json")
    assert r.code == 1
    notes = json.loads(r.stdout)["fit"]["notes"]
    assert any("try --strip-prefix transformer." in n for n in notes), notes
    r = cli("weights", SPECS / "gpt2.yaml", path, "--strip-prefix", "transformer.", "-f", "json")
    doc = json.loads(r.stdout)
    assert r.code == 1
    assert len(problems(doc)["mismatch"]) == 36  # c_attn, c_fc, mlp.c_proj: square c_proj fits
    assert any("--transpose '*.c_attn.weight'" in n for n in doc["fit"]["notes"])
    missing = next(k for k in doc["fit"]["keys"] if k["name"] == "lm_head.weight")
    assert missing["status"] == "missing" and "tied to wte.weight" in missing["note"]
    r = cli("weights", SPECS / "gpt2.yaml", path, *gpt2_layout(), "-f", "json")
    doc = json.loads(r.stdout)
    assert r.code == 0, r.stdout
    assert doc["fit"]["counts"] == {"ok": 148, "missing": 0, "unexpected": 0, "mismatch": 0,
                                    "ignored": 13}
    flipped = [k for k in doc["fit"]["keys"] if k["checkpoint"] and k["checkpoint"]["transposed"]]
    assert len(flipped) == 48  # 4 Conv1D weights x 12 blocks


def test_transpose_applies_to_2d_tensors_only(cli: Cli, tmp_path: Path) -> None:
    state = materialised("mlp")
    torch.save({k: v.t() if v.dim() == 2 else v for k, v in state.items()}, tmp_path / "t.pt")
    r, doc = weights(cli, "mlp", tmp_path / "t.pt", "--transpose", "*")
    assert r.code == 0
    assert [k["checkpoint"]["transposed"] for k in doc["fit"]["keys"]] == [True, False, True,
                                                                          False]


def test_layout_rules_that_match_nothing_are_named(cli: Cli, tmp_path: Path) -> None:
    torch.save(materialised("mlp"), tmp_path / "m.pt")
    r, doc = weights(cli, "mlp", tmp_path / "m.pt", "--strip-prefix", "model.", "--transpose",
                     "*.c_fc.weight", "--ignore", "nothing.*")
    assert r.code == 0
    assert doc["fit"]["notes"] == ["--strip-prefix model. matched no checkpoint name",
                                   "--transpose '*.c_fc.weight' matched no key",
                                   "--ignore 'nothing.*' matched no key"]


def test_unexpected_keys_point_at_the_nearest_module(cli: Cli, tmp_path: Path) -> None:
    state = materialised("gpt2-tiny")
    state["h.1.attn.bias"] = torch.zeros(1, 1, 8, 8)
    torch.save(state, tmp_path / "g.pt")
    _, doc = weights(cli, "gpt2-tiny", tmp_path / "g.pt")
    row = next(k for k in doc["fit"]["keys"] if k["status"] == "unexpected")
    text = (SPECS / "gpt2.yaml").read_text().splitlines()
    assert "attn: CausalSelfAttention" in text[row["location"]["line"] - 1]


def test_a_scalar_parameter_takes_a_one_element_tensor() -> None:
    """load_state_dict's rule for checkpoints older than 0-d tensors."""
    from lazyspec.checkpoint import Checkpoint, TensorRecord
    from lazyspec.weights import Expected, Layout, compare

    expected = [Expected("t", (), "float32", "parameter", None)]
    one = Checkpoint("c", "pytorch", {"t": TensorRecord("t", (1,), "float32", "c")})
    two = Checkpoint("c", "pytorch", {"t": TensorRecord("t", (2, 1), "float32", "c")})
    assert compare(expected, one, Layout())[0].status == "ok"
    assert compare(expected, two, Layout())[0].status == "mismatch"


# --- PyTorch files and sharded checkpoints ------------------------------------------------------


def test_pytorch_formats(cli: Cli, tmp_path: Path) -> None:
    """The zip format, the format before torch 1.6, and a training checkpoint that holds the
    state dict beside other entries."""
    state = materialised("mlp")
    torch.save(state, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    torch.save({"epoch": 3, "state_dict": state, "lr": 0.1}, tmp_path / "trainer.ckpt")
    for name in ("old.pt", "trainer.ckpt"):
        r, doc = weights(cli, "mlp", tmp_path / name)
        assert r.code == 0, r.stdout + r.stderr
    assert any("the state dict under 'state_dict'" in n for n in doc["fit"]["notes"])


def test_sharded_pytorch_checkpoint_and_glob(cli: Cli, tmp_path: Path) -> None:
    state = materialised("lenet")
    names = list(state)
    folder = tmp_path / "hf"
    folder.mkdir()
    weight_map = {}
    for i, part in enumerate((names[:5], names[5:]), 1):
        shard = f"pytorch_model-{i:05d}-of-00002.bin"
        torch.save({n: state[n] for n in part}, folder / shard)
        weight_map.update(dict.fromkeys(part, shard))
    index = folder / "pytorch_model.bin.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    r, doc = weights(cli, "lenet", index)
    assert r.code == 0 and len(doc["fit"]["files"]) == 2
    r, doc = weights(cli, "lenet", folder / "pytorch_model-*.bin")  # a glob of shards
    assert r.code == 0 and doc["fit"]["format"] == "pytorch"


def _rchar() -> int:
    """Bytes this process has read through read() and the like (Linux)."""
    text = Path("/proc/self/io").read_text()
    return int(re.search(r"^rchar: (\d+)", text, re.MULTILINE).group(1))  # type: ignore[union-attr]


needs_proc_io = pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="Linux /proc")


@needs_proc_io
def test_the_70b_sharded_sparse_checkpoint_is_read_from_its_headers(cli: Cli,
                                                                     tmp_path: Path) -> None:
    """LLaMA-2 70B as Hugging Face shards it (15 files, bfloat16, 138 GB that take no disk): the
    bundled spec fits it, and reading the checkpoint reads a few hundred kilobytes."""
    shapes = llama_hf_shapes(LLAMA2_70B)
    index = write_sharded(tmp_path / "llama", shapes, shards=15)
    sizes = [p.stat() for p in (tmp_path / "llama").glob("*.safetensors")]
    assert sum(s.st_size for s in sizes) > 137e9 and sum(s.st_blocks for s in sizes) < 20_000
    before = _rchar()
    checkpoint = read_checkpoint(index)
    assert _rchar() - before < 2_000_000  # headers and the index only
    assert sum(t.numel for t in checkpoint.tensors.values()) == LLAMA2_70B_PARAMS
    r, doc = weights_70b(cli, index)
    assert r.code == 0, r.stdout[-3000:] + r.stderr
    assert doc["fit"]["counts"]["ok"] == len(shapes) == 723 and len(doc["fit"]["files"]) == 15


def weights_70b(cli: Cli, index: Path) -> tuple[CliResult, Any]:
    r = cli("weights", SPECS / "llama2-70b.yaml", index, "--strip-prefix", "model.", "-f", "json")
    return r, json.loads(r.stdout) if r.stdout else None


@needs_proc_io
def test_no_tensor_data_is_read_from_pytorch_files(tmp_path: Path) -> None:
    """A 64 MB torch.save file in both formats: torch reads its pickle, not its storages."""
    big = {"w": torch.zeros(16, 1024, 1024)}
    torch.save(big, tmp_path / "new.pt")
    torch.save(big, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    del big
    torch.save({"w": torch.zeros(1)}, tmp_path / "warm.pt")
    read_checkpoint(tmp_path / "warm.pt")  # the reader's first use imports modules (read too)
    for name in ("new.pt", "old.pt"):
        before = _rchar()
        checkpoint = read_checkpoint(tmp_path / name)
        assert _rchar() - before < 1_000_000, name
        assert checkpoint.tensors["w"].shape == (16, 1024, 1024)


# --- the engine: parameter shapes need no symbolic pass ---------------------------------------


def test_the_weights_request_skips_the_symbolic_pass() -> None:
    request = engine.Request(SPECS / "gpt2.yaml", options=lazyspec.load(
        SPECS / "gpt2.yaml").options(scale="tiny"))
    with_symbols = engine.run(request)
    without = engine.run(engine.Request(request.spec, options=request.options, symbolic=False))
    assert with_symbols.result is not None and with_symbols.result.symbolic_outputs
    assert without.result is not None and not without.result.symbolic_outputs
    assert [p.shape for p in without.result.params] == [p.shape for p in
                                                       with_symbols.result.params]


# --- output formats ------------------------------------------------------------------------------


@pytest.fixture
def weights_project(tmp_path: Path, monkeypatch) -> Path:
    (tmp_path / "mlp.yaml").write_text((SPECS / "mlp.yaml").read_text())
    state = materialised("mlp")
    state["0.weight"] = torch.zeros(128, 20)
    del state["2.bias"]
    state["extra.weight"] = torch.zeros(3)
    save_safetensors(tmp_path / "bad.safetensors", state)
    save_safetensors(tmp_path / "good.safetensors", materialised("mlp"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return tmp_path


@pytest.mark.parametrize("fmt", ["table", "json", "markdown", "github"])
def test_weights_golden(cli: Cli, golden, weights_project: Path, fmt: str) -> None:
    r = cli("weights", "mlp.yaml", "bad.safetensors", "--input", "2,20", "--format", fmt)
    assert r.code == 1
    golden(f"weights-fail.{fmt}.out", r.stdout)
    r = cli("weights", "mlp.yaml", "good.safetensors", "--input", "2,20", "--format", fmt)
    assert r.code == 0
    golden(f"weights-pass.{fmt}.out", r.stdout)


def test_weights_json_validates_against_the_schema(cli: Cli, weights_project: Path,
                                                   write_spec) -> None:
    import jsonschema

    schema = json.loads((ROOT / "lazyspec" / "report" / "schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    broken = write_spec("layers:\n  - Nope\n")
    docs = [cli("weights", "mlp.yaml", name, "--input", "2,20", "-f", "json").stdout
            for name in ("bad.safetensors", "good.safetensors")]
    docs.append(cli("weights", broken, "good.safetensors", "--input", "2,20", "-f",
                    "json").stdout)
    for doc in docs:
        validator.validate(json.loads(doc))
    assert json.loads(docs[2])["fit"] is None and json.loads(docs[2])["exit_code"] == 1


def test_github_annotations_and_summary(cli: Cli, weights_project: Path, monkeypatch) -> None:
    summary = weights_project / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    r = cli("weights", "mlp.yaml", "bad.safetensors", "--input", "2,20", "-f", "github")
    assert r.code == 1
    assert ("::error file=mlp.yaml,line=4,col=5,title=lazyspec checkpoint%3A shape mismatch::"
            "0.weight: spec [256, 20], checkpoint [128, 20]") in r.stdout
    assert "title=lazyspec checkpoint%3A unexpected key::unexpected extra.weight" in r.stdout
    assert "### lazyspec weights: mlp.yaml vs bad.safetensors" in summary.read_text()


def test_a_failing_spec_is_reported_and_not_compared(cli: Cli, weights_project: Path,
                                                     write_spec) -> None:
    spec = write_spec("layers:\n  - Linear(3, 4)\n  - Linear(5, 6)\n")
    r = cli("weights", spec, "good.safetensors", "--input", "2,3")
    assert r.code == 1 and "error[LS201]" in r.stderr and r.stdout == ""


def test_the_checkpoint_is_read_before_the_dry_run(cli: Cli, tmp_path: Path,
                                                    monkeypatch) -> None:
    """An unreadable file fails fast (exit 2), without building the model."""
    called = []
    monkeypatch.setattr(engine, "run", lambda *a, **k: called.append(1))
    r = cli("weights", SPECS / "mlp.yaml", tmp_path / "nope.safetensors")
    assert r.code == 2 and "error[LS308]" in r.stderr and "no such file" in r.stderr
    assert called == []


def test_weights_reads_no_torch_for_safetensors(tmp_path: Path) -> None:
    """The header readers are torch-free: reading a safetensors checkpoint imports no torch."""
    import subprocess
    import sys

    write_safetensors(tmp_path / "m.safetensors", {"w": ("F32", (2, 3))})
    code = ("import sys; from lazyspec.checkpoint import read_checkpoint; "
            f"c = read_checkpoint({str(tmp_path / 'm.safetensors')!r}); "
            "print(c.tensors['w'].shape, 'torch' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.strip() == "(2, 3) False", p.stdout + p.stderr
