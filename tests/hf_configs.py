"""Hugging Face config.json contents of published models (as on their model pages), written by
the tests themselves: no network. Each with the parameter count its model card or paper gives
(for the class `lazyspec import hf` writes)."""

from __future__ import annotations

from typing import Any

LLAMA2_7B: dict[str, Any] = {
    "_name_or_path": "meta-llama/Llama-2-7b-hf", "architectures": ["LlamaForCausalLM"],
    "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096,
    "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 4096,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 32, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None,
    "tie_word_embeddings": False, "torch_dtype": "float16",
    "transformers_version": "4.31.0.dev0", "use_cache": True, "vocab_size": 32000,
}
LLAMA2_70B: dict[str, Any] = {
    **LLAMA2_7B, "_name_or_path": "meta-llama/Llama-2-70b-hf", "hidden_size": 8192,
    "intermediate_size": 28672, "num_attention_heads": 64, "num_hidden_layers": 80,
    "num_key_value_heads": 8,
}
MISTRAL_7B: dict[str, Any] = {
    "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
    "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "transformers_version": "4.34.0.dev0", "use_cache": True, "vocab_size": 32000,
}
QWEN25_05B: dict[str, Any] = {  # Qwen/Qwen2.5-0.5B: q/k/v biases, a tied head
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896,
    "initializer_range": 0.02, "intermediate_size": 4864, "max_position_embeddings": 32768,
    "max_window_layers": 24, "model_type": "qwen2", "num_attention_heads": 14,
    "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": True,
    "torch_dtype": "bfloat16", "transformers_version": "4.40.1", "use_cache": True,
    "use_mrope": False, "use_sliding_window": False, "vocab_size": 151936,
}
GPT2: dict[str, Any] = {
    "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
    "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024, "n_embd": 768,
    "n_head": 12, "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1,
    "summary_activation": None, "summary_first_dropout": 0.1, "summary_proj_to_labels": True,
    "summary_type": "cls_index", "summary_use_proj": True,
    "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
    "vocab_size": 50257,
}
BERT_BASE: dict[str, Any] = {
    "architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1,
    "gradient_checkpointing": False, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
    "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert",
    "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 0,
    "position_embedding_type": "absolute", "transformers_version": "4.6.0.dev0",
    "type_vocab_size": 2, "use_cache": True, "vocab_size": 30522,
}
T5_SMALL: dict[str, Any] = {
    "architectures": ["T5ForConditionalGeneration"], "d_ff": 2048, "d_kv": 64, "d_model": 512,
    "decoder_start_token_id": 0, "dropout_rate": 0.1, "eos_token_id": 1,
    "initializer_factor": 1.0, "is_encoder_decoder": True, "layer_norm_epsilon": 1e-06,
    "model_type": "t5", "n_positions": 512, "num_heads": 8, "num_layers": 6,
    "output_past": True, "pad_token_id": 0, "relative_attention_num_buckets": 32,
    "task_specific_params": {"summarization": {"early_stopping": True, "length_penalty": 2.0,
                                               "max_length": 200, "min_length": 30,
                                               "no_repeat_ngram_size": 3, "num_beams": 4,
                                               "prefix": "summarize: "}},
    "vocab_size": 32128,
}
T5_V11_SMALL: dict[str, Any] = {  # google/t5-v1_1-small: gated-gelu, untied head, no rescaling
    "architectures": ["T5ForConditionalGeneration"], "d_ff": 1024, "d_kv": 64, "d_model": 512,
    "decoder_start_token_id": 0, "dropout_rate": 0.1, "eos_token_id": 1,
    "feed_forward_proj": "gated-gelu", "initializer_factor": 1.0, "is_encoder_decoder": True,
    "layer_norm_epsilon": 1e-06, "model_type": "t5", "num_decoder_layers": 8, "num_heads": 6,
    "num_layers": 8, "output_past": True, "pad_token_id": 0,
    "relative_attention_num_buckets": 32, "tie_word_embeddings": False, "vocab_size": 32128,
}
VIT_B_16: dict[str, Any] = {
    "architectures": ["ViTForImageClassification"], "attention_probs_dropout_prob": 0.0,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "hidden_size": 768,
    "id2label": {str(i): f"class {i}" for i in range(1000)}, "image_size": 224,
    "initializer_range": 0.02, "intermediate_size": 3072,
    "label2id": {f"class {i}": i for i in range(1000)}, "layer_norm_eps": 1e-12,
    "model_type": "vit", "num_attention_heads": 12, "num_channels": 3,
    "num_hidden_layers": 12, "patch_size": 16, "qkv_bias": True,
    "transformers_version": "4.13.0.dev0",
}

# name -> (config, published parameter count)
PUBLISHED: dict[str, tuple[dict[str, Any], int]] = {
    "llama2-7b": (LLAMA2_7B, 6_738_415_616),
    "llama2-70b": (LLAMA2_70B, 68_976_648_192),
    "mistral-7b-v0.1": (MISTRAL_7B, 7_241_732_096),
    "gpt2": (GPT2, 124_439_808),
    "bert-base-uncased": (BERT_BASE, 109_482_240),
    "t5-small": (T5_SMALL, 60_506_624),
    "vit-base-patch16-224": (VIT_B_16, 86_567_656),
}

# Configs that carry fields transformers never reads (left over from older code): imported as if
# the fields were absent. Counts from transformers' own classes built on the meta device.
GPT2_MEDIUM: dict[str, Any] = {  # openai-community/gpt2-medium: OpenAI GPT's special tokens
    **GPT2, "n_embd": 1024, "n_head": 16, "n_layer": 24, "n_special": 0,
    "predict_special_tokens": True,
}
DISTILGPT2: dict[str, Any] = {  # distilbert/distilgpt2: the legacy label count
    **GPT2, "n_layer": 6, "_num_labels": 1, "id2label": {"0": "LABEL_0"},
    "label2id": {"LABEL_0": 0},
}
BERT_MULTILINGUAL: dict[str, Any] = {  # google-bert/bert-base-multilingual-cased: the TF pooler
    **BERT_BASE, "directionality": "bidi", "pooler_fc_size": 768,
    "pooler_num_attention_heads": 12, "pooler_num_fc_layers": 3, "pooler_size_per_head": 128,
    "pooler_type": "first_token_transform", "vocab_size": 119547,
}
HUGGYLLAMA_7B: dict[str, Any] = {  # huggyllama/llama-7b: an early conversion
    "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
    "intermediate_size": 11008, "max_position_embeddings": 2048, "max_sequence_length": 2048,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "pad_token_id": 0,
    "rms_norm_eps": 1e-06, "tie_word_embeddings": False, "torch_dtype": "float16",
    "transformers_version": "4.28.0.dev0", "use_cache": True, "vocab_size": 32000,
}
LEFTOVERS: dict[str, tuple[dict[str, Any], int]] = {
    "gpt2-medium": (GPT2_MEDIUM, 354_823_168),
    "distilgpt2": (DISTILGPT2, 81_912_576),
    "bert-base-multilingual-cased": (BERT_MULTILINGUAL, 177_853_440),  # BertModel
    "huggyllama-7b": (HUGGYLLAMA_7B, 6_738_415_616),
}
