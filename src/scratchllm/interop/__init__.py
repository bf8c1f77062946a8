"""Bridges to other ecosystems: Hugging Face GPT-2 import and export."""

from scratchllm.interop.gpt2 import (
    convert_gpt2,
    copy_gpt2_weights,
    export_gpt2,
    load_gpt2,
    load_gpt2_model,
    load_gpt2_tokenizer,
    read_hf_config,
)

__all__ = [
    "convert_gpt2",
    "copy_gpt2_weights",
    "export_gpt2",
    "load_gpt2",
    "load_gpt2_model",
    "load_gpt2_tokenizer",
    "read_hf_config",
]
