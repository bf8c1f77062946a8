"""Token embeddings: a lookup table ``wte [V, C]``, one learned vector per token id.

Looking up is indexing (``wte[idx]``). Its gradient sends each position's gradient back
to the row it came from, summing over every position that used the same token::

    dL/dwte[v] = sum over positions i with idx[i] = v of dL/dx[i]

That is a scatter-add. ``np.add.at`` does it one row at a time (slow on 2-D arrays);
``scatter_add_rows`` sorts the ids once and sums each run of equal ids with one
``np.add.reduceat``, a single vectorised pass.
"""

from __future__ import annotations

import numpy as np


def scatter_add_rows(index: np.ndarray, values: np.ndarray, n_rows: int) -> np.ndarray:
    """``out [n_rows, C]`` with ``out[r] = sum of values[i] where index[i] == r``.

    >>> scatter_add_rows(np.array([2, 0, 2]), np.array([[1.0], [2.0], [3.0]]), 3).tolist()
    [[2.0], [0.0], [4.0]]
    """
    index = index.reshape(-1)
    values = values.reshape(index.size, values.shape[-1])  # (N, C)
    out = np.zeros((n_rows, values.shape[1]), dtype=values.dtype)
    if index.size == 0:
        return out
    order = np.argsort(index, kind="stable")
    ids = index[order]
    starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))  # first of each run
    out[ids[starts]] = np.add.reduceat(values[order], starts, axis=0)
    return out
