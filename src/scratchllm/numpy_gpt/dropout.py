"""Dropout (Srivastava et al., 2014): during training, zero each activation with
probability ``p`` and scale the survivors by ``1 / (1 - p)``, so the expected value is
unchanged and evaluation (no dropout) needs no rescaling::

    y = x * keep / (1 - p),   keep ~ Bernoulli(1 - p)      dL/dx = dL/dy * keep / (1 - p)

The mask comes from the caller's ``np.random.Generator``, so a seeded run repeats.
"""

from __future__ import annotations

import numpy as np


def dropout_mask(shape, p: float, rng: np.random.Generator, dtype) -> np.ndarray:
    """0 or ``1 / (1 - p)`` per element: the factor both passes multiply by."""
    draw_dtype = dtype if np.dtype(dtype) in (np.float32, np.float64) else np.float64
    scale = (rng.random(shape, dtype=draw_dtype) >= p).astype(dtype)
    scale *= 1.0 / (1.0 - p)
    return scale


def dropout(x: np.ndarray, p: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(y, scale)``: ``scale`` (0 or ``1/(1-p)`` per element) is the backward's factor.

    >>> y, scale = dropout(np.ones(6, np.float32), 0.5, np.random.default_rng(0))
    >>> sorted(set(y.tolist()))  # dropped, or kept and doubled
    [0.0, 2.0]
    """
    scale = dropout_mask(x.shape, p, rng, x.dtype)
    return x * scale, scale


def dropout_backward(dy: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return dy * scale
