"""`lazyspec import hf`: specs written from Hugging Face configs (tests/hf_configs.py, written by
the tests: no network).

- the published parameter counts, counted on meta by the engine;
- name for name and shape for shape against plain-PyTorch references (tests/reference_llama.py,
  reference_models.py, reference_modern.py, reference_hf.py), the bundled specs and the names
  dumped from transformers (tests/reference/t5_small.json), and the same outputs on the CPU after
  load_state_dict at small sizes;
- the fields of a config: implemented, inert, supported at their default only;
- the command line, and the worked example: config -> spec -> lock -> check -> weights;
- `CausalMask(window=)`, Mistral's sliding window, and its export;
- the templates ship in the wheel;
- where transformers is installed (it is not a test dependency), the same keys, shapes and outputs
  as its classes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import reference_hf
import reference_llama
import reference_models
import reference_modern
import torch
import yaml
from checkpoint_files import llama_hf_shapes, write_sharded
from hf_configs import BERT_BASE, GPT2, LEFTOVERS, LLAMA2_7B, PUBLISHED, QWEN25_05B, T5_V11_SMALL
from torch import nn

import lazyspec
from lazyspec import builtin_ops, engine, export
from lazyspec.errors import SpecError
from lazyspec.importers import hf
from lazyspec.inputs import parse_input
from lazyspec.options import BuildOptions

ROOT = Path(__file__).resolve().parent.parent
Shapes = dict[str, tuple[int, ...]]


def write_config(tmp_path: Path, data: dict[str, Any], folder: str = "model") -> Path:
    path = tmp_path / folder
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def imported(tmp_path: Path, data: dict[str, Any]) -> tuple[hf.Imported, engine.Outcome]:
    spec = hf.import_config(write_config(tmp_path, data))
    return spec, hf.check(spec, tmp_path / "spec.yaml")


def shapes(state: dict[str, torch.Tensor]) -> Shapes:
    return {k: tuple(v.shape) for k, v in state.items()}


def flag(x: torch.Tensor) -> str:
    return ",".join(map(str, x.shape)) + (":int64" if x.dtype == torch.int64 else "")


def spec_model(tmp_path: Path, data: dict[str, Any], *xs: torch.Tensor) -> nn.Module:
    """The imported spec, materialised on the CPU at the inputs' shapes."""
    spec = hf.import_config(write_config(tmp_path, data))
    path = tmp_path / "spec.yaml"
    path.write_text(spec.text, encoding="utf-8")
    return lazyspec.load(path).materialize(*(flag(x) for x in xs), device="cpu").eval()


