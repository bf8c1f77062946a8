"""The output layer and the loss: from the last residual stream to next-token logits.

A final layer norm (``ln_f``), then ``lm_head [V, C]`` scores every token of the
vocabulary (with tied weights it is the token table ``wte`` itself, read the other way)::

    logits = ln_f(x) W_head^T                  [B, T, C] -> [B, T, V]

**Cross-entropy.** The loss is the mean over counted positions of ``-log softmax(logits)``
at the target (targets equal to -1 and positions where ``loss_mask`` is False do not
count). With label smoothing ``eps`` the target distribution is
``q = (1 - eps) onehot + eps / V``, and for either the gradient is one line::

    dL/dlogits = (softmax(logits) - q) / n_counted       (0 at positions not counted)

computed with the log-sum-exp shifted by the row's maximum, so no logit overflows and
``log(softmax)`` is never formed from a rounded-to-0 probability.
"""

from __future__ import annotations

import numpy as np

from scratchllm.numpy_gpt.layer_norm import layer_norm, layer_norm_backward
from scratchllm.numpy_gpt.linear import linear, linear_backward
from scratchllm.numpy_gpt.parallel import for_rows


def output_layer(
    x: np.ndarray, ln_w: np.ndarray, ln_b: np.ndarray | None, eps: float, w_head: np.ndarray
) -> tuple[np.ndarray, tuple]:
    """``(logits [..., V], cache)`` for the last hidden states ``x [..., C]``."""
    h, ln_cache = layer_norm(x, ln_w, ln_b, eps)
    return linear(h, w_head, None), (h, ln_cache, w_head)


def output_layer_backward(
    dlogits: np.ndarray, cache: tuple
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """``(dx, d_ln_weight, d_ln_bias, d_head)``; ``d_ln_bias`` is None without a bias."""
    h, ln_cache, w_head = cache
    dh, d_head, _ = linear_backward(dlogits, h, w_head, False)
    dx, d_ln_w, d_ln_b = layer_norm_backward(dh, ln_cache)
    return dx, d_ln_w, d_ln_b, d_head


def counted_positions(targets: np.ndarray, loss_mask: np.ndarray | None) -> np.ndarray:
    """Bool ``[B, T]``: the positions whose prediction counts (target not -1, mask true)."""
    keep = targets != -1
    if loss_mask is not None:
        if loss_mask.shape != targets.shape:
            raise ValueError(
                f"loss_mask shape {tuple(loss_mask.shape)} must be (B, T) = {targets.shape}"
            )
        keep &= loss_mask.astype(bool)
    return keep


def cross_entropy(
    logits: np.ndarray,
    targets: np.ndarray,
    loss_mask: np.ndarray | None = None,
    label_smoothing: float = 0.0,
    grad: bool = False,
) -> tuple[float, np.ndarray | None]:
    """``(mean loss, dL/dlogits or None)`` for ``logits [B, T, V]`` and ``targets [B, T]``.

    No counted position gives NaN, as PyTorch's mean over nothing does.

    >>> loss, _ = cross_entropy(np.zeros((1, 2, 4)), np.array([[1, 2]]))
    >>> round(loss, 4)  # uniform over 4 tokens: ln 4
    1.3863
    """
    B, T, V = logits.shape
    if targets.shape != (B, T):
        raise ValueError(f"targets shape {tuple(targets.shape)} must be (B, T) = {(B, T)}")
    keep = counted_positions(targets, loss_mask).reshape(-1)  # (N,)
    n = int(keep.sum())
    tgt = np.where(keep, targets.reshape(-1), 0)  # (N,) a safe index where not counted
    L = np.ascontiguousarray(logits).reshape(B * T, V)
    loss_rows = np.empty(B * T, dtype=L.dtype)
    d = np.empty_like(L) if grad else None

    def rows(s: slice) -> None:  # positions are independent: in parallel (for_rows)
        z = L[s] - L[s].max(axis=-1, keepdims=True)
        e = np.exp(z)
        sum_e = e.sum(axis=-1, keepdims=True)  # (n, 1)
        log_sum = np.log(sum_e)[:, 0]
        i = np.arange(z.shape[0])
        nll = log_sum - z[i, tgt[s]]  # -log p[target]
        if label_smoothing:  # (1 - eps) nll + eps * mean_v(-log p[v])
            nll = (1.0 - label_smoothing) * nll + label_smoothing * (log_sum - z.mean(axis=-1))
        loss_rows[s] = nll
        if d is None:
            return
        dr = np.divide(e, sum_e, out=d[s])  # softmax
        dr[~keep[s]] = 0.0
        counted = np.flatnonzero(keep[s])
        if label_smoothing:
            dr[counted] -= label_smoothing / V
        dr[counted, tgt[s][counted]] -= 1.0 - label_smoothing
        if n:
            dr *= 1.0 / n

    for_rows(rows, B * T, V)
    loss = float(loss_rows[keep].sum() / n) if n else float("nan")
    return loss, None if d is None else d.reshape(B, T, V)
