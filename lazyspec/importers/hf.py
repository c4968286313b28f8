"""`lazyspec import hf CONFIG`: a spec from a Hugging Face `config.json`, with Hugging Face's
parameter names.

The config's `model_type` picks a family (FAMILIES). Each family has a template, a complete spec
shipped with the package (`importers/templates/<name>.yaml`, the family's reference model at
its params), whose `params:` (and `tie:`) the importer replaces with values from the config.
The text is checked by the engine (`check`) before anything is written.

A spec must never be a silently different model, so every field of the config is accounted for.
Per family, a field is one of:

- implemented: read into the params (`Family.implemented`; reading any other field is a bug);
- inert: changes nothing the spec describes (token ids, dtype, dropout, generation settings,
  `COMMON_INERT` and `Family.inert`);
- supported at one value only (`COMMON_DEFAULTS`, `Family.defaults`): MoE, cross-attention,
  pruned heads are refused unless the config leaves them at their default.

Any other field, and an implemented field at a value lazyspec does not implement (a
`rope_scaling`, an unknown activation), is LS310 (exit 2) at the field's line in config.json.
Torch-free: the engine loads torch only for the check.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lazyspec.errors import Diagnostic, Location, UsageError
from lazyspec.fileio import FileTooLarge, read_capped, resolved
from lazyspec.textsafe import visible

if TYPE_CHECKING:
    from lazyspec.engine import Outcome

MAX_CONFIG_BYTES = 4_000_000  # a config.json is a few KB; ViT's 21,843 labels are 0.6 MB
MAX_SIZE = 2**31 - 1  # the largest size or count a config may give
MAX_NAME_CHARS = 200
ACTIVATIONS = ("silu", "swish", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu")

# Fields of any config that change nothing a spec describes.
COMMON_INERT = frozenset({
    "_name_or_path", "_commit_hash", "_attn_implementation", "attn_implementation",
    "architectures", "transformers_version", "torch_dtype", "dtype", "use_bfloat16", "use_cache",
    "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id",
    "initializer_range", "initializer_factor", "output_hidden_states", "output_attentions",
    "output_past", "return_dict", "torchscript", "tf_legacy_loss", "gradient_checkpointing",
    "chunk_size_feed_forward", "id2label", "label2id", "num_labels", "_num_labels",
    "problem_type",
    "finetuning_task", "task_specific_params", "tokenizer_class", "prefix",
    # generation settings
    "max_length", "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups",
    "diversity_penalty", "temperature", "top_k", "top_p", "typical_p", "repetition_penalty",
    "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids",
    "num_return_sequences", "output_scores", "return_dict_in_generate", "forced_bos_token_id",
    "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty",
    "suppress_tokens", "begin_suppress_tokens",
})
# Fields lazyspec supports at this value only.
COMMON_DEFAULTS: Mapping[str, Any] = {
    "pruned_heads": {}, "is_decoder": False, "is_encoder_decoder": False,
    "add_cross_attention": False, "cross_attention_hidden_size": None,
    "tie_encoder_decoder": False,
}
# What some refused fields mean, for the message.
MEANING = {
    "num_local_experts": "a mixture of experts (MoE)",
    "num_experts": "a mixture of experts (MoE)",
    "rope_scaling": "scaled rotary embeddings",
    "quantization_config": "quantized weights",
    "add_cross_attention": "cross-attention layers",
    "pruned_heads": "pruned attention heads",
}


class Refused(UsageError):
    """The config cannot be written as a faithful spec (LS310, exit 2)."""


@dataclass
class Config:
    """A parsed config.json: its values, where each top-level field is, what the family read."""

    path: Path
    values: dict[str, Any]
    locations: dict[str, Location]
    allowed: frozenset[str] = frozenset()  # the family's implemented fields
    read: set[str] = field(default_factory=set)

    @property
    def model_type(self) -> str:
        return str(self.values.get("model_type"))

    def where(self, key: str) -> Location:
        return self.locations.get(key, Location(str(self.path), 1, 1))

    def refuse(self, key: str, message: str, hint: str | None = None) -> Refused:
        return Refused([Diagnostic("LS310", message, self.where(key), hint=hint)])

    def value(self, key: str, default: Any) -> Any:
        """A field's value (`default` when absent, as Hugging Face's config class has it)."""
        assert key in self.allowed, f"{key} is not declared in the family's implemented fields"
        self.read.add(key)
        return self.values.get(key, default)

    def size(self, key: str, default: Any, minimum: int = 1) -> int:
        value = self.value(key, default)
        if not _is_int(value) or not minimum <= value <= MAX_SIZE:
            raise self.refuse(key, f"'{key}' must be a whole number from {minimum} to "
                              f"{MAX_SIZE:,}, got {_shown(value)}")
        return int(value)

    def optional_size(self, key: str, default: Any) -> int | None:
        return None if self.value(key, default) is None else self.size(key, default)

    def number(self, key: str, default: float) -> float:
        value = self.value(key, default)
        if not _is_number(value) or not 0 < value < math.inf:
            raise self.refuse(key, f"'{key}' must be a positive number, got {_shown(value)}")
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.value(key, default)
        if not isinstance(value, bool):
            raise self.refuse(key, f"'{key}' must be true or false, got {_shown(value)}")
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...],
               what: str = "an activation") -> str:
        value = self.value(key, default)
        if value not in choices:
            raise self.refuse(key, f"'{key}' is {_shown(value)}, {what} lazyspec does not "
                              "implement", "lazyspec implements " + ", ".join(choices))
        return str(value)

    def heads(self, d_key: str, d: int, heads_key: str, heads: int) -> int:
        """d // heads, refused where it does not divide."""
        if d % heads:
            raise self.refuse(heads_key, f"'{d_key}' ({d}) is not a multiple of '{heads_key}' "
                              f"({heads})")
        return d // heads


