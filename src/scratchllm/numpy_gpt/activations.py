"""The feed-forward non-linearities: exact GELU, GPT-2's tanh GELU, and ReLU.

GELU weighs its input by how likely a standard normal variable is to be below it::

    gelu(x) = x * Phi(x),    Phi(x) = (1 + erf(x / sqrt 2)) / 2
    gelu'(x) = Phi(x) + x * phi(x),    phi(x) = exp(-x^2 / 2) / sqrt(2 pi)

GPT-2 used a cheaper curve that agrees with it to about 1e-3::

    gelu_tanh(x) = x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) / 2

and the original transformer ``relu(x) = max(x, 0)``.

NumPy has no ``erf``. In float64 we use the project's own (``scratchllm.autograd.tensor.erf``,
error below 1e-14, the accuracy the float64 parity needs). In float32 that costs more
than the whole rest of a block, so ``normal_cdf32`` uses Abramowitz & Stegun's formula
7.1.26 in float32: for ``a = |x| / sqrt 2``, ``t = 1 / (1 + p a)``::

    1 - erf(a) = (a1 t + a2 t^2 + a3 t^3 + a4 t^4 + a5 t^5) exp(-a^2)

with absolute error at most 1.5e-7, about float32's own resolution near 1. Its
``exp(-a^2)`` is ``exp(-x^2 / 2)``, the numerator of ``phi``: the backward reuses it.

Each activation is a pair ``forward(x) -> (y, cache)``, ``backward(dy, cache) -> dx``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from scratchllm.autograd.tensor import erf
from scratchllm.numpy_gpt.parallel import for_rows

_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
# Abramowitz & Stegun 7.1.26
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
_AS_HALF = tuple(0.5 * a for a in _AS_A)  # for (1 - erf) / 2 directly

Forward = Callable[[np.ndarray], tuple[np.ndarray, tuple]]
Backward = Callable[[np.ndarray, tuple], np.ndarray]


def normal_cdf32(
    x: np.ndarray, cdf: np.ndarray | None = None, gauss: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(Phi(x), exp(-x^2/2))`` for float32 ``x``, in float32 (see the module docstring),
    written into ``cdf`` and ``gauss`` when given.

    >>> cdf, _ = normal_cdf32(np.array([-1.0, 0.0, 2.0], np.float32))
    >>> [round(float(c), 5) for c in cdf]
    [0.15866, 0.5, 0.97725]
    """
    cdf = np.empty_like(x) if cdf is None else cdf
    gauss = np.empty_like(x) if gauss is None else gauss
    t = np.abs(x)
    t *= _INV_SQRT_2 * _AS_P  # p * a, with a = |x| / sqrt 2
    t += 1.0
    np.reciprocal(t, out=t)  # t = 1 / (1 + p a)
    # Horner, into cdf's memory: ((((a5 t + a4) t + a3) t + a2) t + a1) t / 2
    tail = np.multiply(t, _AS_HALF[4], out=cdf)
    for c in _AS_HALF[3::-1]:
        tail += c
        tail *= t
    np.square(x, out=gauss)
    gauss *= -0.5
    np.exp(gauss, out=gauss)  # exp(-x^2/2) = exp(-a^2)
    tail *= gauss  # Phi(-|x|) = (1 - erf(a)) / 2: the 1/2 is in the coefficients
    # Phi(x) = 1/2 + sign(x) (1/2 - Phi(-|x|)), in place: no temporaries
    np.subtract(0.5, tail, out=cdf)
    np.copysign(cdf, x, out=cdf)
    cdf += 0.5
    return cdf, gauss


def _rows(*arrays: np.ndarray) -> list[np.ndarray]:
    """Each array as ``[rows, last axis]`` (views: the arrays are contiguous)."""
    return [a.reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1) for a in arrays]


def gelu(x: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Exact GELU, ``x * Phi(x)`` (row-parallel: ``parallel.for_rows``)."""
    x = np.ascontiguousarray(x)
    y, cdf, gauss = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    X, Y, P, G = _rows(x, y, cdf, gauss)

    def rows(r: slice) -> None:
        if x.dtype == np.float32:
            normal_cdf32(X[r], P[r], G[r])
        else:
            P[r] = 0.5 * (1.0 + erf(X[r] * _INV_SQRT_2))
            np.exp(-0.5 * (X[r] * X[r]), out=G[r])
        np.multiply(X[r], P[r], out=Y[r])

    for_rows(rows, X.shape[0], X.shape[1])
    return y, (x, cdf, gauss)


def gelu_backward(dy: np.ndarray, cache: tuple) -> np.ndarray:
    x, cdf, gauss = cache
    d = np.empty_like(x)
    X, P, G, D, DY = _rows(x, cdf, gauss, d, np.ascontiguousarray(dy))

    def rows(r: slice) -> None:
        np.multiply(X[r], G[r], out=D[r])
        D[r] *= _INV_SQRT_2PI  # x * phi(x)
        D[r] += P[r]
        D[r] *= DY[r]

    for_rows(rows, X.shape[0], X.shape[1])
    return d


def gelu_tanh(x: np.ndarray) -> tuple[np.ndarray, tuple]:
    """GPT-2's GELU (``gelu_new``): the tanh approximation."""
    x = np.ascontiguousarray(x)
    y, x2, t = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    X, Y, X2, TH = _rows(x, y, x2, t)

    def rows(r: slice) -> None:
        np.multiply(X[r], X[r], out=X2[r])
        inner = np.multiply(X2[r], 0.044715, out=TH[r])
        inner += 1.0
        inner *= X[r]
        inner *= _SQRT_2_OVER_PI
        np.tanh(inner, out=inner)
        np.add(inner, 1.0, out=Y[r])
        Y[r] *= X[r]
        Y[r] *= 0.5

    for_rows(rows, X.shape[0], X.shape[1])
    return y, (x, x2, t)


def gelu_tanh_backward(dy: np.ndarray, cache: tuple) -> np.ndarray:
    x, x2, t = cache
    d = np.empty_like(x)
    X, X2, TH, D, DY = _rows(x, x2, t, d, np.ascontiguousarray(dy))

    def rows(r: slice) -> None:
        d_inner = X2[r] * (3 * 0.044715 * _SQRT_2_OVER_PI)
        d_inner += _SQRT_2_OVER_PI  # d inner / dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
        np.multiply(TH[r], TH[r], out=D[r])
        np.subtract(1.0, D[r], out=D[r])  # sech^2 = 1 - tanh^2
        D[r] *= d_inner
        D[r] *= X[r]
        D[r] += 1.0
        D[r] += TH[r]
        D[r] *= 0.5
        D[r] *= DY[r]

    for_rows(rows, X.shape[0], X.shape[1])
    return d


def relu(x: np.ndarray) -> tuple[np.ndarray, tuple]:
    return np.maximum(x, 0), (x,)


def relu_backward(dy: np.ndarray, cache: tuple) -> np.ndarray:
    (x,) = cache
    return dy * (x > 0)  # the gradient at exactly 0 is 0, as in PyTorch


ACTIVATIONS: dict[str, tuple[Forward, Backward]] = {
    "gelu": (gelu, gelu_backward),
    "gelu_tanh": (gelu_tanh, gelu_tanh_backward),
    "relu": (relu, relu_backward),
}


def activation(name: str) -> tuple[Forward, Backward]:
    """``(forward, backward)`` of the activation ``name`` (a ``GPTConfig.act``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {list(ACTIVATIONS)}")
    return ACTIVATIONS[name]
