"""The optimizer step weighs micro-batches by their counted tokens: accumulating micro-batches
of unequal counted lengths gives the gradient of one batch holding them all, which is the
gradient of (sum of token losses) / (counted tokens), not of a mean of per-batch means."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_gpt

from scratchllm.configs.train import TrainConfig
from scratchllm.training.step import TrainStep, counted_tokens, forward_loss

V, T = 11, 8


def rows_of_unequal_length(n: int = 8, seed: int = 0):
    """``n`` rows, right-padded: row i has ``1 + i % 5`` learned targets (a mask on the
    answer), the rest padding (target -1, mask False)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, V, (n, T), generator=g)
    y = torch.randint(0, V, (n, T), generator=g)
    mask = torch.zeros(n, T, dtype=torch.bool)
    for i in range(n):
        k = 1 + i % 5
        mask[i, T - 2 - k : T - 2] = True  # learned answer tokens
        y[i, T - 2 :] = -1  # padding
    return x, y, mask


def step_once(model, micro_batches):
    """One TrainStep with plain SGD at lr 1 and no clipping: the parameters move by exactly
    minus the step's gradient."""
    cfg = TrainConfig(lr=1.0, min_lr=0.0, warmup_iters=0, schedule="constant", grad_clip=None)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    step = TrainStep(model, model, opt, cfg, torch.device("cpu"), None)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss, _ = step.run(0, micro_batches)
    grads = {n: before[n] - p.detach() for n, p in model.named_parameters()}
    return loss, grads


def test_two_by_four_accumulation_equals_one_batch_of_eight_with_unequal_lengths():
    torch.set_default_dtype(torch.float64)
    try:
        x, y, m = rows_of_unequal_length()
        base = tiny_gpt(V, block_size=T).double()
        one = copy.deepcopy(base)
        acc = copy.deepcopy(base)
        loss_one, g_one = step_once(one, [(x, y, m)])
        loss_acc, g_acc = step_once(acc, [(x[:4], y[:4], m[:4]), (x[4:], y[4:], m[4:])])
        torch.testing.assert_close(loss_acc, loss_one, rtol=0, atol=1e-12)
        for name in g_one:
            torch.testing.assert_close(g_acc[name], g_one[name], rtol=1e-10, atol=1e-12)

        # ... and both are the gradient of (sum of token losses) / (counted tokens)
        ref = copy.deepcopy(base)
        logits, _ = ref(x)
        keep = m & (y != -1)
        token_loss = F.cross_entropy(logits[keep], y[keep], reduction="sum") / keep.sum()
        token_loss.backward()
        torch.testing.assert_close(loss_one, token_loss.detach(), rtol=0, atol=1e-12)
        for name, p in ref.named_parameters():
            torch.testing.assert_close(g_one[name], p.grad, rtol=1e-10, atol=1e-12)

        # The mean of the two micro-batches' means is another gradient (the test can fail).
        mean_of_means = copy.deepcopy(base)
        halves = [
            forward_loss(mean_of_means, (x[s], y[s], m[s])) for s in (slice(0, 4), slice(4, 8))
        ]
        assert counted_tokens((x[:4], y[:4], m[:4])) != counted_tokens((x[4:], y[4:], m[4:]))
        (sum(halves) / 2).backward()
        w = mean_of_means.transformer.wte.weight.grad
        assert not torch.allclose(w, g_one["transformer.wte.weight"], rtol=1e-3)
    finally:
        torch.set_default_dtype(torch.float32)


def test_windows_without_a_mask_are_split_evenly_as_before():
    """No mask: every micro-batch counts B * T targets, and the step divides by their number."""
    x = torch.randint(0, V, (6, T), generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, V, (6, T), generator=torch.Generator().manual_seed(2))
    base = tiny_gpt(V, block_size=T)
    loss3, g3 = step_once(
        copy.deepcopy(base), [(x[i : i + 2], y[i : i + 2], None) for i in (0, 2, 4)]
    )
    loss1, g1 = step_once(copy.deepcopy(base), [(x, y, None)])
    torch.testing.assert_close(loss3, loss1, rtol=1e-6, atol=1e-7)
    for name in g1:
        torch.testing.assert_close(g3[name], g1[name], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("split", [[2, 6], [1, 3, 4]])
def test_any_split_of_a_masked_batch_gives_the_same_step(split):
    x, y, m = rows_of_unequal_length(seed=3)
    base = tiny_gpt(V, block_size=T)
    bounds = [0]
    for k in split:
        bounds.append(bounds[-1] + k)
    micro = [(x[a:b], y[a:b], m[a:b]) for a, b in zip(bounds, bounds[1:])]
    loss_k, g_k = step_once(copy.deepcopy(base), micro)
    loss_1, g_1 = step_once(copy.deepcopy(base), [(x, y, m)])
    torch.testing.assert_close(loss_k, loss_1, rtol=1e-6, atol=1e-6)
    for name in g_1:
        torch.testing.assert_close(g_k[name], g_1[name], rtol=1e-4, atol=1e-6)
