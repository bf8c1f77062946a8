"""Layer normalisation (Ba et al., 2016) and its gradient.

Each token's vector ``x [C]`` is centred and scaled to unit variance, then given a
learned gain ``w`` and offset ``b``::

    mu = mean(x)    var = mean((x - mu)^2)    r = 1 / sqrt(var + eps)
    xhat = (x - mu) * r
    y = xhat * w + b

The backward pass, per vector, with ``g = dL/dy * w`` (the gradient reaching xhat)::

    dL/dx = r * (g - mean(g) - xhat * mean(g * xhat))
    dL/dw = sum over tokens of dL/dy * xhat      dL/db = sum over tokens of dL/dy

The two means remove what centring and scaling take away: moving every feature by the
same amount, or scaling them all, leaves ``xhat`` unchanged.
"""

from __future__ import annotations

import numpy as np

from scratchllm.numpy_gpt.parallel import for_rows


def layer_norm(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, eps: float
) -> tuple[np.ndarray, tuple]:
    """``(y, cache)`` for ``x [..., C]``; ``cache`` is what ``layer_norm_backward`` needs.
    Rows (tokens) are independent: they run in parallel (``parallel.for_rows``).

    >>> y, _ = layer_norm(np.array([[1.0, 2.0, 3.0]]), np.ones(3), None, 0.0)
    >>> y.round(4).tolist()  # centred, unit variance: (x - 2) / sqrt(2/3)
    [[-1.2247, 0.0, 1.2247]]
    """
    C = x.shape[-1]
    X = np.ascontiguousarray(x).reshape(-1, C)  # (N, C)
    xhat, y = np.empty_like(X), np.empty_like(X)
    r = np.empty((X.shape[0], 1), dtype=X.dtype)

    def rows(s: slice) -> None:
        xc = np.subtract(X[s], X[s].mean(axis=-1, keepdims=True), out=xhat[s])
        var = np.einsum("nc,nc->n", xc, xc)[:, None] / C  # one pass, no (x - mu)**2 copy
        np.divide(1.0, np.sqrt(var + eps), out=r[s])
        xc *= r[s]  # xhat, in place
        np.multiply(xc, w, out=y[s])
        if b is not None:
            y[s] += b

    for_rows(rows, X.shape[0], C)
    return y.reshape(x.shape), (xhat, r, w, b is not None)


def layer_norm_backward(
    dy: np.ndarray, cache: tuple
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(dx, dw, db)`` given ``dy = dL/dy``; db is None without a bias."""
    xhat, r, w, has_bias = cache
    C = xhat.shape[-1]
    DY = np.ascontiguousarray(dy).reshape(-1, C)
    dw = np.einsum("nc,nc->c", DY, xhat)  # sum over tokens of dy * xhat
    db = DY.sum(axis=0) if has_bias else None
    dx = np.empty_like(xhat)

    def rows(s: slice) -> None:
        g = np.multiply(DY[s], w, out=dx[s])  # the gradient reaching xhat
        mean_g = g.mean(axis=-1, keepdims=True)
        mean_gx = np.einsum("nc,nc->n", g, xhat[s])[:, None] / C
        g -= mean_g
        g -= xhat[s] * mean_gx
        g *= r[s]

    for_rows(rows, xhat.shape[0], C)
    return dx.reshape(dy.shape), dw, db
