"""Windows in position space: the pieces both trainers share.

word2vec.c walks the corpus one centre word at a time. Here a *batch* of ``B`` consecutive
centre positions is handled at once. Their neighbours all lie in one slice of the corpus,
the *halo*: ``W`` positions before the first centre, the centres, ``W`` after the last
(the epoch's token stream is padded with ``W`` dummy tokens at each end, so every halo has
``B + 2W`` positions). Each halo position's vector is gathered once; the ``2W + 1``
positions around centre ``j`` are rows ``j .. j + 2W`` of the gathered block, which
``window_view`` exposes as a ``(B, 2W + 1, D)`` strided view without copying. Gradients flow
back the same way: ``spread`` adds row ``j + i`` of the block's gradient from slot ``i`` of
centre ``j``, in ``2W + 1`` shifted slice additions, and ``scatter_add_rows`` adds the block
into the matrix once per position.

``window_mask`` says which slots are real neighbours: not the centre itself, within the
centre's (shrunk) half-width ``r``, and in the same sentence (dummy tokens belong to no
sentence).

>>> sent = np.array([-1, -1, 0, 0, 0, 1, 1, -1, -1])    # W = 2, sentences 0 and 1, padded
>>> window_mask(sent, np.array([2, 1, 2, 2, 1]), 0, 5, window=2).astype(int)
array([[0, 0, 0, 1, 1],
       [0, 1, 0, 1, 0],
       [1, 1, 0, 0, 0],
       [0, 0, 0, 1, 0],
       [0, 1, 0, 0, 0]])
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def window_mask(
    sent_pad: np.ndarray, half: np.ndarray, a: int, b: int, window: int, dtype=np.float32
) -> np.ndarray:
    """(B, 2W + 1) 1/0 mask of the real neighbours of centres ``a..b-1`` (unpadded positions).

    ``sent_pad`` is the padded stream's sentence numbers (dummies -1), ``half`` (n,) each
    position's half-width in 1..W.
    """
    offsets = np.abs(np.arange(-window, window + 1))  # (2W+1,)  |offset| of each slot
    around = sliding_window_view(sent_pad[a : b + 2 * window], 2 * window + 1)  # (B, 2W+1)
    centre = sent_pad[a + window : b + window, None]  # (B, 1)
    inside = (offsets > 0) & (offsets <= half[a:b, None])
    return ((around == centre) & inside).astype(dtype)


def window_view(block: np.ndarray, window: int) -> np.ndarray:
    """(B, 2W + 1, D) read-only view of a (B + 2W, D) halo block: row j is centre j's window."""
    return sliding_window_view(block, 2 * window + 1, axis=0).transpose(0, 2, 1)


def spread(d_window: np.ndarray, window: int) -> np.ndarray:
    """The (B + 2W, D) halo gradient from a (B, 2W + 1, D) window gradient (``window_view``'s
    adjoint): slot i of centre j lands on halo row j + i."""
    B, S, D = d_window.shape
    out = np.zeros((B + S - 1, D), dtype=d_window.dtype)
    for i in range(S):
        if i != window:  # the centre slot is never a neighbour
            out[i : i + B] += d_window[:, i]
    return out


def scatter_add_rows(matrix: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """``matrix[rows[i]] += values[i]`` for every i, repeated rows accumulating.

    ``np.add.at`` on the flat 1-D view: NumPy's fast path for unbuffered addition (on a 2-D
    matrix ``np.add.at`` takes a generic path several times slower).
    """
    D = matrix.shape[1]
    flat = matrix.reshape(-1)  # a view: matrix is C-contiguous
    index = (rows.astype(np.intp)[:, None] * D + np.arange(D)).reshape(-1)
    np.add.at(flat, index, values.reshape(-1))