def _shown(value: Any, limit: int = 120) -> str:
    """A config value as the message shows it: JSON, as the file has it, cut short."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --- reading config.json ------------------------------------------------------------------------


def config_file(path: Path) -> Path:
    """The config.json a CONFIG argument names: the file, or the one in the folder."""
    if path.is_dir():
        inside = path / "config.json"
        if not inside.exists():
            raise UsageError([Diagnostic("LS100", f"cannot read the config: the folder {path} "
                                         "holds no config.json",
                                         hint="give the config.json file, or the folder of a "
                                         "downloaded Hugging Face model")])
        return inside
    return path


def read_config(path: Path) -> Config:
    """Read and parse a config.json (bounded, a regular file, one JSON object, no duplicate
    keys), keeping where each top-level field is."""
    file = config_file(path)
    try:
        data = read_capped(file, MAX_CONFIG_BYTES)
    except FileTooLarge:
        raise UsageError([Diagnostic(
            "LS100", f"cannot read the config {file}: it is larger than {MAX_CONFIG_BYTES:,} "
            "bytes (limit)", hint="a Hugging Face config.json is a few kilobytes")]) from None
    except OSError as e:
        raise UsageError([Diagnostic("LS100", f"cannot read the config {file}: "
                                     f"{e.strerror or e}")]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise _not_json(file, Location(str(file), line, 1), "it is not UTF-8 text") from None
    values, locations = parse_json(text, file)
    return Config(file, values, locations)


def _not_json(file: Path, where: Location | None, why: str) -> Refused:
    return Refused([Diagnostic("LS310", f"cannot import {file}: {why}", where,
                               hint="give a Hugging Face config.json (a JSON object with a "
                               "model_type)")])


class _Duplicate(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def parse_json(text: str, file: Path) -> tuple[dict[str, Any], dict[str, Location]]:
    """One JSON object and the location of each top-level key; anything else is LS310."""
    starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def at(offset: int) -> Location:
        line = _line_of(starts, offset)
        return Location(str(file), line + 1, offset - starts[line] + 1)

    try:
        value = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise _not_json(file, Location(str(file), e.lineno, e.colno),
                        f"not valid JSON: {e.msg}") from None
    except _Duplicate as e:
        offsets = _key_offsets(text, duplicates=True)
        where = at(offsets[e.key]) if e.key in offsets else None
        raise _not_json(file, where, f"the key {_shown(e.key)} appears twice (JSON readers "
                        "keep one of them silently)") from None
    except (ValueError, RecursionError) as e:  # a 5,000-digit number, nesting past the stack
        raise _not_json(file, None, f"not valid JSON: {type(e).__name__}: {e}") from None
    if not isinstance(value, dict):
        raise _not_json(file, at(_skip_ws(text, 0)), f"it holds a JSON "
                        f"{type(value).__name__}, not an object")
    return value, {key: at(offset) for key, offset in _key_offsets(text).items()}


def _line_of(starts: list[int], offset: int) -> int:
    import bisect

    return bisect.bisect_right(starts, offset) - 1


_WS = re.compile(r"[ \t\n\r]*")


def _skip_ws(text: str, i: int) -> int:
    match = _WS.match(text, i)
    assert match is not None
    return match.end()


def _key_offsets(text: str, duplicates: bool = False) -> dict[str, int]:
    """Where each key of the top-level object starts (text is one valid JSON object, or, with
    `duplicates`, one with a repeated key: then the repeat's offset)."""
    decoder = json.JSONDecoder()
    i = _skip_ws(text, 0) + 1  # past '{'
    out: dict[str, int] = {}
    while True:
        i = _skip_ws(text, i)
        if text[i] == "}":
            return out
        key, end = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
        if key not in out or duplicates:
            out[key] = i
        i = _skip_ws(text, _skip_ws(text, end) + 1)  # past ':'
        try:
            _, i = decoder.raw_decode(text, i)
        except ValueError:  # a repeated key inside the value: stop here
            return out
        i = _skip_ws(text, i)
        if text[i] == ",":
            i += 1


# --- families -------------------------------------------------------------------------------------


@dataclass
class Filled:
    """What a family's builder makes of a config: the params (value, where it came from) and
    the ties."""

    params: dict[str, tuple[Any, str]]
    ties: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Family:
    """How one model_type becomes a spec."""

    model_type: str
    template: str  # importers/templates/<template>.yaml
    cls: str  # the Hugging Face class whose state-dict keys the spec has
    build: Callable[[Config], Filled]
    implemented: frozenset[str]
    inert: frozenset[str] = frozenset()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    weights: str = ""  # what `lazyspec weights` needs for a checkpoint of this class
    # a learned position table: the param that sizes it, and the inputs whose length it bounds
    positions: tuple[str, tuple[str, ...]] | None = None


def _rope_theta(cfg: Config) -> float:
    """rope_theta, from the config (transformers 4: `rope_theta`, `rope_scaling`; 5:
    `rope_parameters`): plain rotary embeddings only."""
    theta = cfg.number("rope_theta", 10000.0)
    for key in ("rope_scaling", "rope_parameters"):
        rope = cfg.value(key, None)
        if rope is None:
            continue
        kind = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) \
            else None
        if kind != "default" or not set(rope) <= {"rope_type", "type", "rope_theta"}:
            raise cfg.refuse(key, f"'{key}' is {_shown(rope)}: lazyspec implements plain rotary "
                             "embeddings only (rope_type 'default'), not scaled ones",
                             "a spec without the scaling would be a different model")
        if "rope_theta" in rope:
            if "rope_theta" in cfg.values and rope["rope_theta"] != theta:
                raise cfg.refuse(key, f"'{key}' gives rope_theta {_shown(rope['rope_theta'])} "
                                 f"but the config's rope_theta is {_shown(theta)}")
            value = rope["rope_theta"]
            if not _is_number(value) or not 0 < value < math.inf:
                raise cfg.refuse(key, f"'{key}': rope_theta must be a positive number, got "
                                 f"{_shown(value)}")
            theta = float(value)
    return theta


