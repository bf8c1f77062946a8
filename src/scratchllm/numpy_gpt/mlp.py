"""The position-wise MLP: each token's vector is widened, bent and projected back::

    h = x W_fc^T + b_fc       [C] -> [hidden]   (hidden = 4C by default)
    a = act(h)                GELU, tanh-GELU or ReLU
    y = a W_proj^T + b_proj   [hidden] -> [C]

Backward runs the same three steps in reverse (``linear_backward``, the activation's
derivative, ``linear_backward``). Tokens do not interact here: that is attention's job.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from scratchllm.numpy_gpt.activations import activation
from scratchllm.numpy_gpt.dropout import dropout, dropout_backward
from scratchllm.numpy_gpt.linear import linear, linear_backward


def mlp(
    x: np.ndarray,
    p: Mapping[str, np.ndarray],
    act: str,
    dropout_p: float = 0.0,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, tuple]:
    """``(y [..., C], cache)``; ``p`` holds ``c_fc.weight [hidden, C]``,
    ``c_proj.weight [C, hidden]`` and their biases (absent with ``bias=False``)."""
    forward, _ = activation(act)
    h = linear(x, p["c_fc.weight"], p.get("c_fc.bias"))
    a, act_cache = forward(h)
    y = linear(a, p["c_proj.weight"], p.get("c_proj.bias"))
    keep = None
    if dropout_p > 0.0:
        y, keep = dropout(y, dropout_p, rng)
    return y, (x, a, act_cache, act, keep, p)


def mlp_backward(dy: np.ndarray, cache: tuple) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(dx, grads)`` with ``grads`` named as ``p``'s entries."""
    x, a, act_cache, act, keep, p = cache
    if keep is not None:
        dy = dropout_backward(dy, keep)
    grads: dict[str, np.ndarray] = {}
    da, grads["c_proj.weight"], db = linear_backward(dy, a, p["c_proj.weight"], "c_proj.bias" in p)
    if db is not None:
        grads["c_proj.bias"] = db
    dh = activation(act)[1](da, act_cache)
    dx, grads["c_fc.weight"], db = linear_backward(dh, x, p["c_fc.weight"], "c_fc.bias" in p)
    if db is not None:
        grads["c_fc.bias"] = db
    return dx, grads
