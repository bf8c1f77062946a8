"""Attention: one head, then many side by side (GPT-2's multi-head self-attention).

**One head.** Each token asks a question (its query ``q``), advertises what it holds
(its key ``k``) and offers content (its value ``v``). A query's output is the average of
the values, weighted by how well its query matches each key::

    S = q k^T / sqrt(D) + bias        [Tq, Tk]   scores (bias: 0, or -inf where masked)
    W = softmax(S)                    [Tq, Tk]   each row sums to 1
    out = W v                         [Tq, D]

Dividing by ``sqrt(D)`` keeps the scores' variance near 1 whatever the head size, so
the softmax does not saturate. Backward, with ``dout = dL/dout``::

    dv = W^T dout        dW = dout v^T
    dS = W * (dW - rowsum(dW * W))          the softmax's Jacobian, row by row
    dq = dS k / sqrt(D)  dk = dS^T q / sqrt(D)

``attention_head`` works on any leading shape, so passing ``[B, H, T, D]`` arrays runs
every head of every row at once; that is how ``multi_head_attention`` uses it.

**Many heads.** ``c_attn`` projects each token to queries, keys and values for all
``H`` heads in one matrix product (``[C] -> [3C]``), the heads attend independently on
their own ``D = C / H`` features, their outputs are laid side by side and ``c_proj``
mixes them back (``[C] -> [C]``). Dropout (training only) acts on the attention
weights and on the output, where the PyTorch GPT applies it; the weights' mask is drawn
before the heads run, so the heads themselves are deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from scratchllm.numpy_gpt.dropout import dropout, dropout_backward, dropout_mask
from scratchllm.numpy_gpt.linear import linear, linear_backward
from scratchllm.numpy_gpt.parallel import run_parts, split_rows


def attention_head(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    bias: np.ndarray | None = None,
    keep: np.ndarray | None = None,
) -> tuple[np.ndarray, tuple]:
    """``(out [..., Tq, D], cache)`` for ``q [..., Tq, D]``, ``k, v [..., Tk, D]``.

    ``bias`` broadcasts against the scores ``[..., Tq, Tk]`` (``masks.attention_bias``);
    a row whose keys are all masked would be NaN, so masks keep each query's own slot.
    ``keep`` is a dropout mask for the weights (``dropout.dropout_mask``), or None.

    >>> q = k = np.eye(2)                      # two tokens, orthogonal keys
    >>> v = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> out, _ = attention_head(q, k, v, np.array([[0.0, -np.inf], [0.0, 0.0]]))
    >>> out.round(3).tolist()                  # token 0 sees itself; token 1 leans to itself
    [[1.0, 0.0], [0.33, 0.67]]
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    s = q @ k.swapaxes(-1, -2)  # (..., Tq, Tk)
    s *= scale
    if bias is not None:
        s += bias
    s -= s.max(axis=-1, keepdims=True)  # softmax, shifted so exp cannot overflow
    w = np.exp(s, out=s)
    w /= w.sum(axis=-1, keepdims=True)
    w_used = w if keep is None else w * keep
    return w_used @ v, (q, k, v, w, w_used, keep, scale)