def _windows(cfg: Config, n_layers: int) -> tuple[int | None, int]:
    """(sliding_window, the first layer that uses it) for each family of the LLaMA layout."""
    if cfg.model_type == "llama":
        return None, 0
    if cfg.model_type == "mistral":
        return cfg.optional_size("sliding_window", 4096), 0
    use = cfg.flag("use_sliding_window", False)
    window = cfg.optional_size("sliding_window", 4096)
    first = cfg.size("max_window_layers", 28, minimum=0)
    window = window if use else None  # as Qwen2Config does
    types = cfg.value("layer_types", None)
    if types is None or window is None:
        return window, first
    kinds = ("full_attention", "sliding_attention")
    if not (isinstance(types, list) and len(types) == n_layers and all(t in kinds for t in types)):
        raise cfg.refuse("layer_types", f"'layer_types' must list {n_layers} of "
                         f"{', '.join(kinds)}, got {_shown(types)}")
    full = types.index("sliding_attention") if "sliding_attention" in types else n_layers
    if any(t != "sliding_attention" for t in types[full:]):
        raise cfg.refuse("layer_types", "'layer_types' mixes full and sliding layers in an "
                         "order lazyspec does not implement (full layers, then sliding ones)")
    return window, full


def _llama(cfg: Config) -> Filled:
    """LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM."""
    kind = cfg.model_type
    # vocab_size, hidden_size, intermediate_size, num_key_value_heads (None: one per head)
    defaults = {"llama": (32000, 4096, 11008, None), "mistral": (32000, 4096, 14336, 8),
                "qwen2": (151936, 4096, 22016, 32)}[kind]
    d = cfg.size("hidden_size", defaults[1])
    heads = cfg.size("num_attention_heads", 32)
    kv = cfg.optional_size("num_key_value_heads", defaults[3]) or heads
    if heads % kv:
        where = "num_key_value_heads" if "num_key_value_heads" in cfg.values \
            else "num_attention_heads"
        raise cfg.refuse(where, f"'num_attention_heads' ({heads}) is not a "
                         f"multiple of 'num_key_value_heads' ({kv})")
    head_dim = cfg.optional_size("head_dim", None)
    head_note = "head_dim"
    if head_dim is None:
        head_dim = cfg.heads("hidden_size", d, "num_attention_heads", heads)
        head_note = "hidden_size // num_attention_heads"
    if head_dim % 2:
        raise cfg.refuse("head_dim" if head_note == "head_dim" else "num_attention_heads",
                         f"the head size {head_dim} is odd: rotary embeddings need an even one")
    n_layers = cfg.size("num_hidden_layers", 32)
    bias = cfg.flag("attention_bias", False) if kind == "llama" else False
    window, first = _windows(cfg, n_layers)
    params = {
        "vocab_size": (cfg.size("vocab_size", defaults[0]), "vocab_size"),
        "hidden_size": (d, "hidden_size"),
        "num_hidden_layers": (n_layers, "num_hidden_layers"),
        "num_attention_heads": (heads, "num_attention_heads"),
        "num_key_value_heads": (kv, "num_key_value_heads"),
        "head_dim": (head_dim, head_note),
        "intermediate_size": (cfg.size("intermediate_size", defaults[2]), "intermediate_size"),
        "hidden_act": (cfg.choice("hidden_act", "silu", ACTIVATIONS), "hidden_act"),
        "rms_norm_eps": (cfg.number("rms_norm_eps", 1e-6), "rms_norm_eps"),
        "rope_theta": (_rope_theta(cfg), "rope_theta"),
        "qkv_bias": (bias or kind == "qwen2",
                     "attention_bias" if kind == "llama" else f"{kind}: always"),
        "o_bias": (bias, "attention_bias" if kind == "llama" else f"{kind}: never"),
        "mlp_bias": (cfg.flag("mlp_bias", False) if kind == "llama" else False,
                     "mlp_bias" if kind == "llama" else f"{kind}: never"),
        "sliding_window": (window, "sliding_window" if kind == "mistral" else
                           "sliding_window if use_sliding_window" if kind == "qwen2" else
                           "llama: none"),
        "first_sliding_layer": (first, "max_window_layers (or layer_types)" if kind == "qwen2"
                                else "mistral: every layer" if kind == "mistral"
                                else "llama: no sliding window"),
    }
    ties = ([("lm_head.weight", "model.embed_tokens.weight")]
            if cfg.flag("tie_word_embeddings", False) else [])
    return Filled(params, ties)


