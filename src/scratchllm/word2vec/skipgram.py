"""One batched skip-gram step with negative sampling.

As in word2vec.c and gensim, the *context* word's input vector predicts the *centre* word:
for centre ``c`` and each neighbour ``x`` in its window, the input is ``W_in[x]`` and the
targets are ``W_out[c]`` (label 1) and the noise words' ``W_out[n_k]`` (label 0).

All pairs of one window share their targets' output vectors: the centre's, and (here) its
noise words'. word2vec.c trains the pairs one after another, so each pair sees those
vectors as the previous pairs left them; taking all of a window's pairs at the same
vectors instead sums ``2r`` *similar* pulls on the centre's output vector without the
sigmoid's saturation between them, and measurably inflates the output vectors (on the
Wikipedia benchmark: mean norm 1.96 against gensim's 1.66, and neighbour lists further
from gensim's than gensim's seeds are from each other). So the step walks the window's
``2W`` slots in order, as word2vec.c walks a window, each slot for all ``B`` centres at once,
updating the ``(B, 1+K, D)`` block of target vectors between slots. The differences from
word2vec.c that remain:

- **One noise draw per window** (Ji et al. 2016, "Parallelizing Word2Vec in Shared and
  Distributed Memory"): the ``negative`` noise words drawn for a centre serve all its
  neighbours, so the target block is gathered and scattered once per window, not per pair.
  Each pair still sees ``negative`` independent draws from the noise distribution; only the
  pairs of one window share theirs.
- **Batched updates across centres**: the ``B`` centres of a batch are taken at the same
  parameters and their steps summed. gensim's multi-worker training is already "Hogwild"
  (threads update shared vectors without locks, so one thread's step can be computed from
  vectors another thread is changing); this is its deterministic cousin. The two agree to
  first order in the learning rate; the trainer keeps batches small enough that the busiest
  vector's summed step stays in that regime (``trainer.batch_centres``).
"""

from __future__ import annotations

import numpy as np

from .windows import Workspace, scatter_add_rows, window_view


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
    dtype = w_in.dtype.type
    centres = halo[W : W + B]
    targets = np.concatenate([centres[:, None], noise], axis=1)  # (B, 1+K)
    # each halo position's input vector, gathered once
    block = np.take(w_in, halo, axis=0, out=ws.block[: B + 2 * W], mode="clip")  # (B+2W, D)
    x = window_view(block, W)  # (B, 2W+1, D)  view: slot i of centre j is block[j + i]
    out = np.take(w_out, targets, axis=0, out=ws.out[:B], mode="clip")  # (B, 1+K, D)
    start = ws.out_start[:B]
    start[...] = out  # the target vectors as the batch found them
    valid = targets != centres[:, None]  # a noise word equal to the centre is skipped
    valid[:, 0] = True
    counts = mask[:, :, None] * valid[:, None, :]  # (B, 2W+1, 1+K)  1: this term counts
    scaled = counts * dtype(alpha / 2)  # coefficients() below, with alpha folded in
    sign = np.full(targets.shape[1], -1, dtype=w_in.dtype)  # +1 true word, -1 noise
    sign[0] = 1
    scores = ws.scores[:, :B]  # (2W+1, B, 1+K)  every slot's scores, kept for the loss
    d_block = ws.d_block[: B + 2 * W]
    d_block[...] = 0
    tmp = ws.tmp_out[:B]
    for i in range(S):  # the slots in order, as word2vec.c walks a window
        if i == W or not mask[:, i].any():
            continue
        xi = x[:, i]  # (B, D)  each centre's neighbour in slot i
        s = np.matmul(out, xi[:, :, None], out=scores[i, :, :, None])[:, :, 0]  # (B, 1+K)
        coef = np.tanh(s * dtype(0.5))  # alpha * (label - sigmoid(s)) = alpha (sign - t) / 2
        np.subtract(sign, coef, out=coef)
        coef *= scaled[:, i]
        # the neighbour's step (applied after the batch), then the targets' (applied now)
        d_block[i : i + B] += np.matmul(coef[:, None, :], out)[:, 0]
        out += np.einsum("bk,bd->bkd", coef, xi, out=tmp)  # (a broadcast multiply: 4x slower)
    out -= start  # the target vectors' summed steps
    scatter_add_rows(w_in, halo, d_block, ws.index_block[: B + 2 * W])
    scatter_add_rows(w_out, targets.reshape(-1), out, ws.index_out[: B * targets.shape[1]])
    # every pair's loss at the vectors it saw: log(1 + exp(-sign s)), where it counts
    loss = np.logaddexp(0, scores * -sign)  # (2W+1, B, 1+K)
    return float(np.einsum("sbk,bsk->", loss, counts))
