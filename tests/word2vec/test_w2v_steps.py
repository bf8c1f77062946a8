"""The negative-sampling gradient by finite differences, and each batched step equal to the
sum of per-example SGD steps written out one example at a time."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import expit

from scratchllm.word2vec.cbow import cbow_step
from scratchllm.word2vec.loss import coefficients, loss_and_grads, sigmoid
from scratchllm.word2vec.skipgram import sg_step
from scratchllm.word2vec.windows import (
    Workspace,
    scatter_add_rows,
    spread,
    spread_products,
    window_mask,
    window_view,
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradients_match_central_finite_differences_in_float64(seed):
    rng = np.random.default_rng(seed)
    P, K, D = 3, 4, 5
    x = rng.normal(size=(P, D))
    out = rng.normal(size=(P, 1 + K, D))
    weight = (rng.random((P, 1 + K)) < 0.8).astype(np.float64)  # some terms switched off
    _, dx, dout = loss_and_grads(x, out, weight)
    eps = 1e-6
    for array, grad in ((x, dx), (out, dout)):
        numeric = np.zeros_like(array)
        for i in np.ndindex(array.shape):
            saved = array[i]
            array[i] = saved + eps
            plus = loss_and_grads(x, out, weight)[0]
            array[i] = saved - eps
            minus = loss_and_grads(x, out, weight)[0]
            array[i] = saved
            numeric[i] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-9)
    assert np.abs(dx).max() > 0.01  # the check is not vacuous


def test_the_loss_is_minus_log_sigmoid_of_the_signed_scores():
    s = np.array([[2.0, -1.0, 0.5]])
    _, loss = coefficients(s, np.ones_like(s))
    expected = -np.log([1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(-1.0)), 1 / (1 + np.exp(0.5))])
    np.testing.assert_allclose(loss[0], expected, rtol=1e-12)


def test_sigmoid_is_stable_and_keeps_float32():
    s = np.concatenate([[-1000.0, 1000.0], np.linspace(-30, 30, 601)]).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning
        y = sigmoid(s)
        coef, loss = coefficients(s[None], np.ones((1, len(s)), np.float32))
    assert y.dtype == np.float32 and coef.dtype == np.float32 and loss.dtype == np.float32
    exact = expit(s.astype(np.float64))
    # absolute error within float32 rounding of values near 1 (gensim's table: ~1e-3)
    np.testing.assert_allclose(y, exact, rtol=0, atol=1.2e-7)
    assert np.isfinite(loss).all() and loss[0, 1] > 999  # -log sigma(-1000) for a noise word


# ---- the windows ------------------------------------------------------------------------


def brute_force_mask(sentence, half, window):
    n = len(sentence)
    mask = np.zeros((n, 2 * window + 1))
    for c in range(n):
        for o in range(-window, window + 1):
            t = c + o
            if o and abs(o) <= half[c] and 0 <= t < n and sentence[t] == sentence[c]:
                mask[c, o + window] = 1
    return mask


@pytest.mark.parametrize("window", [1, 2, 5])
def test_window_mask_matches_a_loop_over_neighbours(window):
    rng = np.random.default_rng(window)
    sentence = np.sort(rng.integers(0, 6, size=40)).astype(np.int32)
    half = rng.integers(1, window + 1, size=40)
    pad = np.full(window, -1, np.int32)
    sent_pad = np.concatenate([pad, sentence, pad])
    expected = brute_force_mask(sentence, half, window)
    for a, b in ((0, 40), (0, 7), (13, 29), (35, 40)):
        np.testing.assert_array_equal(window_mask(sent_pad, half, a, b, window), expected[a:b])


def test_spread_is_the_adjoint_of_window_view():
    rng = np.random.default_rng(0)
    B, W, D = 7, 3, 4
    block = rng.normal(size=(B + 2 * W, D))
    g = rng.normal(size=(B, 2 * W + 1, D))
    g[:, W] = 0  # the centre slot is never a neighbour
    lhs = (window_view(block, W) * g).sum()
    rhs = (block * spread(g, W)).sum()
    assert abs(lhs - rhs) < 1e-12


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dim", [3, 4])  # even: two columns per complex number
def test_scatter_add_rows_accumulates_repeated_rows(dim, dtype):
    rng = np.random.default_rng(dim)
    m = rng.normal(size=(6, dim)).astype(dtype)
    rows = np.array([0, 2, 2, 5, 0, 2])
    vals = rng.normal(size=(6, dim)).astype(dtype)
    expected = m.copy()
    np.add.at(expected, rows, vals)  # NumPy's 2-D scatter-add, in the same order
    scatter_add_rows(m, rows, vals)
    np.testing.assert_array_equal(m, expected)  # the same float additions, bit for bit
    assert m.dtype == dtype


# ---- one step equals the sum of the per-example SGD steps -------------------------------


def tiny_batch(seed, window=2, n=11):
    """A padded stream of two sentences and one batch covering all of it."""
    rng = np.random.default_rng(seed)
    V, D, K = 9, 4, 3
    ids = rng.integers(0, V, size=n).astype(np.int32)
    sentence = (np.arange(n) >= 6).astype(np.int32)  # the first 6 words, then the rest
    half = rng.integers(1, window + 1, size=n)
    pad = np.full(window, -1, np.int32)
    ids_pad = np.concatenate([np.zeros(window, np.int32), ids, np.zeros(window, np.int32)])
    sent_pad = np.concatenate([pad, sentence, pad])
    mask = window_mask(sent_pad, half, 0, n, window, dtype=np.float64)
    noise = rng.integers(0, V, size=(n, K))
    noise[0, 1] = ids[0]  # a noise word equal to its centre: skipped, as word2vec.c does
    w_in = rng.normal(size=(V, D)) * 0.5
    w_out = rng.normal(size=(V, D)) * 0.5
    return ids, ids_pad, mask, noise, w_in, w_out


def per_example_targets(centre, noise_row):
    return [centre] + [int(n) for n in noise_row], [1.0] + [float(n != centre) for n in noise_row]


@pytest.mark.parametrize(
    ("seed", "window", "n"),
    [(0, 2, 11), (1, 2, 11), (2, 1, 30), (3, 6, 40)],  # 1 to 4 chunks, some rows padding
)
def test_skipgram_step_walks_each_window_as_word2vec_c(seed, window, n):
    """Per centre, the window's pairs one after another (each sees the target vectors the
    previous pairs left); the centres of the batch summed, all starting from the same."""
    alpha = 0.05
    ids, ids_pad, mask, noise, w_in, w_out = tiny_batch(seed, window, n)
    d_in, d_out, total = np.zeros_like(w_in), np.zeros_like(w_out), 0.0
    for c in range(len(ids)):
        targets, weight = per_example_targets(ids[c], noise[c])
        out = w_out[targets].copy()  # this window's target vectors, updated pair by pair
        for slot in np.flatnonzero(mask[c]):
            x = ids[c + slot - window]  # the neighbour's input vector predicts the centre
            loss, dx, dout = loss_and_grads(w_in[x][None], out[None], np.array([weight]))
            total += loss
            d_in[x] -= alpha * dx[0]
            out -= alpha * dout[0]
        np.add.at(d_out, targets, out - w_out[targets])
    new_in, new_out = w_in.copy(), w_out.copy()
    got = sg_step(new_in, new_out, ids_pad, noise, mask, alpha)
    np.testing.assert_allclose(new_in - w_in, d_in, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(new_out - w_out, d_out, rtol=1e-10, atol=1e-13)
    assert got == pytest.approx(total, rel=1e-12)
    assert mask.sum() > 10 and np.abs(d_in).max() > 1e-3


@pytest.mark.parametrize("group", [1, 3])
@pytest.mark.parametrize("cbow_mean", [1, 0])
@pytest.mark.parametrize("seed", [0, 1])
def test_cbow_step_is_word2vecs_summed_step(seed, cbow_mean, group):
    window, alpha = 2, 0.05
    ids, ids_pad, mask, noise, w_in, w_out = tiny_batch(seed, window)
    noise = noise[: -(-len(ids) // group)]  # one noise row per group of centres
    d_in, d_out, total = np.zeros_like(w_in), np.zeros_like(w_out), 0.0
    for c in range(len(ids)):
        context = [ids[c + slot - window] for slot in np.flatnonzero(mask[c])]
        if not context:
            continue
        h = w_in[context].sum(axis=0)
        if cbow_mean:
            h /= len(context)
        targets, weight = per_example_targets(ids[c], noise[c % len(noise)])
        loss, dh, dout = loss_and_grads(h[None], w_out[targets][None], np.array([weight]))
        total += loss
        # word2vec.c adds the whole step for h to each context word (gensim: / count if sum)
        step = -alpha * dh[0] / (1 if cbow_mean else len(context))
        for x in context:
            d_in[x] += step
        np.add.at(d_out, targets, -alpha * dout[0])
    new_in, new_out = w_in.copy(), w_out.copy()
    got = cbow_step(new_in, new_out, ids_pad, noise, mask, alpha, cbow_mean, group)
    np.testing.assert_allclose(new_in - w_in, d_in, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(new_out - w_out, d_out, rtol=1e-10, atol=1e-13)
    assert got == pytest.approx(total, rel=1e-12)


@pytest.mark.parametrize("step", [sg_step, cbow_step])
def test_steps_stay_in_float32(step):
    ids, ids_pad, mask, noise, w_in, w_out = tiny_batch(0)
    w_in, w_out = w_in.astype(np.float32), w_out.astype(np.float32)
    step(w_in, w_out, ids_pad, noise, mask.astype(np.float32), 0.025)
    assert w_in.dtype == np.float32 and w_out.dtype == np.float32


def test_spread_products_equals_spreading_the_window_gradient():
    rng = np.random.default_rng(3)
    B, W, m, D = 9, 2, 4, 5
    S = 2 * W + 1
    coef = rng.normal(size=(B, S, m))
    coef[:, W] = 0  # the centre slot
    vec = rng.normal(size=(B, m, D))
    coef_pad = np.zeros((B + 4 * W, S, m))
    vec_pad = rng.normal(size=(B + 4 * W, m, D))  # finite junk in the pads is harmless
    coef_pad[2 * W : 2 * W + B] = coef
    vec_pad[2 * W : 2 * W + B] = vec
    got = spread_products(coef_pad, vec_pad, B, W, np.empty((B + 2 * W, D)))
    want = spread(np.einsum("jik,jkd->jid", coef, vec), W)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("group", [0, 1, 3])  # 0: skip-gram
def test_a_workspace_reused_for_a_shorter_batch_gives_the_same_step(group):
    ids, ids_pad, mask, noise, w_in, w_out = tiny_batch(0)
    W = 2

    def step(w_in, w_out, n, ws=None):
        if group == 0:
            return sg_step(w_in, w_out, ids_pad[: n + 2 * W], noise[:n], mask[:n], 0.05, ws=ws)
        rows = noise[: -(-n // group)]
        halo = ids_pad[: n + 2 * W]
        return cbow_step(w_in, w_out, halo, rows, mask[:n], 0.05, 1, group, ws=ws)

    ws = Workspace(len(ids), W, noise.shape[1], w_in.shape[1], np.float64, max(group, 1))
    step(w_in.copy(), w_out.copy(), len(ids), ws)  # fills every buffer
    short = 7  # the last batch of an epoch is shorter: stale rows must not leak in
    fresh_in, fresh_out = w_in.copy(), w_out.copy()
    step(fresh_in, fresh_out, short)
    reused_in, reused_out = w_in.copy(), w_out.copy()
    step(reused_in, reused_out, short, ws)
    np.testing.assert_array_equal(reused_in, fresh_in)
    np.testing.assert_array_equal(reused_out, fresh_out)