def _gpt2(cfg: Config) -> Filled:
    """GPT2LMHeadModel."""
    d = cfg.size("n_embd", 768)
    heads = cfg.size("n_head", 12)
    cfg.heads("n_embd", d, "n_head", heads)
    inner = cfg.optional_size("n_inner", None)
    params = {
        "vocab_size": (cfg.size("vocab_size", 50257), "vocab_size"),
        "n_positions": (cfg.size("n_positions", 1024), "n_positions"),
        "n_embd": (d, "n_embd"),
        "n_layer": (cfg.size("n_layer", 12), "n_layer"),
        "n_head": (heads, "n_head"),
        "n_inner": (inner or 4 * d, "n_inner" if inner else "4 * n_embd (n_inner is null)"),
        "activation_function": (cfg.choice("activation_function", "gelu_new", ACTIVATIONS),
                                "activation_function"),
        "layer_norm_epsilon": (cfg.number("layer_norm_epsilon", 1e-5), "layer_norm_epsilon"),
        "scale_attn_weights": (cfg.flag("scale_attn_weights", True), "scale_attn_weights"),
    }
    ties = ([("lm_head.weight", "transformer.wte.weight")]
            if cfg.flag("tie_word_embeddings", True) else [])
    return Filled(params, ties)


def _bert(cfg: Config) -> Filled:
    """BertModel, with its pooler."""
    d = cfg.size("hidden_size", 768)
    heads = cfg.size("num_attention_heads", 12)
    cfg.heads("hidden_size", d, "num_attention_heads", heads)
    cfg.choice("position_embedding_type", "absolute", ("absolute",), "a position embedding")
    return Filled({
        "vocab_size": (cfg.size("vocab_size", 30522), "vocab_size"),
        "hidden_size": (d, "hidden_size"),
        "num_hidden_layers": (cfg.size("num_hidden_layers", 12), "num_hidden_layers"),
        "num_attention_heads": (heads, "num_attention_heads"),
        "intermediate_size": (cfg.size("intermediate_size", 3072), "intermediate_size"),
        "hidden_act": (cfg.choice("hidden_act", "gelu", ACTIVATIONS), "hidden_act"),
        "max_position_embeddings": (cfg.size("max_position_embeddings", 512),
                                    "max_position_embeddings"),
        "type_vocab_size": (cfg.size("type_vocab_size", 2), "type_vocab_size"),
        "layer_norm_eps": (cfg.number("layer_norm_eps", 1e-12), "layer_norm_eps"),
    })


