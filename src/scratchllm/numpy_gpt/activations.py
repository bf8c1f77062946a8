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

_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
# Abramowitz & Stegun 7.1.26
_AS_P = 0.3275911
_AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)

Forward = Callable[[np.ndarray], tuple[np.ndarray, tuple]]
Backward = Callable[[np.ndarray, tuple], np.ndarray]


def normal_cdf32(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(Phi(x), exp(-x^2/2))`` for float32 ``x``, in float32 (see the module docstring).

    >>> cdf, _ = normal_cdf32(np.array([-1.0, 0.0, 2.0], np.float32))
    >>> [round(float(c), 5) for c in cdf]
    [0.15866, 0.5, 0.97725]
    """
    t = np.abs(x)
    t *= _INV_SQRT_2 * _AS_P  # p * a, with a = |x| / sqrt 2
    t += 1.0
    np.reciprocal(t, out=t)  # t = 1 / (1 + p a)
    tail = t * _AS_A[4]  # Horner: ((((a5 t + a4) t + a3) t + a2) t + a1) t
    for c in _AS_A[3::-1]:
        tail += c
        tail *= t
    gauss = np.square(x, out=t)  # t is spent: reuse its memory
    gauss *= -0.5
    np.exp(gauss, out=gauss)  # exp(-x^2/2) = exp(-a^2)
    tail *= gauss
    tail *= 0.5  # Phi(-|x|) = (1 - erf(a)) / 2
    # Phi(x) = 1/2 + sign(x) (1/2 - Phi(-|x|)), in place: no temporaries
    cdf = np.subtract(0.5, tail, out=tail)
    np.copysign(cdf, x, out=cdf)
    cdf += 0.5
    return cdf, gauss


def gelu(x: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Exact GELU, ``x * Phi(x)``."""
    if x.dtype == np.float32:
        cdf, gauss = normal_cdf32(x)
    else:
        cdf = (0.5 * (1.0 + erf(x * _INV_SQRT_2))).astype(x.dtype, copy=False)
        gauss = np.exp(-0.5 * (x * x))
    return x * cdf, (x, cdf, gauss)


def gelu_backward(dy: np.ndarray, cache: tuple) -> np.ndarray:
    x, cdf, gauss = cache
    d = x * gauss
    d *= _INV_SQRT_2PI  # x * phi(x)
    d += cdf
    d *= dy
    return d


def gelu_tanh(x: np.ndarray) -> tuple[np.ndarray, tuple]:
    """GPT-2's GELU (``gelu_new``): the tanh approximation."""
    x2 = x * x
    inner = x2 * 0.044715
    inner += 1.0
    inner *= x
    inner *= _SQRT_2_OVER_PI
    t = np.tanh(inner, out=inner)
    y = t + 1.0
    y *= x
    y *= 0.5
    return y, (x, x2, t)


def gelu_tanh_backward(dy: np.ndarray, cache: tuple) -> np.ndarray:
    x, x2, t = cache
    d_inner = x2 * (3 * 0.044715 * _SQRT_2_OVER_PI)
    d_inner += _SQRT_2_OVER_PI  # d inner / dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    sech2 = 1.0 - t * t
    d = sech2 * d_inner
    d *= x
    d += 1.0 + t
    d *= 0.5
    d *= dy
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
