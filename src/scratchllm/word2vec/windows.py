"""Windows in position space: the pieces both trainers share.

word2vec.c walks the corpus one centre word at a time. Here a *batch* of ``B`` consecutive
centre positions is handled at once. Their neighbours all lie in one slice of the corpus,
the *halo*: ``W`` positions before the first centre, the centres, ``W`` after the last
(the epoch's token stream is padded with ``W`` dummy tokens at each end, so every halo has
``L = B + 2W`` positions). Each halo position's vector is gathered once; the ``S = 2W + 1``
positions around centre ``j`` are rows ``j .. j + 2W`` of the gathered block, which
``window_view`` exposes as a ``(B, S, D)`` strided view without copying.

Gradients flow back the same way. Halo row ``t`` is slot ``i = t - j`` of centre ``j``, so
its step is the sum over the centres whose window holds it. ``spread`` writes that sum
plainly, as ``S`` shifted slice additions of a ``(B, S, D)`` gradient (the reference).
``spread_products`` gets the same sum without ever forming that gradient: when slot
``(j, i)``'s step is ``sum_k C[j, i, k] * V[j, k]`` (CBOW: ``C`` the mask, ``V`` the step
for ``h``, ``m = 1``), then
row ``t`` is one dot product of the ``S x m`` coefficients ``C[t - i, i, :]`` along a
diagonal with the ``S x m`` vectors ``V[t - i, :]``; with ``C`` and ``V`` padded by ``2W``
zero centres on each side both are strided *views*, and one batched matrix product does all
``L`` rows. ``scatter_add_rows`` then adds the block into the matrix once per position.

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
from numpy.lib.stride_tricks import as_strided, sliding_window_view


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
    L, D = block.shape
    S = 2 * window + 1
    row = block.strides[0]
    return as_strided(block, (L - S + 1, S, D), (row, row, block.strides[1]), writeable=False)


def spread(d_window: np.ndarray, window: int, out: np.ndarray | None = None) -> np.ndarray:
    """The (B + 2W, D) halo gradient from a (B, 2W + 1, D) window gradient (``window_view``'s
    adjoint): slot i of centre j lands on halo row j + i. The plain reference for
    ``spread_products``; ``out`` is filled if given."""
    B, S, D = d_window.shape
    if out is None:
        out = np.empty((B + S - 1, D), dtype=d_window.dtype)
    out[...] = 0
    for i in range(S):
        if i != window:  # the centre slot is never a neighbour
            out[i : i + B] += d_window[:, i]
    return out


def spread_views(coef_pad: np.ndarray, vec_pad: np.ndarray, window: int):
    """``spread_products``' two strided views of its padded buffers, for as many centres as
    the buffers hold (``as_strided`` costs ~6 us a call, so a ``Workspace`` makes them once
    and a batch slices them)."""
    P, S, m = coef_pad.shape
    D = vec_pad.shape[2]
    L = P - 2 * window  # the most centres, plus 2W
    c = coef_pad.reshape(-1)
    step = c.itemsize
    # diag[t, i', k] = C_pad[t + i', 2W - i', k]: the coefficients of the centres whose
    # slot 2W - i' is row t (i' runs over the window backwards), as a view
    diag = as_strided(
        c[2 * window * m :], (L, S, m), (S * m * step, (S - 1) * m * step, step), writeable=False
    )
    v = vec_pad.reshape(-1)
    vstep = v.itemsize
    # vecs[t, i' m + k] = V_pad[t + i', k]: the same centres' vectors, also a view
    vecs = as_strided(v, (L, S * m, D), (m * D * vstep, D * vstep, vstep), writeable=False)
    return diag, vecs


def spread_products(
    coef_pad: np.ndarray,
    vec_pad: np.ndarray,
    centres: int,
    window: int,
    out: np.ndarray,
    views: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """``spread`` of the window gradient ``d[j, i] = sum_k C[j, i, k] V[j, k]``, in one product.

    ``coef_pad`` (P, S, m) and ``vec_pad`` (P, m, D) hold ``C`` and ``V`` for the
    ``centres`` centres in rows ``2W .. 2W + centres``; rows ``0 .. 2W`` and the ``2W`` rows
    after the centres must be zero in ``coef_pad`` and finite in ``vec_pad``. ``out`` is a
    (centres + 2W, D) buffer; it is filled and returned. ``views`` are ``spread_views`` of
    the two buffers, if made already.
    """
    _, S, m = coef_pad.shape
    L = centres + 2 * window
    diag, vecs = views if views is not None else spread_views(coef_pad, vec_pad, window)
    rows = np.ascontiguousarray(diag[:L]).reshape(L, 1, S * m)  # (L, 1, S m): small
    np.matmul(rows, vecs[:L], out=out[:, None, :])  # (L, 1, D)
    return out


def scatter_add_rows(
    matrix: np.ndarray, rows: np.ndarray, values: np.ndarray, index: np.ndarray | None = None
) -> None:
    """``matrix[rows[i]] += values[i]`` for every i, repeated rows accumulating.

    ``np.add.at`` on the flat 1-D view: NumPy's fast path for unbuffered addition (on a 2-D
    matrix ``np.add.at`` takes a generic path several times slower). Its cost is per element
    (the flat positions, 8 bytes each, are built and read), so a float matrix with an even
    number of columns is viewed as complex numbers of the same precision, two columns each:
    complex addition adds the real and the imaginary parts separately, the very float
    additions, and there are half as many positions (1.3x-2.4x faster here). ``index`` is an
    optional (len(rows), D) intp buffer for the flat positions.
    """
    D = matrix.shape[1]
    pair = {np.dtype(np.float32): np.complex64, np.dtype(np.float64): np.complex128}
    if D % 2 == 0 and matrix.dtype in pair and matrix.flags.c_contiguous:
        kind = pair[matrix.dtype]
        values = np.ascontiguousarray(values, dtype=matrix.dtype).view(kind)
        matrix = matrix.view(kind)
        D //= 2
    if index is None:
        index = np.empty((len(rows), D), dtype=np.intp)
    index = index.reshape(-1)[: len(rows) * D].reshape(len(rows), D)
    np.add((rows.astype(np.intp) * D)[:, None], np.arange(D), out=index)
    np.add.at(matrix.reshape(-1), index.reshape(-1), values.reshape(-1))


class Workspace:
    """Buffers for one batch of up to ``centres`` centres, reused batch after batch.

    A step allocates nothing larger than its (B, 2W + 1, 1 + K) scores. Fresh arrays of a
    few MB per step would cost more than the arithmetic: the allocator hands such blocks
    back to the operating system when freed, and every page of the next one faults in anew.
    The padded buffers (for ``spread_products``) start at zero and keep their pads zero.
    """

    def __init__(
        self,
        centres: int,
        window: int,
        negative: int,
        dim: int,
        dtype=np.float32,
        group: int = 1,
    ):
        B, W, K, G = centres, window, negative, group
        L, S, P = B + 2 * W, 2 * W + 1, B + 4 * W
        Bg = -(-B // G) * G  # CBOW: centres rounded up to whole noise groups
        n_rows = max(B * (1 + K), B + Bg // G * K)  # output rows a step updates, at most
        self.centres, self.window, self.group, self.dtype = B, W, G, np.dtype(dtype)
        self.block = np.empty((L, dim), dtype)  # the halo's input vectors
        self.d_block = np.empty((L, dim), dtype)  # their steps
        self.negative, self.dim = K, dim
        self.slots = None  # skip-gram's buffers (skipgram.SlotBuffers), made on first use
        # CBOW: the context sum (or mean) and its step, the output rows and their steps
        self.h = np.empty((Bg, dim), dtype)
        self.h_work = np.empty((Bg, dim), dtype)
        self.work_pad = np.zeros((P, 1, dim), dtype)  # padded, for spread_products
        self.mask_pad = np.zeros((P, S, 1), dtype)
        self.windows = window_view(self.block, W)  # (B, S, D)  made once: see spread_views
        self.spread_views = spread_views(self.mask_pad, self.work_pad, W)
        self.rows = np.empty(n_rows, np.intp)
        self.out_rows = np.empty((n_rows, dim), dtype)
        self.d_out_rows = np.empty((n_rows, dim), dtype)
        self.index_block = np.empty((L, dim), np.intp)
        self.index_out = np.empty((n_rows, dim), np.intp)

    def centre_rows(self, padded: np.ndarray, n: int) -> np.ndarray:
        """Rows 2W .. 2W + n of a padded buffer (the batch's centres), after zeroing the 2W
        rows that follow them (a short last batch must not see the previous batch there)."""
        W2 = 2 * self.window
        padded[W2 + n : W2 + n + W2] = 0
        return padded[W2 : W2 + n]

    @classmethod
    def fit(
        cls, ws: Workspace | None, centres: int, mask: np.ndarray, noise, w_in, group: int = 1
    ) -> Workspace:
        """``ws`` if it fits a batch of this shape and dtype, else a new one."""
        window = (mask.shape[1] - 1) // 2
        if (
            ws is None
            or ws.centres < centres
            or ws.window != window
            or ws.group != group
            or (ws.negative, ws.dim) != (noise.shape[1], w_in.shape[1])
            or ws.dtype != w_in.dtype
        ):
            return cls(centres, window, noise.shape[1], w_in.shape[1], w_in.dtype, group)
        return ws