def _t5_feed_forward(cfg: Config) -> tuple[bool, str]:
    """(is_gated_act, dense_act_fn) from feed_forward_proj, as T5Config derives them."""
    proj = cfg.value("feed_forward_proj", "relu")
    parts = proj.split("-") if isinstance(proj, str) else []
    if not 1 <= len(parts) <= 2 or (len(parts) == 2 and parts[0] != "gated"):
        raise cfg.refuse("feed_forward_proj", f"'feed_forward_proj' must be ACT or gated-ACT, "
                         f"got {_shown(proj)}")
    gated, act = len(parts) == 2, "gelu_new" if proj == "gated-gelu" else parts[-1]
    if act not in ACTIVATIONS:
        raise cfg.refuse("feed_forward_proj", f"'feed_forward_proj' is {_shown(proj)}: "
                         f"activation {_shown(act)} is not implemented",
                         "lazyspec implements " + ", ".join(ACTIVATIONS))
    for key, derived in (("is_gated_act", gated), ("dense_act_fn", act)):  # transformers 5
        if cfg.value(key, derived) != derived:
            raise cfg.refuse(key, f"'{key}' is {_shown(cfg.values[key])} but feed_forward_proj "
                             f"{_shown(proj)} means {_shown(derived)}")
    return gated, act


def _t5(cfg: Config) -> Filled:
    """T5ForConditionalGeneration."""
    gated, act = _t5_feed_forward(cfg)
    layers = cfg.size("num_layers", 6)
    decoder = cfg.optional_size("num_decoder_layers", None)
    tie = cfg.flag("tie_word_embeddings", True)
    # transformers 4 scales the decoder's output when the head is tied (T5 v1.0, not v1.1);
    # transformers 5 writes that choice as scale_decoder_outputs.
    scale = cfg.flag("scale_decoder_outputs", tie)
    params = {
        "vocab_size": (cfg.size("vocab_size", 32128), "vocab_size"),
        "d_model": (cfg.size("d_model", 512), "d_model"),
        "d_kv": (cfg.size("d_kv", 64), "d_kv"),
        "d_ff": (cfg.size("d_ff", 2048), "d_ff"),
        "num_layers": (layers, "num_layers"),
        "num_decoder_layers": (decoder or layers, "num_decoder_layers" if decoder
                               else "num_layers (num_decoder_layers is null)"),
        "num_heads": (cfg.size("num_heads", 8), "num_heads"),
        "relative_attention_num_buckets": (cfg.size("relative_attention_num_buckets", 32),
                                           "relative_attention_num_buckets"),
        "relative_attention_max_distance": (cfg.size("relative_attention_max_distance", 128),
                                            "relative_attention_max_distance"),
        "layer_norm_epsilon": (cfg.number("layer_norm_epsilon", 1e-6), "layer_norm_epsilon"),
        "is_gated_act": (gated, "feed_forward_proj"),
        "dense_act_fn": (act, "feed_forward_proj"),
        "scale_decoder_outputs": (scale, "scale_decoder_outputs" if "scale_decoder_outputs"
                                  in cfg.values else "tie_word_embeddings"),
        "dropout_rate": (_dropout(cfg, "dropout_rate", 0.1), "dropout_rate (off in a dry run)"),
    }
    ties = [("encoder.embed_tokens.weight", "shared.weight"),
            ("decoder.embed_tokens.weight", "shared.weight")]
    if tie:
        ties.append(("lm_head.weight", "shared.weight"))
    return Filled(params, ties)


def _dropout(cfg: Config, key: str, default: float) -> float:
    value = cfg.value(key, default)
    if not _is_number(value) or not 0 <= value <= 1:
        raise cfg.refuse(key, f"'{key}' must be a probability from 0 to 1, got {_shown(value)}")
    return float(value)


def _num_labels(cfg: Config) -> tuple[int, str]:
    """num_labels as PretrainedConfig has it: the field, else len(id2label), else 2."""
    labels = cfg.value("id2label", None)
    if labels is not None and not isinstance(labels, dict):
        raise cfg.refuse("id2label", f"'id2label' must be an object, got {_shown(labels)}")
    if cfg.value("num_labels", None) is not None:
        n = cfg.size("num_labels", None, minimum=0)
        if labels is not None and len(labels) != n:
            raise cfg.refuse("num_labels", f"'num_labels' is {n} but id2label has "
                             f"{len(labels)} labels")
        return n, "num_labels"
    return (len(labels), "len(id2label)") if labels is not None else (2, "the default (2)")


