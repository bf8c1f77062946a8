"""Building blocks shared by the transformer models: attention, norms, positions, FFN/MoE,
and the KV cache."""

from scratchllm.configs.models import ACTIVATIONS, FFNS, NORMS, POSITIONS
from scratchllm.models.layers.attention import (
    ATTENTION_IMPLS,
    CausalSelfAttention,
    reference_attention,
)
from scratchllm.models.layers.block import Block
from scratchllm.models.layers.ffn import MLP, MoE, make_activation
from scratchllm.models.layers.kv_cache import KVCache
from scratchllm.models.layers.norms import LayerNorm, RMSNorm, make_norm
from scratchllm.models.layers.positions import (
    apply_rope,
    rope_at,
    rope_tables,
    sinusoidal_table,
)

__all__ = [
    "ACTIVATIONS",
    "ATTENTION_IMPLS",
    "Block",
    "FFNS",
    "MLP",
    "NORMS",
    "POSITIONS",
    "CausalSelfAttention",
    "KVCache",
    "LayerNorm",
    "MoE",
    "RMSNorm",
    "apply_rope",
    "make_activation",
    "make_norm",
    "reference_attention",
    "rope_at",
    "rope_tables",
    "sinusoidal_table",
]
