"""One batched CBOW step with negative sampling.

The centre's neighbours' input vectors are summed (``cbow_mean=1``: averaged) into ``h``,
which scores the centre's output vector (label 1) and ``negative`` noise words' (label 0),
drawn per centre as word2vec.c does. The step ``work = sum_j g_j o_j`` for ``h`` is then
added to *every* neighbour's input vector, as word2vec.c and gensim do: with the mean this
is ``count`` times the exact gradient of the loss for each neighbour (the exact one would
divide by ``count``); with the sum gensim divides ``work`` by ``count``, and so do we.

Updates are batched (every gradient of the batch at the same parameters, summed and
applied at the end); ``skipgram.py`` says why that is safe.
"""

from __future__ import annotations

import numpy as np

from .loss import coefficients
from .windows import Workspace, scatter_add_rows, spread_products, window_view


def cbow_step(
    w_in: np.ndarray,
    w_out: np.ndarray,
    halo: np.ndarray,
    noise: np.ndarray,
    mask: np.ndarray,
    alpha: float,
    cbow_mean: int = 1,
    ws: Workspace | None = None,
) -> float:
    """Update ``w_in``, ``w_out`` (V, D) in place for one batch; return its summed loss.

    Arguments as for ``skipgram.sg_step``. A centre with no neighbour (a one-word sentence)
    trains nothing.
    """
    B, S = mask.shape
    W = (S - 1) // 2
    ws = Workspace.fit(ws, B, mask, noise, w_in)
    centres = halo[W : W + B]
    targets = np.concatenate([centres[:, None], noise], axis=1)  # (B, 1+K)
    block = np.take(w_in, halo, axis=0, out=ws.block[: B + 2 * W], mode="clip")  # (B+2W, D)
    x = window_view(block, W)  # (B, 2W+1, D)
    count = mask.sum(axis=1)  # (B,)  neighbours of each centre
    per = np.maximum(count, 1)[:, None]  # (B, 1)
    h = ws.h[:B]
    np.matmul(mask[:, None, :], x, out=h[:, None, :])  # (B, D)  sum of the neighbours
    if cbow_mean:
        h /= per
    out = np.take(w_out, targets, axis=0, out=ws.out_pad[:B], mode="clip")  # (B, 1+K, D)
    s = np.matmul(out, h[:, :, None])[:, :, 0]  # (B, 1+K)
    valid = targets != centres[:, None]
    valid[:, 0] = True
    weight = valid * (count > 0)[:, None].astype(mask.dtype)
    coef, loss = coefficients(s, weight)
    coef *= w_in.dtype.type(alpha)
    work = ws.centre_rows(ws.work_pad, B)[:, 0]  # (B, D)
    np.matmul(coef[:, None, :], out, out=work[:, None, :])  # the step for h
    if not cbow_mean:
        work /= per
    d_out = np.multiply(coef[:, :, None], h[:, None, :], out=ws.d_out[:B])  # (B, 1+K, D)
    # every neighbour gets the whole step: neighbour slot i of centre j is halo row j + i
    ws.centre_rows(ws.mask_pad, B)[:, :, 0] = mask
    d_block = spread_products(ws.mask_pad, ws.work_pad, B, W, ws.d_block[: B + 2 * W])
    scatter_add_rows(w_in, halo, d_block, ws.index_block[: B + 2 * W])
    scatter_add_rows(w_out, targets.reshape(-1), d_out, ws.index_out[: B * targets.shape[1]])
    return float(loss.sum())
