r"""The negative-sampling loss (Mikolov et al. 2013, eq. 4) and its gradient.

An input vector :math:`x` (a context word's in skip-gram, the context average in CBOW)
scores its true word's output vector :math:`o_0` and ``negative`` noise words'
:math:`o_1 \dots o_K` with dot products :math:`s_j = x \cdot o_j`. The loss is

.. math:: L = -\log\sigma(s_0) - \sum_{k=1}^{K} \log\sigma(-s_k)

and with labels :math:`l_0 = 1, l_k = 0` its gradients are

.. math:: \partial L / \partial s_j = \sigma(s_j) - l_j, \qquad
          \partial L / \partial x = \sum_j (\sigma(s_j) - l_j)\, o_j, \qquad
          \partial L / \partial o_j = (\sigma(s_j) - l_j)\, x .

word2vec.c's ``g = (label - f) * alpha`` is :math:`-\alpha\,\partial L/\partial s_j`: one SGD
step adds ``g * o_j`` to :math:`x` and ``g * x`` to :math:`o_j`. CBOW gets its coefficients
from ``coefficients`` below and skip-gram inlines the same two lines in its per-slot loop;
``loss_and_grads`` is the maths written out per example, checked by finite differences, and
the steps' tests hold both trainers to it.
"""

from __future__ import annotations

import numpy as np


def sigmoid(s: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-s)), through tanh so that no input overflows (float32 stays float32)."""
    return 0.5 * np.tanh(0.5 * s) + 0.5


def softplus(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)), stable for any z (exp never
    overflows) and ~10x faster than ``np.logaddexp(0, z)``; ``out`` (not ``z``) if given."""
    e = np.abs(z)
    out = np.maximum(z, 0, out=out)
    np.negative(e, out=e)
    np.exp(e, out=e)
    np.log1p(e, out=e)
    out += e
    return out


def coefficients(s: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(-dL/ds, L) for scores ``s`` (..., 1 + K) whose column 0 is the true word.

    ``weight`` (broadcast against ``s``) is 1 for a term that counts and 0 for one that does
    not: a padded window slot, or a noise word that happens to equal the true word (which
    gensim and word2vec.c skip). The loss is per term, summed by the caller.

    With ``sign`` +1 for the true word and -1 for noise, ``t = tanh(s / 2)``:
    ``-dL/ds = label - sigma(s) = (sign - t) / 2`` and ``L = log(1 + exp(-sign s))``.
    """
    sign = np.full(s.shape[-1], -1, dtype=s.dtype)
    sign[0] = 1
    t = np.tanh(s * s.dtype.type(0.5))
    coef = np.subtract(sign, t, out=t)
    coef *= weight * s.dtype.type(0.5)
    loss = softplus(s * -sign)  # -log sigma(sign s), stable for any score
    loss *= weight
    return coef, loss


def loss_and_grads(
    x: np.ndarray, out: np.ndarray, weight: np.ndarray | None = None
) -> tuple[float, np.ndarray, np.ndarray]:
    """Summed loss and its gradients for inputs ``x`` (P, D) and output vectors
    ``out`` (P, 1 + K, D) (true word first). Returns (L, dL/dx (P, D), dL/dout (P, 1 + K, D)).

    >>> x = np.zeros((1, 2)); out = np.zeros((1, 3, 2))      # all scores 0: sigma = 1/2
    >>> loss, dx, dout = loss_and_grads(x, out)
    >>> round(loss, 4)                                       # 3 terms of log 2
    2.0794
    """
    s = np.einsum("pd,pjd->pj", x, out)  # (P, 1+K)
    if weight is None:
        weight = np.ones_like(s)
    coef, loss = coefficients(s, weight)
    dx = -np.einsum("pj,pjd->pd", coef, out)
    dout = -coef[:, :, None] * x[:, None, :]
    return float(loss.sum()), dx, dout
