"""One batched CBOW step with negative sampling.

The centre's neighbours' input vectors are summed (``cbow_mean=1``: averaged) into ``h``,
which scores the centre's output vector (label 1) and ``negative`` noise words' (label 0).
The step ``work = sum_j g_j o_j`` for ``h`` is then added to *every* neighbour's input
vector, as word2vec.c and gensim do: with the mean this is ``count`` times the exact
gradient of the loss for each neighbour (the exact one would divide by ``count``); with
the sum gensim divides ``work`` by ``count``, and so do we.

Two differences from word2vec.c, as in ``skipgram.py``: updates are batched (every gradient
of the batch at the same parameters, summed and applied at the end), and **``group``
centres share one draw of noise words** (word2vec.c draws per centre). Each centre still
sees ``negative`` independent draws from the noise distribution. The centres sharing a draw
lie far apart in the batch (centre ``j`` uses row ``j % n`` of ``n = ceil(B / group)``):
sharing among *neighbouring* centres, whose contexts nearly coincide, pushes each noise
vector away from ``group`` almost equal ``h`` at once, and on the Wikipedia benchmark that
cost a tenth of the neighbour agreement with gensim; spread apart it costs nothing
measurable. The saving is where the time goes: per centre, the output-side work (gathering,
scoring and scatter-adding ``1 + negative`` output vectors through ``np.add.at``) shrinks
to ``1 + negative / group`` vectors. ``group=1`` is word2vec.c's draw.
"""

from __future__ import annotations

import numpy as np

from .loss import coefficients
from .windows import Workspace, scatter_add_rows, spread_products


def cbow_step(
    w_in: np.ndarray,
    w_out: np.ndarray,
    halo: np.ndarray,
    noise: np.ndarray,
    mask: np.ndarray,
    alpha: float,
    cbow_mean: int = 1,
    group: int = 1,
    ws: Workspace | None = None,
) -> float:
    """Update ``w_in``, ``w_out`` (V, D) in place for one batch; return its summed loss.

    Arguments as for ``skipgram.sg_step``, but ``noise`` is (n, K) with ``n = ceil(B / group)``:
    row ``g`` serves centres ``g, g + n, g + 2n, ...`` (far apart, so that the centres sharing
    it have unrelated contexts). A centre with no neighbour (a one-word sentence) trains
    nothing.
    """
    B, S = mask.shape
    W = (S - 1) // 2
    G, K = group, noise.shape[1]
    n_groups = -(-B // G)
    if noise.shape[0] != n_groups:
        raise ValueError(f"{B} centres in groups of {G} need {n_groups} noise rows")
    ws = Workspace.fit(ws, B, mask, noise, w_in, group=G)
    Bg = n_groups * G  # centres rounded up to whole groups; the extra ones weigh nothing
    centres = halo[W : W + B]
    np.take(w_in, halo, axis=0, out=ws.block[: B + 2 * W], mode="clip")  # (B+2W, D)
    x = ws.windows[:B]  # (B, 2W+1, D)  window_view of that block, made once
    count = mask.sum(axis=1)  # (B,)  neighbours of each centre
    per = np.maximum(count, 1)[:, None]  # (B, 1)
    h = ws.h[:Bg]
    h[B:] = 0
    np.matmul(mask[:, None, :], x, out=h[:B, None, :])  # (B, D)  sum of the neighbours
    if cbow_mean:
        h[:B] /= per
    # the output rows: each centre's own word, then each group's noise words
    rows = ws.rows[: B + n_groups * K]
    rows[:B] = centres
    rows[B:] = noise.reshape(-1)
    out = np.take(w_out, rows, axis=0, out=ws.out_rows[: len(rows)], mode="clip")  # (B+gK, D)
    out_pos, out_neg = out[:B], out[B:].reshape(n_groups, K, -1)  # (B, D), (g, K, D)
    # centre j belongs to group j % n_groups: members of a group lie n_groups apart
    hg = h.reshape(G, n_groups, -1).transpose(1, 0, 2)  # (g, G, D)  view
    s = np.empty((Bg, 1 + K), dtype=w_in.dtype)  # (Bg, 1+K)  column 0: the centre's word
    s[B:, 0] = 0
    np.einsum("bd,bd->b", h[:B], out_pos, out=s[:B, 0])
    s_neg = s[:, 1:].reshape(G, n_groups, K).transpose(1, 0, 2)  # (g, G, K)  view
    np.matmul(hg, out_neg.transpose(0, 2, 1), out=s_neg)
    weight = np.zeros((Bg, 1 + K), dtype=w_in.dtype)
    weight[:B] = (count > 0)[:, None]
    own = noise[np.arange(B) % n_groups]  # (B, K)  each centre's noise words
    weight[:B, 1:] *= own != centres[:, None]  # a noise word equal to the centre is skipped
    coef, loss = coefficients(s, weight)
    coef *= w_in.dtype.type(alpha)
    coef_pos = coef[:B, 0]
    coef_neg = coef[:, 1:].reshape(G, n_groups, K).transpose(1, 0, 2)  # (g, G, K)  view
    work = ws.centre_rows(ws.work_pad, B)[:, 0]  # (B, D)  the step for h
    h_work = ws.h_work[:Bg]
    np.matmul(coef_neg, out_neg, out=h_work.reshape(G, n_groups, -1).transpose(1, 0, 2))
    np.multiply(out_pos, coef_pos[:, None], out=work)
    work += h_work[:B]
    if not cbow_mean:
        work /= per
    d_out = ws.d_out_rows[: len(rows)]  # (B+gK, D)  the output rows' steps
    np.multiply(h[:B], coef_pos[:, None], out=d_out[:B])
    np.matmul(coef_neg.transpose(0, 2, 1), hg, out=d_out[B:].reshape(n_groups, K, -1))
    # every neighbour gets the whole step: neighbour slot i of centre j is halo row j + i
    ws.centre_rows(ws.mask_pad, B)[:, :, 0] = mask
    d_block = spread_products(
        ws.mask_pad, ws.work_pad, B, W, ws.d_block[: B + 2 * W], ws.spread_views
    )
    scatter_add_rows(w_in, halo, d_block, ws.index_block[: B + 2 * W])
    scatter_add_rows(w_out, rows, d_out, ws.index_out[: len(rows)])
    return float(loss.sum())
