"""Attention masks: which keys each query may look at.

Two rules, combined by "and":

* **look-ahead** (causal): a token may not see the tokens after it, or predicting the
  next token would be copying it. Query ``i`` sees keys ``0..i``::

      look_ahead_mask(4)        key  0 1 2 3
                                q0   1 0 0 0
                                q1   1 1 0 0
                                q2   1 1 1 0
                                q3   1 1 1 1

* **padding**: rows of unequal length share a batch by padding the short ones; no query
  may look at a padding key. A padded row's positions count its real tokens only, so
  a left-padded prompt gives the logits of the prompt alone.

Masks are boolean, True where a query may look (the PyTorch GPT's convention, shaped
``[B or 1, 1, T_q, T_k]`` so they broadcast over heads). ``attention_bias`` turns one
into the ``0 / -inf`` array added to the attention scores: ``exp(-inf) = 0``, so a masked
key gets weight exactly 0 after the softmax.
"""

from __future__ import annotations

import numpy as np


def look_ahead_mask(n_query: int, n_key: int | None = None) -> np.ndarray:
    """``[n_query, n_key]`` bool: the queries are the last ``n_query`` of ``n_key``
    positions (a decoder with a cache has ``n_key - n_query`` tokens before them).

    >>> look_ahead_mask(2, 3).astype(int).tolist()  # two new queries after one cached key
    [[1, 1, 0], [1, 1, 1]]
    """
    n_key = n_query if n_key is None else n_key
    q = np.arange(n_key - n_query, n_key)[:, None]  # (Tq, 1) the queries' positions
    return np.arange(n_key)[None, :] <= q  # (Tq, Tk)


def padding_mask(attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mask [B, 1, T, T], positions [B, T])`` for ``attention_mask [B, T]`` (False = padding).

    A query sees the real keys at or before it, and always its own slot: a padding query
    with no real key before it would otherwise see nothing (a softmax over nothing is
    NaN). Its output is never used. ``positions`` counts the real tokens before each one.

    >>> mask, pos = padding_mask(np.array([[False, True, True]]))  # one left pad
    >>> mask[0, 0].astype(int).tolist(), pos.tolist()
    ([[1, 0, 0], [0, 1, 0], [0, 1, 1]], [[0, 0, 1]])
    """
    real = np.asarray(attention_mask).astype(bool)  # (B, T)
    T = real.shape[1]
    causal = look_ahead_mask(T)  # (T, T)
    mask = (real[:, None, None, :] & causal) | np.eye(T, dtype=bool)  # (B, 1, T, T)
    positions = np.maximum(np.cumsum(real, axis=1) - 1, 0)  # (B, T)
    return mask, positions


def attention_bias(mask: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``0`` where ``mask`` is True, ``-inf`` where False, in ``dtype``: added to the scores."""
    bias = np.zeros(mask.shape, dtype=dtype)
    bias[~mask] = -np.inf
    return bias
