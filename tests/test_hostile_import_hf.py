"""The bad-input catalogue, continued: configs that `lazyspec import hf` cannot write as a faithful
spec, cannot read, or refuses (issue 12). Each is a clear message, at the field's line in
config.json where there is one, and exit 2: never a traceback, a hang, or a spec of a silently
different model.

Each case is a `Bad` from tests/test_bad_inputs.py, run by the same runner (in-process, in a fresh
folder with only the case's files); `prepare` makes what a dict of file texts cannot: folders,
FIFOs, device nodes, sparse files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hf_configs import BERT_BASE, GPT2, LLAMA2_7B, MISTRAL_7B, QWEN25_05B, T5_SMALL, VIT_B_16
from test_bad_inputs import Bad, run_case
from test_hostile_files import Hostile, device, fifo

from lazyspec.importers.hf import MAX_CONFIG_BYTES

TINY = {"model_type": "llama", "vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 40}


def hf(config: str | bytes | dict[str, Any] | None, *args: str) -> dict[str, object]:
    """`lazyspec import hf c ARGS` with c/config.json holding `config` (a dict as JSON, one key
    a line: a field's line is predictable)."""
    files: dict[str, str | bytes] = {}
    if isinstance(config, dict):
        files["c/config.json"] = "{\n" + ",\n".join(
            f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in config.items()) + "\n}\n"
    elif config is not None:
        files["c/config.json"] = config
    return {"args": ["import", "hf", "c", *args], "files": files}


def at(config: dict[str, Any], key: str) -> str:
    """`c/config.json:LINE:3` of a top-level key as `hf` writes the file."""
    return f"c/config.json:{list(config).index(key) + 2}:3"


def sparse(name: str, size: int, head: bytes = b"{") -> Callable[[Path], object]:
    def make(folder: Path) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(head)
            f.truncate(size)
    return make


def folder(name: str) -> Callable[[Path], object]:
    return lambda root: (root / name).mkdir(parents=True)


def refused(id: str, config: dict[str, Any], key: str, text: str, *args: str) -> Bad:
    """A config refused at `key`'s line, with `text` in the message."""
    return Bad(f"hf_{id}", **hf(config, *args), code="LS310",
               text=f"{at(config, key)}: error[LS310]: {text}")


MOE = {**MISTRAL_7B, "num_local_experts": 8, "num_experts_per_tok": 2}
ROPE_LINEAR = {**LLAMA2_7B, "rope_scaling": {"type": "linear", "factor": 2.0}}
LLAMA3_ROPE = {**LLAMA2_7B, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}
YARN = {**QWEN25_05B, "rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6}}

CASES: list[Bad] = [
    # --- what the config says is not a model lazyspec can write -------------------------------
    refused("unknown_model_type", {**TINY, "model_type": "mixtral"}, "model_type",
            "model_type \"mixtral\" is not one lazyspec imports"),
    refused("model_type_not_a_string", {**TINY, "model_type": 42}, "model_type",
            "model_type 42 is not one lazyspec imports"),
    Bad("hf_no_model_type", **hf({"hidden_size": 8}), code="LS310",
        text="error[LS310]: the config has no model_type"),
    refused("moe", MOE, "num_local_experts", "'num_local_experts' is 8 (a mixture of experts "
            "(MoE)): lazyspec does not know this field for model_type 'mistral'"),
    refused("rope_scaling_linear", ROPE_LINEAR, "rope_scaling", "'rope_scaling' is {\"type\": "
            "\"linear\", \"factor\": 2.0}: lazyspec implements plain rotary embeddings only"),
    refused("rope_scaling_llama3", LLAMA3_ROPE, "rope_scaling", "'rope_scaling' is {\"rope_type\": "
            "\"llama3\", \"factor\": 8.0}"),
    refused("rope_parameters_yarn", YARN, "rope_parameters", "'rope_parameters' is "
            "{\"rope_type\": \"yarn\", \"rope_theta\": 1000000.0}"),
    refused("rope_parameters_other_theta",
            {**LLAMA2_7B, "rope_theta": 10000.0, "rope_parameters": {"rope_theta": 5e5}},
            "rope_parameters",
            "'rope_parameters' gives rope_theta 500000.0 but the config's rope_theta is 10000.0"),
    refused("quantized", {**LLAMA2_7B, "quantization_config": {"quant_method": "gptq"}},
            "quantization_config", "'quantization_config' is {\"quant_method\": \"gptq\"} "
            "(quantized weights): lazyspec does not know this field"),
    refused("sliding_window_on_llama", {**LLAMA2_7B, "sliding_window": 4096}, "sliding_window",
            "'sliding_window' is 4096: lazyspec does not know this field for model_type 'llama'"),
    refused("use_sliding_window_on_mistral", {**MISTRAL_7B, "use_sliding_window": True},
            "use_sliding_window", "'use_sliding_window' is true: lazyspec does not know this "
            "field for model_type 'mistral'"),
    refused("qwen2_layer_types_interleaved",
            {**TINY, "model_type": "qwen2", "num_hidden_layers": 3, "use_sliding_window": True,
             "sliding_window": 8, "layer_types": ["sliding_attention", "full_attention",
                                                  "sliding_attention"]},
            "layer_types", "'layer_types' mixes full and sliding layers in an order lazyspec "
            "does not implement"),
    refused("qwen2_layer_types_too_few",
            {**TINY, "model_type": "qwen2", "use_sliding_window": True, "sliding_window": 8,
             "layer_types": []}, "layer_types", "'layer_types' must list 1 of"),
    refused("qwen2_use_mrope", {**QWEN25_05B, "use_mrope": True}, "use_mrope",
            "'use_mrope' is true: lazyspec implements only false"),
    refused("cross_attention", {**GPT2, "add_cross_attention": True}, "add_cross_attention",
            "'add_cross_attention' is true (cross-attention layers): lazyspec implements "
            "only false"),
    refused("scale_by_layer", {**GPT2, "scale_attn_by_inverse_layer_idx": True},
            "scale_attn_by_inverse_layer_idx",
            "'scale_attn_by_inverse_layer_idx' is true: lazyspec implements only false"),
    refused("pruned_heads", {**BERT_BASE, "pruned_heads": {"0": [1]}}, "pruned_heads",
            "'pruned_heads' is {\"0\": [1]} (pruned attention heads): lazyspec "
            "implements only {}"),
    refused("bert_relative_positions", {**BERT_BASE, "position_embedding_type": "relative_key"},
            "position_embedding_type", "'position_embedding_type' is \"relative_key\", a position "
            "embedding lazyspec does not implement"),
    refused("bert_decoder", {**BERT_BASE, "is_decoder": True}, "is_decoder",
            "'is_decoder' is true: lazyspec implements only false"),
    refused("t5_not_encoder_decoder", {**T5_SMALL, "is_encoder_decoder": False},
            "is_encoder_decoder", "'is_encoder_decoder' is false: lazyspec implements only true"),
    refused("t5_feed_forward_three_parts", {**T5_SMALL, "feed_forward_proj": "gated-gelu-x"},
            "feed_forward_proj", "'feed_forward_proj' must be ACT or gated-ACT"),
    refused("t5_feed_forward_unknown_act", {**T5_SMALL, "feed_forward_proj": "gated-mish"},
            "feed_forward_proj",
            "'feed_forward_proj' is \"gated-mish\": activation \"mish\" is not implemented"),
    refused("t5_gated_disagrees", {**T5_SMALL, "is_gated_act": True}, "is_gated_act",
            "'is_gated_act' is true but feed_forward_proj \"relu\" means false"),
    refused("hidden_act_unknown", {**TINY, "hidden_act": "gelu_fast"}, "hidden_act",
            "'hidden_act' is \"gelu_fast\", an activation lazyspec does not implement"),
    refused("unknown_field", {**TINY, "shared_layers": 4}, "shared_layers",
            "'shared_layers' is 4: lazyspec does not know this field for model_type 'llama'"),
    # --- sizes that do not fit together, or are not sizes ---------------------------------------
    refused("heads_do_not_divide", {**TINY, "num_attention_heads": 5, "num_key_value_heads": 5},
            "num_attention_heads", "'hidden_size' (32) is not a multiple of "
            "'num_attention_heads' (5)"),
    refused("kv_heads_do_not_divide", {**TINY, "num_key_value_heads": 3}, "num_key_value_heads",
            "'num_attention_heads' (4) is not a multiple of 'num_key_value_heads' (3)"),
    refused("odd_head_dim", {**TINY, "head_dim": 7}, "head_dim",
            "the head size 7 is odd: rotary embeddings need an even one"),
    refused("size_zero", {**TINY, "hidden_size": 0}, "hidden_size",
            "'hidden_size' must be a whole number from 1 to 2,147,483,647, got 0"),
    refused("size_bool", {**TINY, "intermediate_size": True}, "intermediate_size",
            "'intermediate_size' must be a whole number from 1 to 2,147,483,647, got true"),
    refused("size_float", {**TINY, "vocab_size": 64.0}, "vocab_size",
            "'vocab_size' must be a whole number from 1 to 2,147,483,647, got 64.0"),
    refused("size_string", {**TINY, "num_hidden_layers": "1"}, "num_hidden_layers",
            "'num_hidden_layers' must be a whole number from 1 to 2,147,483,647, got \"1\""),
    refused("size_huge", {**TINY, "vocab_size": 2**40}, "vocab_size",
            "'vocab_size' must be a whole number from 1 to 2,147,483,647, got 1099511627776"),
    refused("eps_negative", {**TINY, "rms_norm_eps": -1e-5}, "rms_norm_eps",
            "'rms_norm_eps' must be a positive number, got -1e-05"),
    refused("flag_not_bool", {**TINY, "tie_word_embeddings": "yes"}, "tie_word_embeddings",
            "'tie_word_embeddings' must be true or false, got \"yes\""),
    refused("vit_labels_disagree", {**VIT_B_16, "num_labels": 10}, "num_labels",
            "'num_labels' is 10 but id2label has 1000 labels"),
    refused("vit_patch_too_large", {**VIT_B_16, "patch_size": 512}, "patch_size",
            "'patch_size' (512) is larger than 'image_size' (224)"),
    Bad("hf_too_many_layers", **hf({**TINY, "num_hidden_layers": 100_000}), code="LS310",
        text="does not pass lazyspec's own check (above); nothing was written"),
    # --- the file -------------------------------------------------------------------------------
    Bad("hf_not_json", **hf('{\n  "model_type": "llama",\n  oops\n}\n'), code="LS310",
        text="c/config.json:3:3: error[LS310]: cannot import c/config.json: not valid JSON: "
        "Expecting property name enclosed in double quotes"),
    Bad("hf_empty_file", **hf(""), code="LS310", text="not valid JSON: Expecting value"),
    Bad("hf_json_list", **hf("[1, 2]"), code="LS310",
        text="c/config.json:1:1: error[LS310]: cannot import c/config.json: it holds a JSON "
        "list, not an object"),
    Bad("hf_trailing_data", **hf('{"model_type": "llama"} {}'), code="LS310",
        text="not valid JSON: Extra data"),
    Bad("hf_duplicate_key", **hf('{\n  "model_type": "gpt2",\n  "n_layer": 12,\n  "n_layer": 2\n}'),
        code="LS310", text="c/config.json:4:3: error[LS310]: cannot import c/config.json: the "
        "key \"n_layer\" appears twice"),
    Bad("hf_duplicate_nested_key", **hf('{"model_type": "gpt2", "x": {"a": 1, "a": 2}}'),
        code="LS310", text="the key \"a\" appears twice"),
    Bad("hf_not_utf8", **hf(b'{\n  "model_type": "\xff"\n}'), code="LS310",
        text="c/config.json:2:1: error[LS310]: cannot import c/config.json: it is not UTF-8"),
    Bad("hf_deep_nesting", **hf("[" * 200_000 + "]" * 200_000), code="LS310",
        text="not valid JSON: RecursionError"),
    Bad("hf_long_number", **hf('{"model_type": "llama", "vocab_size": ' + "9" * 5000 + "}"),
        code="LS310", text="not valid JSON: ValueError: Exceeds the limit"),
    Hostile("hf_huge_file", **hf(None), code="LS100",
            text=f"cannot read the config c/config.json: it is larger than "
            f"{MAX_CONFIG_BYTES:,} bytes (limit)",
            prepare=sparse("c/config.json", MAX_CONFIG_BYTES + 1)),
    Bad("hf_missing", args=["import", "hf", "nope.json"], code="LS100",
        text="cannot read the config nope.json: no such file"),
    Hostile("hf_folder_without_config", **hf(None), code="LS100",
            text="cannot read the config: the folder c holds no config.json",
            prepare=folder("c")),
    Hostile("hf_config_is_a_folder", **hf(None), code="LS100",
            text="cannot read the config c/config.json: is a folder",
            prepare=folder("c/config.json")),
    Hostile("hf_fifo", **hf(None), code="LS100", text="c/config.json: not a regular file",
            prepare=lambda root: ((root / "c").mkdir(), fifo("c/config.json")(root))),
    Hostile("hf_device", **hf(None), code="LS100", text="c/config.json: not a regular file",
            prepare=lambda root: ((root / "c").mkdir(), device("c/config.json", 3)(root))),
    # --- flags ----------------------------------------------------------------------------------
    Bad("hf_name_empty", **hf(TINY, "--name", ""), text="--name must be 1 to 200 characters"),
    Bad("hf_name_too_long", **hf(TINY, "--name", "x" * 201),
        text="--name must be 1 to 200 characters"),
    Hostile("hf_output_is_a_folder", **hf(TINY, "--output", "out"), code="LS100",
            text="cannot write the spec out: it is a folder", prepare=folder("out")),
    Bad("hf_no_config_argument", args=["import", "hf"], code=None,
        text="Missing argument 'config'"),
    Bad("hf_unknown_importer", args=["import", "onnx", "m.onnx"], code=None,
        text="No such command 'onnx'"),
]


def test_the_catalogue_is_large_and_named() -> None:
    assert len(CASES) >= 50
    assert len({c.id for c in CASES}) == len(CASES), "two cases share an id"
    assert all(c.id.startswith("hf_") for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_config(case: Bad, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> None:
    prepare = case.prepare if isinstance(case, Hostile) else None
    run_case(case, tmp_path, monkeypatch, capsys, prepare)
    if case.exit == 2 and case.code is not None:
        assert not (tmp_path / "out").is_file()  # nothing written


def test_a_refused_config_shows_its_line(cli: Callable[..., Any], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The diagnostic quotes the field's line of config.json, with a caret."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "config.json").write_text(str(hf(MOE)["files"]["c/config.json"]))  # type: ignore[index]
    r = cli("import", "hf", "c")
    line = list(MOE).index("num_local_experts") + 2
    assert f' {line} |   "num_local_experts": 8,' in r.stderr and "  ^" in r.stderr


def test_every_refusal_is_found_at_once(cli: Callable[..., Any], tmp_path: Path) -> None:
    """Fields a family does not implement are all listed, not one per run."""
    (tmp_path / "config.json").write_text(json.dumps({**MOE, "quantization_config": {}}))
    r = cli("import", "hf", tmp_path / "config.json")
    assert r.code == 2 and r.stderr.count("error[LS310]") == 3  # two MoE fields, quantization
    assert "3 errors" in r.stderr


def test_a_bom_and_crlf_are_read(cli: Callable[..., Any], tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(TINY, indent=1)
                                           .replace("\n", "\r\n").encode())
    assert cli("import", "hf", tmp_path / "config.json").code == 0