def _vit(cfg: Config) -> Filled:
    """ViTForImageClassification."""
    d = cfg.size("hidden_size", 768)
    heads = cfg.size("num_attention_heads", 12)
    cfg.heads("hidden_size", d, "num_attention_heads", heads)
    image, patch = cfg.size("image_size", 224), cfg.size("patch_size", 16)
    if patch > image:
        raise cfg.refuse("patch_size", f"'patch_size' ({patch}) is larger than 'image_size' "
                         f"({image})")
    labels, note = _num_labels(cfg)
    return Filled({
        "hidden_size": (d, "hidden_size"),
        "num_hidden_layers": (cfg.size("num_hidden_layers", 12), "num_hidden_layers"),
        "num_attention_heads": (heads, "num_attention_heads"),
        "intermediate_size": (cfg.size("intermediate_size", 3072), "intermediate_size"),
        "hidden_act": (cfg.choice("hidden_act", "gelu", ACTIVATIONS), "hidden_act"),
        "layer_norm_eps": (cfg.number("layer_norm_eps", 1e-12), "layer_norm_eps"),
        "image_size": (image, "image_size"),
        "patch_size": (patch, "patch_size"),
        "num_channels": (cfg.size("num_channels", 3), "num_channels"),
        "qkv_bias": (cfg.flag("qkv_bias", True), "qkv_bias"),
        "num_labels": (labels, note),
    })


_LLAMA_FIELDS = frozenset({
    "model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "intermediate_size", "hidden_act", "rms_norm_eps",
    "rope_theta", "rope_scaling", "rope_parameters", "tie_word_embeddings"})
# max_sequence_length: in early LLaMA conversions (huggyllama/llama-7b); transformers never
# reads it
_LLAMA_INERT = frozenset({"max_position_embeddings", "max_sequence_length", "attention_dropout"})
_CAUSAL_LM_WEIGHTS = ("nothing: the keys are the checkpoint's (older .bin files also hold "
                      "model.layers.N.self_attn.rotary_emb.inv_freq: --ignore "
                      "'*.rotary_emb.inv_freq')")

FAMILIES: dict[str, Family] = {f.model_type: f for f in [
    Family("llama", "llama", "LlamaForCausalLM", _llama,
           _LLAMA_FIELDS | {"attention_bias", "mlp_bias"},
           _LLAMA_INERT | {"pretraining_tp"}, weights=_CAUSAL_LM_WEIGHTS),
    Family("mistral", "llama", "MistralForCausalLM", _llama,
           _LLAMA_FIELDS | {"sliding_window"}, _LLAMA_INERT,
           weights=_CAUSAL_LM_WEIGHTS),
    Family("qwen2", "llama", "Qwen2ForCausalLM", _llama,
           _LLAMA_FIELDS | {"use_sliding_window", "sliding_window", "max_window_layers",
                            "layer_types"}, _LLAMA_INERT, {"use_mrope": False},
           weights=_CAUSAL_LM_WEIGHTS),
    Family("gpt2", "gpt2", "GPT2LMHeadModel", _gpt2,
           frozenset({"model_type", "vocab_size", "n_positions", "n_embd", "n_layer", "n_head",
                      "n_inner", "activation_function", "layer_norm_epsilon",
                      "scale_attn_weights", "tie_word_embeddings"}),
           # predict_special_tokens: left over from OpenAI GPT (gpt2-medium and -large carry
           # it); GPT-2's code never reads it, nor n_special (supported at 0, its default)
           frozenset({"n_ctx", "resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_type",
                      "summary_use_proj", "summary_activation", "summary_proj_to_labels",
                      "summary_first_dropout", "predict_special_tokens"}),
           {"scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
            "n_special": 0},
           weights="Conv1D weights stored [in, out]: --transpose '*.c_attn.weight' --transpose "
           "'*.c_proj.weight' --transpose '*.c_fc.weight'; older files keep attention masks: "
           "--ignore '*.attn.bias' --ignore '*.attn.masked_bias'",
           positions=("n_positions", ("input_ids",))),
    Family("bert", "bert", "BertModel", _bert,
           frozenset({"model_type", "vocab_size", "hidden_size", "num_hidden_layers",
                      "num_attention_heads", "intermediate_size", "hidden_act",
                      "max_position_embeddings", "type_vocab_size", "layer_norm_eps",
                      "position_embedding_type"}),
           # directionality and pooler_*: left in the configs of Google's original BERT
           # checkpoints (multilingual, chinese); BertModel's pooler is one Linear whatever
           # they say, and transformers never reads them
           frozenset({"hidden_dropout_prob", "attention_probs_dropout_prob",
                      "classifier_dropout", "tie_word_embeddings", "directionality",
                      "pooler_fc_size", "pooler_num_attention_heads", "pooler_num_fc_layers",
                      "pooler_size_per_head", "pooler_type"}),
           weights="a checkpoint saved from BertFor* names these keys under bert. and holds its "
           "head: --strip-prefix bert. --ignore 'cls.*'; older files keep "
           "embeddings.position_ids: --ignore '*.position_ids'",
           positions=("max_position_embeddings", ("input_ids", "token_type_ids"))),
    Family("t5", "t5", "T5ForConditionalGeneration", _t5,
           frozenset({"model_type", "vocab_size", "d_model", "d_kv", "d_ff", "num_layers",
                      "num_decoder_layers", "num_heads", "relative_attention_num_buckets",
                      "relative_attention_max_distance", "layer_norm_epsilon",
                      "feed_forward_proj", "is_gated_act", "dense_act_fn", "tie_word_embeddings",
                      "scale_decoder_outputs", "dropout_rate"}),
           frozenset({"n_positions", "classifier_dropout"}), {"is_encoder_decoder": True},
           weights="the tied embeddings saved once: --ignore encoder.embed_tokens.weight "
           "--ignore decoder.embed_tokens.weight (and lm_head.weight when tied); some files "
           "hold an unused decoder.block.0.layer.1.EncDecAttention.relative_attention_bias."
           "weight: --ignore it"),
    Family("vit", "vit", "ViTForImageClassification", _vit,
           frozenset({"model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                      "intermediate_size", "hidden_act", "layer_norm_eps", "image_size",
                      "patch_size", "num_channels", "qkv_bias", "id2label", "num_labels"}),
           frozenset({"hidden_dropout_prob", "attention_probs_dropout_prob", "encoder_stride",
                      "pooler_output_size", "pooler_act", "label2id"}),
           weights="nothing: the keys are the checkpoint's"),
]}


