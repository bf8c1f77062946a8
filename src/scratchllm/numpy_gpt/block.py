"""One transformer block (GPT-2's pre-norm form): attention, then the MLP, each added
back onto the residual stream::

    x = x + attn(ln_1(x))     tokens look at earlier tokens
    x = x + mlp(ln_2(x))      each token thinks on its own

The residual additions are why deep stacks train: the gradient reaching ``x`` from
above passes straight through each ``+`` to the block below, and each branch only adds
its own correction. Backward, from the top::

    dx_mid = dx + ln_2'(mlp'(dx))          the MLP branch's gradient joins the stream
    dx_in  = dx_mid + ln_1'(attn'(dx_mid))
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from scratchllm.configs import GPTConfig
from scratchllm.numpy_gpt.attention import (
    cached_attention,
    multi_head_attention,
    multi_head_attention_backward,
)
from scratchllm.numpy_gpt.layer_norm import layer_norm, layer_norm_backward
from scratchllm.numpy_gpt.mlp import mlp, mlp_backward


def sub(p: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The entries of ``p`` under ``prefix``, with the prefix taken off their names."""
    n = len(prefix)
    return {k[n:]: v for k, v in p.items() if k.startswith(prefix)}


def block(
    x: np.ndarray,
    p: Mapping[str, np.ndarray],
    config: GPTConfig,
    bias: np.ndarray | None,
    dropout_p: float = 0.0,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, tuple]:
    """``(x_out [B, T, C], cache)``; ``p`` holds the block's parameters by their names
    inside the block (``ln_1.weight``, ``attn.c_attn.weight``, ``mlp.c_fc.weight``, ...)."""
    eps = config.layer_norm_epsilon
    h, ln1 = layer_norm(x, p["ln_1.weight"], p.get("ln_1.bias"), eps)
    a, attn = multi_head_attention(h, sub(p, "attn."), config.n_head, bias, dropout_p, rng)
    a += x  # the residual, into the branch's own fresh array (x itself is left as it was)
    x = a
    h, ln2 = layer_norm(x, p["ln_2.weight"], p.get("ln_2.bias"), eps)
    m, ffn = mlp(h, sub(p, "mlp."), config.act, dropout_p, rng)
    x += m  # x is this block's own array now: adding in place is safe
    return x, (ln1, attn, ln2, ffn)


def block_backward(dx: np.ndarray, cache: tuple) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(dx_in, grads)`` given ``dx = dL/dx_out``; ``grads`` named as ``p``'s entries."""
    ln1, attn, ln2, ffn = cache
    grads: dict[str, np.ndarray] = {}
    dh, g = mlp_backward(dx, ffn)
    grads.update({"mlp." + k: v for k, v in g.items()})
    dh, grads["ln_2.weight"], db = layer_norm_backward(dh, ln2)
    if db is not None:
        grads["ln_2.bias"] = db
    dx = dx + dh  # the residual: the stream's gradient plus the branch's
    dh, g = multi_head_attention_backward(dx, attn)
    grads.update({"attn." + k: v for k, v in g.items()})
    dh, grads["ln_1.weight"], db = layer_norm_backward(dh, ln1)
    if db is not None:
        grads["ln_1.bias"] = db
    dx += dh
    return dx, grads


def cached_block(
    x: np.ndarray,
    p: Mapping[str, np.ndarray],
    config: GPTConfig,
    keys: np.ndarray,
    values: np.ndarray,
    start: int,
    bias: np.ndarray | None,
) -> np.ndarray:
    """Inference through one block with its KV cache (see ``cached_attention``)."""
    eps = config.layer_norm_epsilon
    h, _ = layer_norm(x, p["ln_1.weight"], p.get("ln_1.bias"), eps)
    x = x + cached_attention(h, sub(p, "attn."), config.n_head, keys, values, start, bias)
    h, _ = layer_norm(x, p["ln_2.weight"], p.get("ln_2.bias"), eps)
    y, _ = mlp(h, sub(p, "mlp."), config.act)
    x += y
    return x
