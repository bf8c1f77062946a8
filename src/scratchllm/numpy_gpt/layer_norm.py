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


def layer_norm(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, eps: float
) -> tuple[np.ndarray, tuple]:
    """``(y, cache)`` for ``x [..., C]``; ``cache`` is what ``layer_norm_backward`` needs.

    >>> y, _ = layer_norm(np.array([[1.0, 2.0, 3.0]]), np.ones(3), None, 0.0)
    >>> y.round(4).tolist()  # centred, unit variance: (x - 2) / sqrt(2/3)
    [[-1.2247, 0.0, 1.2247]]
    """
    mu = x.mean(axis=-1, keepdims=True)  # (..., 1)
    xc = x - mu
    var = np.einsum("...c,...c->...", xc, xc)[..., None] / x.shape[-1]  # one pass, no x**2 copy
    r = 1.0 / np.sqrt(var + eps)  # (..., 1)
    xhat = xc
    xhat *= r  # reuses xc's memory: xc is not needed again
    y = xhat * w
    if b is not None:
        y += b
    return y, (xhat, r, w, b is not None)


def layer_norm_backward(
    dy: np.ndarray, cache: tuple
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(dx, dw, db)`` given ``dy = dL/dy``; db is None without a bias."""
    xhat, r, w, has_bias = cache
    C = xhat.shape[-1]
    dy2, xhat2 = dy.reshape(-1, C), xhat.reshape(-1, C)
    dw = np.einsum("nc,nc->c", dy2, xhat2)  # sum over tokens of dy * xhat
    db = dy2.sum(axis=0) if has_bias else None
    g = dy * w  # (..., C) the gradient reaching xhat
    mean_g = g.mean(axis=-1, keepdims=True)
    mean_gx = np.einsum("...c,...c->...", g, xhat)[..., None] / C
    g -= mean_g
    g -= xhat * mean_gx
    g *= r
    return g, dw, db