def family_of(cfg: Config) -> Family:
    """The family of the config's model_type; LS310 for a missing or unknown one."""
    model_type = cfg.values.get("model_type")
    if model_type is None:
        raise cfg.refuse("model_type", "the config has no model_type",
                         "lazyspec imports the model_types " + ", ".join(FAMILIES))
    if not isinstance(model_type, str) or model_type not in FAMILIES:
        raise cfg.refuse("model_type", f"model_type {_shown(model_type)} is not one lazyspec "
                         "imports", "lazyspec imports the model_types " + ", ".join(FAMILIES))
    return FAMILIES[model_type]


def unsupported(cfg: Config, family: Family) -> list[Diagnostic]:
    """Every field neither implemented nor inert, at a value other than its default."""
    defaults = {**COMMON_DEFAULTS, **family.defaults}
    out = []
    for key, value in cfg.values.items():
        if key in family.implemented or key in family.inert or key in COMMON_INERT:
            continue
        if key in defaults:
            if value == defaults[key] and type(value) is type(defaults[key]):
                continue
            why = f"lazyspec implements only {json.dumps(defaults[key])}"
        else:
            why = f"lazyspec does not know this field for model_type '{family.model_type}'"
        meaning = f" ({MEANING[key]})" if key in MEANING else ""
        out.append(Diagnostic(
            "LS310", f"'{key}' is {_shown(value)}{meaning}: {why}", cfg.where(key),
            hint="lazyspec imports a config only when it knows every field, so that a field "
            "that changes the architecture is never left out; a field that changes nothing "
            "the spec describes can be removed from a copy of the config"))
    return out


# --- writing the spec -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Imported:
    """A spec written from a config, before it is checked and saved."""

    text: str
    config: Path
    family: Family
    params: dict[str, Any]
    ties: list[tuple[str, str]]


def template_text(family: Family) -> str:
    return (resources.files("lazyspec.importers") / "templates" /
            f"{family.template}.yaml").read_text(encoding="utf-8")


def import_config(path: Path, name: str | None = None) -> Imported:
    """The spec text for the config at `path` (a config.json or its folder). Refused (LS310,
    exit 2) when it cannot be written faithfully."""
    if name is not None and (not name.strip() or len(name) > MAX_NAME_CHARS):
        raise UsageError([Diagnostic("LS301", f"--name must be 1 to {MAX_NAME_CHARS} "
                                     "characters")])
    cfg = read_config(path)
    family = family_of(cfg)
    problems = unsupported(cfg, family)
    if problems:
        raise Refused(problems)
    cfg.allowed = family.implemented
    cfg.read.add("model_type")
    filled = family.build(cfg)
    title = name or _default_name(cfg.path, family)
    text = render(family, filled, title, _header(cfg.path, family, filled))
    return Imported(text, cfg.path, family, {k: v for k, (v, _) in filled.params.items()},
                    filled.ties)


