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
``2W`` slots in order, as word2vec.c walks a window, each slot for all ``B`` centres at once.
The differences from word2vec.c that remain:

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

**The walk without the vectors.** For one centre, with ``o_k`` its ``1 + K`` target vectors
as the batch found them, ``x_i`` the neighbour in slot ``i`` and ``g_{i,k}`` that pair's
coefficient ``alpha (label_k - sigma(s_{i,k}))``, the targets after the slots before ``i``
are ``o_k + sum_{i' < i} g_{i',k} x_{i'}``. So slot ``i``'s scores are

    s_{i,k} = o_k . x_i + sum_{i' < i} g_{i',k} (x_{i'} . x_i)

and need only two tables of dot products fixed before the walk: every target against every
neighbour (``o_k . x_i``) and the neighbours against each other (``x_{i'} . x_i``). The walk
itself then touches ``(B, 1 + K)`` numbers per slot instead of ``(B, 1 + K, D)`` vectors.
After it, with ``g`` known:

- the targets' summed step is ``sum_i g_{i,k} x_i``;
- neighbour ``i``'s step is ``sum_k g_{i,k} (o_k + sum_{i' < i} g_{i',k} x_{i'})``
  = ``sum_k g_{i,k} o_k + sum_{i' < i} (g_i . g_{i'}) x_{i'}``.

This is the same arithmetic regrouped (equal in exact arithmetic; in float32 the sums are
rounded in another order). All four products run as matrix products over **chunks** of
``c`` consecutive centres whose windows lie in ``c + 2W`` halo rows: one chunk's targets
(``c (1 + K)`` rows) against its halo rows, its halo against itself, and back. Each product
computes some pairs no window holds (a target of centre ``j`` against a halo row outside
``j``'s window); their coefficients are zero and the batched products are still faster than
``2W`` rounds of ``B`` tiny ones. Strided views address the window band of each chunk's
product: the walk copies the tables out of it (slot by slot, for contiguous rows) and the
coefficients back into it.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .loss import softplus
from .windows import Workspace, scatter_add_rows

CHUNK_CENTRES = 10  # centres per chunk of the block products, at least 2W (see SlotBuffers)


class SlotBuffers:
    """``sg_step``'s buffers and fixed views, for up to ``n`` chunks of ``c`` centres.

    Rows past a batch's centres stay zero (their coefficients are zero, so they add
    nothing); a shorter batch uses the first ``ceil(B / c)`` chunks of every buffer.
    """

    def __init__(self, centres: int, window: int, negative: int, dim: int, dtype):
        W, K1, D = window, 1 + negative, dim
        S = 2 * W + 1
        c = max(CHUNK_CENTRES, 2 * W)  # the halo tails of consecutive chunks must not overlap
        n = -(-centres // c)
        Lc = c + 2 * W  # halo rows of one chunk
        self.c, self.n, self.Lc, self.window, self.negative = c, n, Lc, W, negative
        e = np.dtype(dtype).itemsize
        self.block = np.zeros((n * c + 2 * W, D), dtype)  # the halo's input vectors
        self.halos = as_strided(  # (n, Lc, D): chunk j's halo rows j c .. j c + Lc
            self.block, (n, Lc, D), (c * D * e, D * e, e), writeable=False
        )
        self.start = np.zeros((n * c, K1, D), dtype)  # the targets as the batch found them
        # (n, c K1, Lc): chunk targets . chunk halo; band [j, r, i, k] = row r k, column r + i
        self.prod = np.empty((n, c * K1, Lc), dtype)
        self.coef_band = np.zeros((n, c * K1, Lc), dtype)  # g in the same band; zero outside
        band = (n, c, S, K1), (c * K1 * Lc * e, (K1 * Lc + 1) * e, e, Lc * e)
        self.prod_band = as_strided(self.prod, *band, writeable=False)
        self.coef_band_view = as_strided(self.coef_band, *band)
        # (n, Lc, Lc): chunk halo . chunk halo; band [j, r, i, i'] = row r + i, column r + i'
        self.gram = np.empty((n, Lc, Lc), dtype)
        self.gram_band = as_strided(
            self.gram, (n, c, S, S), (Lc * Lc * e, (Lc + 1) * e, Lc * e, e), writeable=False
        )
        # (n, Lc, Lc): sum over the chunk's centres of (g_i . g_i') at (r + i, r + i'), i' < i
        self.pairs_band = np.zeros((n, Lc, Lc), dtype)
        self.before = np.tril(np.ones((Lc, Lc), dtype), -1)  # t' < t
        # slot-major (S, ..., centres): what the walk reads and writes per slot is contiguous,
        # the centres innermost (NumPy's inner loops are long)
        self.scores = np.zeros((S, K1, n * c), dtype)  # every slot's scores / 2, as it saw them
        self.gram_sm = np.empty((S, S, n * c), dtype)
        self.coef = np.zeros((S, K1, n * c), dtype)
        self.counts = np.zeros((S, K1, n * c), dtype)
        self.scaled = np.zeros((S, K1, n * c), dtype)
        self.sign = np.full((K1, 1), -1, dtype)  # +1 true word, -1 noise
        self.sign[0] = 1
        self.minus_2sign = -2 * self.sign  # the loss's -sign s from the walk's s / 2
        self.tmp = np.empty((S, K1, n * c), dtype)
        self.d_out = np.empty((n, c * K1, D), dtype)
        self.d_halo = np.empty((n, Lc, D), dtype)
        self.d_halo2 = np.empty((n, Lc, D), dtype)
        self.d_block = np.zeros((n * c + 2 * W, D), dtype)
        self.d_tails = as_strided(  # (n, 2W, D): rows (j + 1) c .. (j + 1) c + 2W
            self.d_block[c:], (n, 2 * W, D), (c * D * e, D * e, e)
        )

    def fits(self, centres: int, window: int, negative: int, dim: int, dtype) -> bool:
        return (
            self.n * self.c >= centres
            and self.window == window
            and self.negative == negative
            and self.block.shape[1] == dim
            and self.block.dtype == dtype
        )


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
    K1, D = 1 + noise.shape[1], w_in.shape[1]
    ws = Workspace.fit(ws, B, mask, noise, w_in)
    if ws.slots is None or not ws.slots.fits(B, W, K1 - 1, D, w_in.dtype):
        ws.slots = SlotBuffers(B, W, K1 - 1, D, w_in.dtype)
    sb = ws.slots
    c = sb.c
    n = -(-B // c)
    P = n * c  # centres rounded up to whole chunks; the extra ones weigh nothing
    dtype = w_in.dtype.type
    centres = halo[W : W + B]
    targets = ws.rows[: B * K1].reshape(B, K1)
    targets[:, 0] = centres
    targets[:, 1:] = noise
    block = sb.block[: P + 2 * W]
    np.take(w_in, halo, axis=0, out=block[: B + 2 * W], mode="clip")
    block[B + 2 * W :] = 0
    start = sb.start[:P]
    np.take(w_out, targets, axis=0, out=start[:B], mode="clip")
    start[B:] = 0
    halos = sb.halos[:n]
    # the two tables of dot products (module docstring), each one product per chunk
    np.matmul(start.reshape(n, c * K1, D), halos.transpose(0, 2, 1), out=sb.prod[:n])
    np.matmul(halos, halos.transpose(0, 2, 1), out=sb.gram[:n])
    # slot-major copies (slot i's rows contiguous), halved: the walk runs on s / 2
    half = dtype(0.5)
    scores = sb.scores[:, :, :P]  # (S, K1, P)  o_k . x_i / 2, to be corrected
    np.multiply(sb.prod_band[:n].transpose(2, 3, 0, 1), half, out=scores.reshape(S, K1, n, c))
    gram = sb.gram_sm[:, :, :P]  # (S, S, P)  x_i . x_i' / 2
    np.multiply(sb.gram_band[:n].transpose(2, 3, 0, 1), half, out=gram.reshape(S, S, n, c))
    # alpha (label - sigmoid(s)) = alpha (sign - tanh(s / 2)) / 2, where the term counts
    valid = targets != centres[:, None]  # a noise word equal to the centre is skipped
    valid[:, 0] = True
    counts = sb.counts[:, :, :P]  # (S, K1, P)  1: this term counts
    np.multiply(mask.T[:, None, :], valid.T, out=counts[:, :, :B])
    counts[:, :, B:] = 0
    scaled = sb.scaled[:, :, :P]
    np.multiply(counts, dtype(alpha / 2), out=scaled)
    coef, tmp = sb.coef[:, :, :P], sb.tmp[:, :, :P]
    used = mask.any(axis=0).tolist()
    used[W] = False  # the centre slot is never a neighbour
    last = max((i for i in range(S) if used[i]), default=-1)
    for i in range(S):  # the slots in order, as word2vec.c walks a window
        g = coef[i]  # (K1, P)
        if not used[i]:
            g[...] = 0
            continue
        np.tanh(scores[i], out=g)
        np.subtract(sb.sign, g, out=g)
        g *= scaled[i]
        if i < last:  # the later slots' scores see this slot's step on the targets
            m = last - i
            np.multiply(gram[i, i + 1 : last + 1, None, :], g, out=tmp[:m])
            scores[i + 1 : last + 1] += tmp[:m]
    # the targets' summed steps: sum_i g_ik x_i, one product per chunk
    sb.coef_band_view[:n] = coef.reshape(S, K1, n, c).transpose(2, 3, 0, 1)
    coef_band = sb.coef_band[:n]
    d_out = sb.d_out[:n]
    np.matmul(coef_band, halos, out=d_out)
    # the neighbours' steps: sum_k g_ik o_k + sum_{i' < i} (g_i . g_i') x_i', per chunk;
    # in halo rows t = r + i, t' = r + i' the second sum's weights are entry (t, t') of
    # coef_band' coef_band (sum over the chunk's centres r and targets k), where t' < t
    pairs = np.matmul(coef_band.transpose(0, 2, 1), coef_band, out=sb.pairs_band[:n])
    pairs *= sb.before
    d_halo = sb.d_halo[:n]
    np.matmul(coef_band.transpose(0, 2, 1), start.reshape(n, c * K1, D), out=d_halo)
    d_halo += np.matmul(pairs, halos, out=sb.d_halo2[:n])
    # the chunks' halos overlap by 2W rows: add each chunk's tail onto the next one's head
    d_block = sb.d_block[: P + 2 * W]
    d_block[:P] = d_halo[:, :c].reshape(P, D)
    d_block[P:] = 0
    sb.d_tails[:n] += d_halo[:, c:]
    scatter_add_rows(w_in, halo, d_block[: B + 2 * W], ws.index_block[: B + 2 * W])
    n_out = B * K1
    scatter_add_rows(w_out, targets.reshape(-1), d_out.reshape(P * K1, D)[:n_out],
                     ws.index_out[:n_out])  # fmt: skip
    # every pair's loss at the vectors it saw: log(1 + exp(-sign s)), where it counts
    z = np.multiply(scores, sb.minus_2sign, out=tmp)  # -sign s
    return float(np.vdot(softplus(z, out=z), counts))