def attention_head_backward(
    dout: np.ndarray, cache: tuple
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(dq, dk, dv)`` given ``dout = dL/dout``."""
    q, k, v, w, w_used, keep, scale = cache
    dv = w_used.swapaxes(-1, -2) @ dout  # (..., Tk, D)
    dw = dout @ v.swapaxes(-1, -2)  # (..., Tq, Tk)
    if keep is not None:
        dw *= keep
    # softmax backward: dS = W * (dW - sum_j dW_j W_j); masked entries have W = 0
    row = np.einsum("...ij,...ij->...i", dw, w)[..., None]
    dw -= row
    dw *= w
    dw *= scale
    dq = dw @ k
    dk = dw.swapaxes(-1, -2) @ q
    return dq, dk, dv


def split_heads(qkv: np.ndarray, n_head: int) -> np.ndarray:
    """``[B, T, 3C] -> [3, B, H, T, D]``, contiguous (so each head's matmul is one BLAS call)."""
    B, T, C3 = qkv.shape
    D = C3 // (3 * n_head)
    return np.ascontiguousarray(qkv.reshape(B, T, 3, n_head, D).transpose(2, 0, 3, 1, 4))


def merge_heads(y: np.ndarray) -> np.ndarray:
    """``[B, H, T, D] -> [B, T, H*D]``: the heads' outputs side by side."""
    B, H, T, D = y.shape
    return y.transpose(0, 2, 1, 3).reshape(B, T, H * D)


def multi_head_attention(
    x: np.ndarray,
    p: Mapping[str, np.ndarray],
    n_head: int,
    bias: np.ndarray | None,
    dropout_p: float = 0.0,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, tuple]:
    """``(y [B, T, C], cache)``: self-attention of ``x [B, T, C]``.

    ``p`` holds ``c_attn.weight [3C, C]``, ``c_proj.weight [C, C]`` and their biases
    (absent with ``bias=False``); ``bias`` is the attention bias (the masks). The heads
    of different rows run in parallel (``parallel.split_rows``).
    """
    qkv = linear(x, p["c_attn.weight"], p.get("c_attn.bias"))  # (B, T, 3C)
    q, k, v = split_heads(qkv, n_head)  # 3 x (B, H, T, D)
    B, H, T, D = q.shape
    keep = dropout_mask((B, H, T, T), dropout_p, rng, x.dtype) if dropout_p > 0 else None
    y = np.empty_like(q)  # (B, H, T, D)
    parts = split_rows(B, H * T * T)
    head_caches: dict[int, tuple] = {}

    def rows(r: slice) -> None:
        b = bias[r] if bias is not None and bias.ndim == 4 and bias.shape[0] == B else bias
        y[r], head_caches[r.start] = attention_head(
            q[r], k[r], v[r], b, None if keep is None else keep[r]
        )

    run_parts(rows, parts)
    y = merge_heads(y)  # (B, T, C)
    out = linear(y, p["c_proj.weight"], p.get("c_proj.bias"))
    keep_out = None
    if dropout_p > 0.0:
        out, keep_out = dropout(out, dropout_p, rng)
    return out, (x, y, parts, head_caches, keep_out, p)


def multi_head_attention_backward(
    dout: np.ndarray, cache: tuple
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(dx, grads)`` with ``grads`` named as ``p``'s entries."""
    x, y, parts, head_caches, keep_out, p = cache
    if keep_out is not None:
        dout = dropout_backward(dout, keep_out)
    grads: dict[str, np.ndarray] = {}
    dy, grads["c_proj.weight"], db = linear_backward(
        dout, y, p["c_proj.weight"], "c_proj.bias" in p
    )
    if db is not None:
        grads["c_proj.bias"] = db
    B, T, C = dy.shape
    H = head_caches[0][0].shape[1]
    dy = dy.reshape(B, T, H, C // H).transpose(0, 2, 1, 3)  # (B, H, T, D), a view
    dqkv = np.empty((B, T, 3, H, C // H), dtype=dy.dtype)

    def rows(r: slice) -> None:
        for i, d in enumerate(attention_head_backward(dy[r], head_caches[r.start])):
            dqkv[r, :, i] = d.transpose(0, 2, 1, 3)  # (b, H, T, D) -> (b, T, H, D)

    run_parts(rows, parts)
    dqkv = dqkv.reshape(B, T, 3 * C)
    dx, grads["c_attn.weight"], db = linear_backward(
        dqkv, x, p["c_attn.weight"], "c_attn.bias" in p
    )
    if db is not None:
        grads["c_attn.bias"] = db
    return dx, grads


def cached_attention(
    x: np.ndarray,
    p: Mapping[str, np.ndarray],
    n_head: int,
    keys: np.ndarray,
    values: np.ndarray,
    start: int,
    bias: np.ndarray | None,
) -> np.ndarray:
    """Inference with a KV cache: ``x [B, T_new, C]`` are the tokens after the ``start``
    already in ``keys, values [B, H, L, D]``. Their keys and values are written into
    slots ``start:start+T_new`` in place, and the queries attend over ``0:start+T_new``.
    """
    T = x.shape[1]
    q, k, v = split_heads(linear(x, p["c_attn.weight"], p.get("c_attn.bias")), n_head)
    end = start + T
    keys[:, :, start:end] = k
    values[:, :, start:end] = v
    y, _ = attention_head(q, keys[:, :, :end], values[:, :, :end], bias)
    return linear(merge_heads(y), p["c_proj.weight"], p.get("c_proj.bias"))