def _default_name(config: Path, family: Family) -> str:
    folder = resolved(config).parent.name
    return f"{family.cls} ({folder})" if folder else family.cls


def _header(config: Path, family: Family, filled: Filled) -> list[str]:
    source = visible(f"{resolved(config).parent.name}/{config.name}")
    return [f"Written by `lazyspec import hf` from {source} (model_type "
            f"'{family.model_type}'): {family.cls} with Hugging Face's state-dict keys.",
            "The params come from the config; import it again rather than edit them.",
            f"`lazyspec weights` against a checkpoint of {family.cls} needs "
            f"{_weights_note(family, filled)}."]


def _weights_note(family: Family, filled: Filled) -> str:
    """What `lazyspec weights` needs for this config's checkpoints: the family's layout notes,
    and a tied head, which `save_pretrained` saves once (under its partner's name)."""
    if family.model_type == "t5" or not any(a == "lm_head.weight" for a, _ in filled.ties):
        return family.weights  # (T5's note names its ties itself)
    return ("--ignore lm_head.weight (a tied head is saved once, under its partner's name); "
            f"besides: {family.weights}")


TEMPLATE_ONLY = "# As a template,"  # comment lines the written spec leaves out
_TOP_KEY = re.compile(r"^([A-Za-z_]\w*):")


def _sections(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """The template's leading comment lines, and its top-level sections (key, lines) in
    order."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if _TOP_KEY.match(line))
    sections: list[tuple[str, list[str]]] = []
    for line in lines[first:]:
        match = _TOP_KEY.match(line)
        if match:
            sections.append((match.group(1), [line]))
        else:
            sections[-1][1].append(line)
    return lines[:first], sections


def render(family: Family, filled: Filled, title: str, header: list[str]) -> str:
    """The template with the header, `name:`, `params:` and `tie:` replaced."""
    comments, sections = _sections(template_text(family))
    names = [k for k, _ in filled.params.items()]
    template_params = _template_params(dict(sections)["params"])
    if names != template_params:  # a family and its template must agree, in order
        raise AssertionError(f"{family.model_type}: params {names} != template "
                             f"{template_params}")
    out = [f"# {line}" for line in _wrap(header)] + ["#"] + [
        line for line in comments if not line.startswith(TEMPLATE_ONLY)]
    for key, lines in sections:
        if key == "name":
            out.append(f"name: {json.dumps(title)}")
        elif key == "params":
            out += ["params:"] + [f"  {k}: {yaml_value(v)}".ljust(40) + f"# {note}"
                                  for k, (v, note) in filled.params.items()]
        elif key != "tie":
            out += lines
    if filled.ties:
        out += ["tie:"] + [f"  - [{a}, {b}]" for a, b in filled.ties]
    return "\n".join(out).rstrip("\n") + "\n"


def _template_params(lines: list[str]) -> list[str]:
    return [m.group(1) for line in lines[1:] if (m := re.match(r"^  (\w+):", line))]


def _wrap(lines: list[str], width: int = 96) -> list[str]:
    import textwrap

    return [part for line in lines
            for part in textwrap.wrap(line, width, break_on_hyphens=False) or [""]]


def yaml_value(value: Any) -> str:
    """A param's value as YAML 1.1 reads it back exactly (`1e-05` would be a string there)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        mantissa, e, exponent = text.partition("e")
        if e and "." not in mantissa:
            text = f"{mantissa}.0e{exponent}"
        return text
    return json.dumps(str(value))


# --- checking -------------------------------------------------------------------------------------


def check(imported: Imported, spec_path: Path) -> Outcome:
    """The engine's run of the written text: the same checks any spec gets, before it is
    saved (named input dims at their hint sizes, or shorter than a position table that is)."""
    from lazyspec import engine
    from lazyspec.inputs import DIM_HINT, parse_input

    inputs: tuple[Any, ...] = ()
    if imported.family.positions is not None:
        param, names = imported.family.positions
        length = min(DIM_HINT, int(imported.params[param]))
        if length < DIM_HINT:  # a toy config (tiny-random-*): sequences the table can hold
            inputs = tuple(parse_input(f"{name}=2,{length}") for name in names)
    return engine.run(engine.Request(spec_path, text=imported.text, inputs=inputs,
                                     symbolic=False))
