"""A linear layer and its gradient, in PyTorch's weight layout ``[out, in]``.

Forward and backward for ``y = x W^T + b`` with ``x [N, in]``, ``W [out, in]``::

    dL/dx = dy W          [N, out] @ [out, in]
    dL/dW = dy^T x        [out, N] @ [N, in]   (summed over every row of the batch)
    dL/db = sum_rows dy

Any leading shape works (``[B, T, in]``); the weight gradient flattens it to one
``[B*T, in]`` matrix so the sum over the batch is a single matrix product.
"""

from __future__ import annotations

import numpy as np


def linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """``x [..., in] -> [..., out]``: ``x @ w.T + b``.

    >>> linear(np.ones((2, 3)), np.eye(2, 3), np.array([0.5, -0.5])).tolist()
    [[1.5, 0.5], [1.5, 0.5]]
    """
    # One 2-D product: [B, T, in] as [B*T, in]. (NumPy would otherwise run one small
    # BLAS call per leading index.) BLAS reads w.T as a transposed view: no copy.
    y = x.reshape(-1, x.shape[-1]) @ w.T
    if b is not None:
        y += b
    return y.reshape(*x.shape[:-1], w.shape[0])


def linear_backward(
    dy: np.ndarray, x: np.ndarray, w: np.ndarray, has_bias: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(dx, dw, db)`` for ``y = linear(x, w, b)`` given ``dy = dL/dy``; db is None
    without a bias."""
    n_out, n_in = w.shape
    dy2 = dy.reshape(-1, n_out)  # (N, out)
    dx = (dy2 @ w).reshape(*dy.shape[:-1], n_in)
    dw = dy2.T @ x.reshape(-1, n_in)  # (out, in)
    db = dy2.sum(axis=0) if has_bias else None
    return dx, dw, db
