"""One batched skip-gram step with negative sampling.

As in word2vec.c and gensim, the *context* word's input vector predicts the *centre* word:
for centre ``c`` and each neighbour ``x`` in its window, the input is ``W_in[x]`` and the
targets are ``W_out[c]`` (label 1) and the noise words' ``W_out[n_k]`` (label 0).

The step differs from word2vec.c's in two ways, both to turn its ~10^7 tiny vector updates
into a few hundred NumPy calls per epoch:

- **One noise draw per window** (Ji et al. 2016, "Parallelizing Word2Vec in Shared and
  Distributed Memory"): the ``negative`` noise words drawn for a centre serve all its
  neighbours, so a window's scores are one small matrix product
  ``(2W+1, D) @ (D, 1+K)`` instead of ``2r`` separate sets of dot products. Each pair still
  sees ``negative`` independent draws from the noise distribution; what is lost is only
  independence *between* the pairs of one window.
- **Batched updates**: every gradient of the batch is taken at the same parameters and
  the sum is applied at the end (word2vec.c applies each at once). gensim's multi-worker
  training is already "Hogwild" (threads update shared vectors without locks, so one
  thread's step can be computed from vectors another thread is changing); this is its
  deterministic cousin. The two agree to first order in the learning rate; the trainer
  keeps batches small enough that the busiest vector's summed step stays in that regime
  (``trainer.batch_centres``).
"""

from __future__ import annotations

import numpy as np

from .loss import coefficients
from .windows import Workspace, scatter_add_rows, spread_products, window_view


def sg_step(
    w_in: np.ndarray,
    w_out: np.ndarray,
    halo: np.ndarray,
    noise: np.ndarray,
    mask: np.ndarray,
    alpha: float,
    ws: Workspace | None = None,
) -> float:
    """Update ``w_in``, ``w_out`` (V, D) in place for one batch; return its summed loss.

    ``halo`` (B + 2W,) word ids of the batch's halo (centres are ``halo[W:-W]``), ``noise``
    (B, K) noise ids per centre, ``mask`` (B, 2W + 1) from ``window_mask``; ``ws`` holds
    reusable buffers (made if not given).
    """
    B, S = mask.shape
    W = (S - 1) // 2
    ws = Workspace.fit(ws, B, mask, noise, w_in)
    centres = halo[W : W + B]
    targets = np.concatenate([centres[:, None], noise], axis=1)  # (B, 1+K)
    # each halo position's input vector, gathered once
    block = np.take(w_in, halo, axis=0, out=ws.block[: B + 2 * W], mode="clip")  # (B+2W, D)
    x = window_view(block, W)  # (B, 2W+1, D)  view: slot i of centre j is block[j + i]
    out = ws.centre_rows(ws.out_pad, B)
    np.take(w_out, targets, axis=0, out=out, mode="clip")  # (B, 1+K, D)
    s = np.matmul(x, out.transpose(0, 2, 1))  # (B, 2W+1, 1+K)
    valid = targets != centres[:, None]  # a noise word equal to the centre is skipped
    valid[:, 0] = True
    weight = mask[:, :, None] * valid[:, None, :]  # (B, 2W+1, 1+K)
    coef, loss = coefficients(s, weight)
    coef *= w_in.dtype.type(alpha)  # a NumPy scalar of the matrix's dtype: no float64 promotion
    ws.centre_rows(ws.coef_pad, B)[...] = coef
    d_out = np.matmul(coef.transpose(0, 2, 1), x, out=ws.d_out[:B])  # (B, 1+K, D)
    # each neighbour's step is sum_k coef[j, i, k] out[j, k]: summed per halo row directly
    d_block = spread_products(ws.coef_pad, ws.out_pad, B, W, ws.d_block[: B + 2 * W])
    scatter_add_rows(w_in, halo, d_block, ws.index_block[: B + 2 * W])
    scatter_add_rows(w_out, targets.reshape(-1), d_out, ws.index_out[: B * targets.shape[1]])
    return float(loss.sum())