def randomised(module: nn.Module) -> nn.Module:
    """Every weight random (norms start at 1, biases at 0: make every tensor count)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    return module.eval()


def same_outputs(model: nn.Module, reference: nn.Module, state: dict[str, torch.Tensor],
                 *xs: torch.Tensor) -> None:
    """The reference's weights fit the spec's model key for key (strict) and give its outputs."""
    assert shapes(model.state_dict()) == shapes(state)
    model.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(model(*xs), reference(*xs), rtol=1e-4, atol=1e-4)


# --- published counts ------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_count(name: str, tmp_path: Path) -> None:
    config, count = PUBLISHED[name]
    spec, outcome = imported(tmp_path, config)
    assert outcome.diagnostics == []  # no error, no warning
    assert outcome.result is not None and outcome.result.totals.params == count
    assert spec.family.model_type == config["model_type"]


@pytest.mark.parametrize("name", list(LEFTOVERS))
def test_fields_transformers_never_reads_are_not_refused(name: str, tmp_path: Path) -> None:
    """Hub configs keep fields of older code (gpt2-medium's `n_special`, distilgpt2's
    `_num_labels`, the TF BERT pooler's settings, `max_sequence_length`): not a different model."""
    config, count = LEFTOVERS[name]
    _, outcome = imported(tmp_path, config)
    assert outcome.diagnostics == []
    assert outcome.result is not None and outcome.result.totals.params == count


@pytest.mark.parametrize(("base", "key", "width"), [
    ({**GPT2, "n_layer": 1}, "n_positions", "n_embd"),
    ({**BERT_BASE, "num_hidden_layers": 1}, "max_position_embeddings", "hidden_size")])
def test_a_position_table_shorter_than_the_hint_is_imported(base: dict[str, Any], key: str,
                                                            width: str, tmp_path: Path) -> None:
    """Tiny test configs have a few positions: the check runs sequences the table can hold."""
    counts = {}
    for positions in (64, 32, 1):
        _, outcome = imported(tmp_path / str(positions), {**base, key: positions})
        assert outcome.diagnostics == [] and outcome.result is not None
        counts[positions] = outcome.result.totals.params
    assert counts[64] - counts[32] == 32 * base[width]
    assert counts[64] - counts[1] == 63 * base[width]


def test_n_special_is_supported_only_at_zero(tmp_path: Path) -> None:
    with pytest.raises(hf.Refused, match="n_special"):
        hf.import_config(write_config(tmp_path, {**GPT2, "n_special": 2}))


@pytest.mark.parametrize(("config", "tied"), [(QWEN25_05B, True), (LLAMA2_7B, False),
                                               (GPT2, True),
                                               ({**GPT2, "tie_word_embeddings": False}, False)])
def test_the_header_names_the_tied_head_only_when_tied(config: dict[str, Any], tied: bool,
                                                       tmp_path: Path) -> None:
    """save_pretrained saves a tied head once: `--ignore lm_head.weight` exactly then."""
    spec = hf.import_config(write_config(tmp_path, config))
    header = "".join(line for line in spec.text.splitlines() if line.startswith("#"))
    assert ("--ignore lm_head.weight" in header) == tied
    assert ("tie:" in spec.text) == tied


def test_qwen2_has_q_k_v_biases_and_a_tied_head(tmp_path: Path) -> None:
    spec, outcome = imported(tmp_path, QWEN25_05B)
    assert outcome.diagnostics == [] and outcome.result is not None
    assert outcome.result.totals.params == 494_032_768  # Qwen/Qwen2.5-0.5B
    params = {p.path: p for p in outcome.result.params}
    for proj in ("q_proj", "k_proj", "v_proj"):
        assert f"model.layers.23.self_attn.{proj}.bias" in params
    assert "model.layers.0.self_attn.o_proj.bias" not in params
    assert spec.ties == [("lm_head.weight", "model.embed_tokens.weight")]
    assert spec.params["sliding_window"] is None  # use_sliding_window: false


def test_t5_v1_1_is_gated_with_an_untied_unscaled_head(tmp_path: Path) -> None:
    spec, outcome = imported(tmp_path, T5_V11_SMALL)
    assert outcome.diagnostics == [] and outcome.result is not None
    assert outcome.result.totals.params == 76_961_152  # google/t5-v1_1-small
    params = {p.path for p in outcome.result.params}
    assert {"encoder.block.0.layer.1.DenseReluDense.wi_0.weight", "lm_head.weight",
            "decoder.block.7.layer.2.DenseReluDense.wi_1.weight"} <= params
    assert not any(p.endswith(".wi.weight") for p in params)
    nodes = {n.path: n for n in outcome.result.nodes}
    assert nodes["scaled"].skipped == "when: false"
    assert spec.params["dense_act_fn"] == "gelu_new"


# --- name for name, and the same outputs -------------------------------------------------------


def llama_config(tiny: dict[str, int], **more: Any) -> dict[str, Any]:
    return {"model_type": "llama", "vocab_size": tiny["vocab_size"], "hidden_size": tiny["d"],
            "num_hidden_layers": tiny["n_layer"], "num_attention_heads": tiny["n_head"],
            "num_key_value_heads": tiny["n_kv_head"], "intermediate_size": tiny["ffn"],
            "rms_norm_eps": 1e-5, **more}


@pytest.mark.parametrize("tiny", [reference_llama.LLAMA2_7B_TINY, reference_llama.LLAMA2_70B_TINY],
                         ids=["7b", "70b-gqa"])
def test_llama_computes_what_the_reference_computes(tiny: dict[str, int], tmp_path: Path) -> None:
    reference = randomised(reference_llama.Llama(**tiny))
    state = {("" if k.startswith("lm_head.") else "model.") + k: v  # its names lack `model.`
             for k, v in reference.state_dict().items()}
    ids = torch.randint(0, tiny["vocab_size"], (2, 12))
    same_outputs(spec_model(tmp_path, llama_config(tiny), ids), reference, state, ids)


def decoder(kind: str, **more: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A small Mistral or Qwen2 config and the same sizes for reference_hf.CausalLM."""
    config = {"model_type": kind, "vocab_size": 100, "hidden_size": 64, "intermediate_size": 40,
              "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
              "rms_norm_eps": 1e-5, **more}
    sizes = {"vocab": 100, "d": 64, "ffn": 40, "layers": 3, "heads": 4, "kv": 2,
             "head_dim": 16, "theta": float(config.get("rope_theta", 10000.0)),
             "qkv_bias": kind == "qwen2", "o_bias": False, "mlp_bias": False, "eps": 1e-5,
             "tie": config.get("tie_word_embeddings", False)}
    return config, sizes


def test_mistral_sliding_window_computes_what_the_reference_computes(tmp_path: Path) -> None:
    config, sizes = decoder("mistral", sliding_window=3)
    reference = randomised(reference_hf.CausalLM({**sizes, "window": 3,
                                                  "first_window_layer": 0}))
    ids = torch.randint(0, 100, (2, 9))  # longer than the window: it matters
    model = spec_model(tmp_path, config, ids)
    same_outputs(model, reference, reference.state_dict(), ids)
    causal = randomised(reference_hf.CausalLM({**sizes, "window": None,
                                               "first_window_layer": 0}))
    with torch.no_grad():  # the window changes the outputs: the spec really applies it
        assert not torch.allclose(model(ids), causal(ids), atol=1e-3)


def test_qwen2_biases_tie_and_window_layers_compute_what_the_reference_computes(
        tmp_path: Path) -> None:
    config, sizes = decoder("qwen2", use_sliding_window=True, sliding_window=3,
                            max_window_layers=1, tie_word_embeddings=True, rope_theta=1e6)
    reference = randomised(reference_hf.CausalLM({**sizes, "window": 3, "first_window_layer": 1}))
    ids = torch.randint(0, 100, (2, 9))
    model = spec_model(tmp_path, config, ids)
    same_outputs(model, reference, reference.state_dict(), ids)
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_gpt2_computes_what_the_reference_computes(tmp_path: Path) -> None:
    reference = randomised(reference_models.GPT2(512, 64, 64, 2, 4))
    state = {("" if k.startswith("lm_head.") else "transformer.") + k: v
             for k, v in reference.state_dict().items()}  # its names lack `transformer.`
    config = {"model_type": "gpt2", "vocab_size": 512, "n_positions": 64, "n_embd": 64,
              "n_layer": 2, "n_head": 4}
    ids = torch.randint(0, 512, (2, 10))
    same_outputs(spec_model(tmp_path, config, ids), reference, state, ids)


def test_bert_computes_what_the_reference_computes(tmp_path: Path) -> None:
    reference = randomised(reference_hf.BertModel({"vocab": 100, "d": 64, "layers": 2,
                                                   "heads": 4, "ffn": 40, "positions": 32,
                                                   "types": 3, "eps": 1e-12}))
    config = {"model_type": "bert", "vocab_size": 100, "hidden_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 40,
              "max_position_embeddings": 32, "type_vocab_size": 3}
    ids, types = torch.randint(0, 100, (2, 9)), torch.randint(0, 3, (2, 9))
    model = spec_model(tmp_path, config, ids, types)
    same_outputs(model, reference, reference.state_dict(), ids, types)


def test_vit_computes_what_the_reference_computes(tmp_path: Path) -> None:
    reference = randomised(reference_hf.ViTForImageClassification(
        {"d": 32, "layers": 2, "heads": 4, "ffn": 40, "image": 32, "patch": 8, "channels": 3,
         "qkv_bias": True, "eps": 1e-12, "labels": 7}))
    config = {"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 2,
              "num_attention_heads": 4, "intermediate_size": 40, "image_size": 32,
              "patch_size": 8, "id2label": {str(i): str(i) for i in range(7)}}
    x = torch.randn(2, 3, 32, 32)
    same_outputs(spec_model(tmp_path, config, x), reference, reference.state_dict(), x)


def test_t5_computes_what_the_reference_computes(tmp_path: Path) -> None:
    from test_reference_specs import T5_TINY

    reference = randomised(reference_modern.T5ForConditionalGeneration(T5_TINY))
    config = {"model_type": "t5", "vocab_size": T5_TINY["vocab_size"],
              "d_model": T5_TINY["d_model"], "d_kv": T5_TINY["d_kv"], "d_ff": T5_TINY["d_ff"],
              "num_layers": T5_TINY["num_layers"], "num_heads": T5_TINY["num_heads"],
              "relative_attention_num_buckets": T5_TINY["buckets"],
              "relative_attention_max_distance": T5_TINY["max_distance"]}
    ids, dec = torch.randint(0, 128, (2, 16)), torch.randint(0, 128, (2, 8))
    model = spec_model(tmp_path, config, ids, dec)
    same_outputs(model, reference, reference.state_dict(), ids, dec)


def meta_state(outcome: engine.Outcome) -> Shapes:
    assert outcome.built is not None
    return shapes(outcome.built.module.state_dict())


def bundled(name: str, *inputs: str) -> engine.Outcome:
    outcome = engine.run(engine.Request(ROOT / "specs" / name, inputs=tuple(
        parse_input(i) for i in inputs), options=BuildOptions(), symbolic=False))
    assert outcome.error is None
    return outcome


def test_t5_small_has_the_names_transformers_dumps(tmp_path: Path) -> None:
    """t5-small's state dict (tied names included) as transformers dumped it, and as the
    bundled spec has it."""
    _, outcome = imported(tmp_path, PUBLISHED["t5-small"][0])
    dumped = json.loads((ROOT / "tests" / "reference" / "t5_small.json").read_text())
    assert meta_state(outcome) == {k: tuple(v) for k, v in dumped["state_dict"].items()}
    assert meta_state(outcome) == meta_state(bundled("t5_small.yaml"))


def test_llama_has_the_bundled_specs_names_under_model(tmp_path: Path) -> None:
    _, outcome = imported(tmp_path, PUBLISHED["llama2-70b"][0])
    want = {("" if k.startswith("lm_head.") else "model.") + k: v
            for k, v in meta_state(bundled("llama2-70b.yaml")).items()}
    assert meta_state(outcome) == want


def test_gpt2_has_the_bundled_specs_names_under_transformer(tmp_path: Path) -> None:
    _, outcome = imported(tmp_path, PUBLISHED["gpt2"][0])
    want = {("" if k.startswith("lm_head.") else "transformer.") + k: v
            for k, v in meta_state(bundled("gpt2.yaml")).items()}
    assert meta_state(outcome) == want


# --- the fields of a config ----------------------------------------------------------------------


@pytest.mark.parametrize("model_type", list(hf.FAMILIES))
def test_a_family_reads_only_its_implemented_fields(model_type: str, tmp_path: Path) -> None:
    """The builder of a family, on a config with nothing but its model_type, reads only the
    fields the family declares (Config.value asserts it), and every one it declares."""
    family = hf.FAMILIES[model_type]
    cfg = hf.Config(tmp_path / "config.json", {"model_type": model_type}, {},
                    allowed=family.implemented)
    cfg.read.add("model_type")
    filled = family.build(cfg)
    assert cfg.read == family.implemented
    assert not family.implemented & family.inert
    assert list(filled.params) == hf._template_params(
        dict(hf._sections(hf.template_text(family))[1])["params"])


@pytest.mark.parametrize("template", sorted({f.template for f in hf.FAMILIES.values()}))
def test_each_template_is_a_spec_of_its_reference_model(template: str) -> None:
    """A template alone is a complete spec (the importer only replaces params and ties)."""
    text = (ROOT / "lazyspec" / "importers" / "templates" / f"{template}.yaml").read_text()
    outcome = engine.run(engine.Request(Path(f"{template}.yaml"), text=text, symbolic=False))
    assert outcome.diagnostics == [] and outcome.result is not None


def test_inert_fields_and_fields_at_their_default_are_accepted(tmp_path: Path) -> None:
    config = {**LLAMA2_7B, "add_cross_attention": False, "pruned_heads": {},
              "attention_dropout": 0.1, "max_length": 20, "id2label": {"0": "a"}}
    spec = hf.import_config(write_config(tmp_path, config))
    assert spec.params["hidden_size"] == 4096


@pytest.mark.parametrize(("model_type", "want"), [
    ("llama", {"num_key_value_heads": 32, "intermediate_size": 11008, "sliding_window": None,
               "rms_norm_eps": 1e-6}),  # num_key_value_heads: None, one per head
    ("mistral", {"num_key_value_heads": 8, "intermediate_size": 14336, "sliding_window": 4096}),
    ("qwen2", {"num_key_value_heads": 32, "vocab_size": 151936, "qkv_bias": True}),
    ("gpt2", {"n_inner": 3072, "activation_function": "gelu_new"}),
])
def test_an_absent_field_takes_hugging_faces_default(model_type: str, want: dict[str, Any],
                                                     tmp_path: Path) -> None:
    params = hf.import_config(write_config(tmp_path, {"model_type": model_type})).params
    assert {k: params[k] for k in want} == want
    heads = hf.import_config(write_config(tmp_path, {"model_type": "llama",
                                                     "num_attention_heads": 8}, "h")).params
    assert heads["num_key_value_heads"] == 8 and heads["head_dim"] == 512


def test_transformers_5_rope_parameters_give_rope_theta(tmp_path: Path) -> None:
    config = {**LLAMA2_7B, "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}}
    del config["rope_scaling"]
    assert hf.import_config(write_config(tmp_path, config)).params["rope_theta"] == 500000.0


def test_written_params_read_back_as_the_config_gave_them(tmp_path: Path) -> None:
    """YAML 1.1 reads `1e-05` as a string: the spec writes 1.0e-05."""
    spec = hf.import_config(write_config(tmp_path, PUBLISHED["bert-base-uncased"][0]))
    params = yaml.safe_load(spec.text)["params"]
    assert params == spec.params and params["layer_norm_eps"] == 1e-12
    assert hf.yaml_value(1e-5) == "1.0e-05" and hf.yaml_value(1e20) == "1.0e+20"
    assert hf.yaml_value(0.5) == "0.5" and hf.yaml_value(None) == "null"


def test_header_shows_a_hostile_folder_name_escaped(tmp_path: Path) -> None:
    """A config's folder name reaches the spec's comments: a newline there would start a line
    of YAML of its own."""
    folder = "evil\nlayers:\n  - os.system('x')\n#"
    spec = hf.import_config(write_config(tmp_path, PUBLISHED["gpt2"][0], folder=folder))
    data = yaml.safe_load(spec.text)
    assert data["name"] == f"GPT2LMHeadModel ({folder})"  # quoted, exactly
    template = yaml.safe_load(hf.template_text(spec.family))
    assert list(data) == list(template) and data["layers"] == template["layers"]
    assert "\\n" in spec.text.splitlines()[0]  # the comment shows the newline escaped


# --- the command line and the worked example ----------------------------------------------------


def tiny_llama(**more: Any) -> dict[str, Any]:
    return llama_config(reference_llama.LLAMA2_7B_TINY, **more)


def test_import_writes_a_spec_that_infer_accepts(cli: Callable[..., Any], tmp_path: Path) -> None:
    folder = write_config(tmp_path, tiny_llama())
    out = tmp_path / "llama.yaml"
    r = cli("import", "hf", folder, "--output", out)
    assert r.code == 0, r.stderr
    assert r.stdout == "" and f"wrote {out}: LlamaForCausalLM, 131,904 parameters" in r.stderr
    r = cli("infer", out, "--input", "2,16:int64")
    assert r.code == 0 and "parameters: 131,904" in r.stdout
    again = cli("import", "hf", folder / "config.json", "--name", "Tiny")  # the file; stdout
    assert again.code == 0 and again.stdout.startswith("# Written by `lazyspec import hf`")
    assert 'name: "Tiny"' in again.stdout and again.stdout.replace(
        'name: "Tiny"', 'name: "LlamaForCausalLM (model)"') == out.read_text()


def test_worked_example_config_lock_check_weights(cli: Callable[..., Any],
                                                   tmp_path: Path) -> None:
    """README's worked example at full size: LLaMA-2 7B's config -> spec -> lock -> check, a
    changed config caught by the gate, and the downloaded checkpoint (sparse shards) checked
    against the spec with no layout flags."""
    spec, lock = tmp_path / "llama2-7b.yaml", tmp_path / "lazyspec.lock"
    assert cli("import", "hf", write_config(tmp_path, LLAMA2_7B), "-o", spec).code == 0
    r = cli("lock", spec, "--lock", lock, "--input", "1,16:int64")
    assert r.code == 0, r.stderr
    assert cli("check", spec, "--lock", lock, "--input", "1,16:int64").code == 0
    index = write_sharded(tmp_path / "ckpt", llama_hf_shapes(reference_llama.LLAMA2_7B), 2)
    r = cli("weights", spec, index)
    assert r.code == 0 and "291 fit" in r.stdout, r.stdout + r.stderr
    changed = {**LLAMA2_7B, "intermediate_size": 11264}
    assert cli("import", "hf", write_config(tmp_path, changed, "v2"), "-o", spec).code == 0
    r = cli("check", spec, "--lock", lock, "--input", "1,16:int64")
    assert r.code == 1 and "model.layers.0.mlp.gate_proj.weight" in r.stdout


def test_nothing_is_written_when_the_config_is_refused(cli: Callable[..., Any],
                                                       tmp_path: Path) -> None:
    out = tmp_path / "out.yaml"
    out.write_text("old\n")
    folder = write_config(tmp_path, {**LLAMA2_7B, "num_local_experts": 8})
    r = cli("import", "hf", folder, "-o", out)
    assert r.code == 2 and "error[LS310]" in r.stderr and "num_local_experts" in r.stderr
    assert f"{folder / 'config.json'}:" in r.stderr  # at the field's line
    assert out.read_text() == "old\n"


def test_a_spec_that_fails_its_check_is_not_written(cli: Callable[..., Any], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The check is what stands between a template bug and a written spec."""
    broken = hf.template_text(hf.FAMILIES["gpt2"]).replace("Linear(n_embd, 3 * n_embd)",
                                                          "Linear(n_embd, 3 * n_embd + 1)")
    monkeypatch.setattr(hf, "template_text", lambda family: broken)
    out = tmp_path / "gpt2.yaml"
    r = cli("import", "hf", write_config(tmp_path, PUBLISHED["gpt2"][0]), "-o", out)
    assert r.code == 2 and "error[LS201]" in r.stderr and "error[LS310]" in r.stderr
    assert "nothing was written" in r.stderr and not out.exists()


# --- CausalMask(window=): Mistral's sliding window -----------------------------------------------


@pytest.mark.parametrize("window", [1, 2, 3, 9, 100])
def test_causal_mask_window_is_hugging_faces_sliding_window(window: int) -> None:
    mask = builtin_ops.CausalMask(window=window)(torch.randn(2, 9, 4))
    i, j = torch.arange(9)[:, None], torch.arange(9)[None, :]
    allowed = (j <= i) & (j > i - window)  # transformers' causal mask and sliding_window_overlay
    assert torch.equal(mask == 0, allowed)
    assert torch.equal(mask[~allowed], torch.full_like(mask[~allowed], torch.finfo().min))
    assert torch.equal(builtin_ops.CausalMask(window=None)(torch.randn(1, 5, 2)),
                       builtin_ops.CausalMask()(torch.randn(1, 5, 2)))


WINDOWED = """
inputs:
  x: [2, 6, 8]
layers:
  - mask: CausalMask(window=2)
  - q: Unflatten(-1, [2, 4])
    in: x
  - h: Transpose(1, 2)
  - attn: ScaledDotProductAttention
    in: [h, h, h, mask]
"""


def test_causal_mask_window_exports_to_pytorch(write_spec: Callable[..., Path]) -> None:
    loaded = lazyspec.load(write_spec(WINDOWED))
    model = loaded.materialize(device="cpu")
    code = export.pytorch_code(*_built(write_spec(WINDOWED)))
    assert "causal_mask(x, 2)" in code
    namespace: dict[str, Any] = {}
    exec(compile(code, "<exported>", "exec"), namespace)
    x = torch.randn(2, 6, 8)
    with torch.no_grad():
        torch.testing.assert_close(namespace["Model"]()(x), model(x))


def _built(path: Path) -> tuple[Any, Any]:
    outcome = engine.run(engine.Request(path, options=BuildOptions(device="cpu")))
    assert outcome.built is not None and outcome.result is not None
    return outcome.built, outcome.result


@pytest.mark.parametrize("window", ["0", "-1", "true", "2.5", "'a'"])
def test_causal_mask_refuses_a_bad_window(window: str, write_spec: Callable[..., Path]) -> None:
    with pytest.raises(SpecError) as info:
        lazyspec.load(write_spec(WINDOWED.replace("window=2", f"window={window}"))).infer()
    assert [d.code for d in info.value.diagnostics] == ["LS128"]
    assert "window must be a positive integer" in info.value.diagnostics[0].message


# --- packaging ----------------------------------------------------------------------------------


def test_the_templates_ship_in_the_wheel(tmp_path: Path) -> None:
    """Built from a copy (the build leaves build/ and *.egg-info behind), with the setuptools
    already installed: no network."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "lazyspec", tmp_path / "lazyspec",
                    ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "--no-index", "-q", "-w", "dist", "."],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "dist").glob("lazyspec-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {f"lazyspec/importers/templates/{f.template}.yaml"
                 for f in hf.FAMILIES.values()}
    assert templates <= names and "lazyspec/importers/hf.py" in names



# --- against transformers itself, where it is installed (not a test dependency) -------------------

# Small configs that exercise each family's options; model_type -> the class to build.
AGAINST: dict[str, tuple[dict[str, Any], str]] = {
    "llama": ({"model_type": "llama", "vocab_size": 100, "hidden_size": 64,
               "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 4,
               "num_key_value_heads": 2, "rope_theta": 500.0, "attention_bias": True,
               "mlp_bias": True, "hidden_act": "gelu"}, "LlamaForCausalLM"),
    "mistral": ({"model_type": "mistral", "vocab_size": 100, "hidden_size": 64,
                 "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "num_key_value_heads": 2, "sliding_window": 3}, "MistralForCausalLM"),
    "qwen2": ({"model_type": "qwen2", "vocab_size": 100, "hidden_size": 64,
               "intermediate_size": 40, "num_hidden_layers": 3, "num_attention_heads": 4,
               "num_key_value_heads": 2, "use_sliding_window": True, "sliding_window": 3,
               "max_window_layers": 1, "tie_word_embeddings": True}, "Qwen2ForCausalLM"),
    "gpt2": ({"model_type": "gpt2", "vocab_size": 100, "n_positions": 32, "n_embd": 64,
              "n_layer": 2, "n_head": 4, "n_inner": 24, "activation_function": "relu"},
             "GPT2LMHeadModel"),
    "bert": ({"model_type": "bert", "vocab_size": 100, "hidden_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 40,
              "max_position_embeddings": 32, "type_vocab_size": 3}, "BertModel"),
    "t5": ({"model_type": "t5", "vocab_size": 100, "d_model": 32, "d_kv": 8, "d_ff": 40,
            "num_layers": 2, "num_decoder_layers": 3, "num_heads": 4,
            "relative_attention_num_buckets": 8, "relative_attention_max_distance": 16},
           "T5ForConditionalGeneration"),
    "vit": ({"model_type": "vit", "hidden_size": 32, "num_hidden_layers": 2,
             "num_attention_heads": 4, "intermediate_size": 40, "image_size": 32,
             "patch_size": 8, "num_labels": 7}, "ViTForImageClassification"),
}
# transformers 5 names ViT's modules its own way and renames the checkpoints' keys on loading.
VIT_V5 = [(r"vit\.layers\.", "vit.encoder.layer."),
          (r"attention\.q_proj", "attention.attention.query"),
          (r"attention\.k_proj", "attention.attention.key"),
          (r"attention\.v_proj", "attention.attention.value"),
          (r"attention\.o_proj", "attention.output.dense"), (r"mlp\.fc1", "intermediate.dense"),
          (r"mlp\.fc2", "output.dense")]
CONV1D = ("c_attn.weight", "c_proj.weight", "c_fc.weight")  # GPT-2 stores them [in, out]


def checkpoint_keys(model_type: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers state dict as the spec names and lays it out."""
    import re

    out = {}
    for key, value in state.items():
        for pattern, name in VIT_V5 if model_type == "vit" else []:
            key = re.sub(pattern, name, key)
        out[key] = value.t() if model_type == "gpt2" and key.endswith(CONV1D) else value
    return out


@pytest.mark.parametrize("model_type", list(AGAINST))
def test_against_transformers(model_type: str, tmp_path: Path) -> None:
    """Same keys and shapes, same outputs after load_state_dict, as the transformers class."""
    if os.environ.get("CI"):  # .ci/run installs it (the dev extras): never skipped there
        import transformers
    else:
        transformers = pytest.importorskip("transformers")
    config, cls = AGAINST[model_type]
    hf_config = transformers.AutoConfig.for_model(**config)
    hf_config._attn_implementation = "eager"
    reference = randomised(getattr(transformers, cls)(hf_config))
    inputs = {"input_ids": torch.randint(0, 100, (2, 9))}
    if model_type == "bert":
        inputs["token_type_ids"] = torch.randint(0, 3, (2, 9))
    elif model_type == "t5":
        inputs["decoder_input_ids"] = torch.randint(0, 100, (2, 5))
    elif model_type == "vit":
        inputs = {"pixel_values": torch.randn(2, 3, 32, 32)}
    model = spec_model(tmp_path, config, *inputs.values())
    state = checkpoint_keys(model_type, reference.state_dict())
    assert shapes(model.state_dict()) == shapes(state)
    model.load_state_dict(state)
    with torch.no_grad():
        got, out = model(*inputs.values()), reference(**inputs)
    want = (out.last_hidden_state, out.pooler_output) if model_type == "bert" else out.logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
