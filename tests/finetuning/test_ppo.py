"""PPO's clipped losses: hand-computed golden tensors and TRL's PPO loss lines."""

from __future__ import annotations

import math

import pytest
import torch

from scratchllm.finetuning import entropy_bonus, ppo_policy_loss, ppo_value_loss


def _t(x):
    return torch.tensor(x, dtype=torch.float64)


def test_policy_loss_hand_computed():
    # ratios 1.5, 0.5, 1.1, 0.7; advantages +1, +1, -1, -1; eps 0.2. Per token
    # max(-A r, -A clip(r)): max(-1.5, -1.2) = -1.2 (clipped), max(-0.5, -0.8) = -0.5,
    # max(1.1, 1.1) = 1.1, max(0.7, 0.8) = 0.8 (clipped). Mean 0.2 / 4 = 0.05.
    old = _t([[-1.0, -1.0, -1.0, -1.0]])
    logprobs = old + torch.log(_t([[1.5, 0.5, 1.1, 0.7]]))
    logprobs.requires_grad_(True)
    adv = _t([[1.0, 1.0, -1.0, -1.0]])
    out = ppo_policy_loss(logprobs, old, adv, torch.ones(1, 4), clip_eps=0.2)
    assert out.loss.item() == pytest.approx(0.05, abs=1e-12)
    assert float(out.clip_fraction) == 0.5
    logs = torch.log(_t([1.5, 0.5, 1.1, 0.7]))
    assert float(out.approx_kl) == pytest.approx(float((0.5 * logs**2).mean()))
    out.loss.backward()
    # clipped tokens get no gradient; the others d(-A r)/d log pi = -A r, over 4 tokens
    torch.testing.assert_close(logprobs.grad, _t([[0.0, -0.5 / 4, 1.1 / 4, 0.0]]))


def test_value_loss_hand_computed():
    # token 0: v 1.5, v_old 1.0, R 2.0: (1.5-2)^2 = 0.25; clipped v 1.2: 0.64 -> 0.64
    # token 1: v 0.1, v_old 0.0, R 0.0: 0.01 either way; loss = 0.5 * (0.64 + 0.01) / 2
    out = ppo_value_loss(_t([[1.5, 0.1]]), _t([[1.0, 0.0]]), _t([[2.0, 0.0]]), torch.ones(1, 2))
    assert out.loss.item() == pytest.approx(0.1625, abs=1e-12)
    assert float(out.clip_fraction) == 0.5
    plain = ppo_value_loss(
        _t([[1.5, 0.1]]), _t([[1.0, 0.0]]), _t([[2.0, 0.0]]), torch.ones(1, 2), clip_eps=None
    )
    assert plain.loss.item() == pytest.approx(0.5 * (0.25 + 0.01) / 2, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_equal_trl_ppo_loss_lines(trl, seed):
    """``trl/experimental/ppo/ppo_trainer.py`` (0.28) lines 819-846, on random tensors,
    with TRL's own ``masked_mean``; its entropy is line 848."""
    g = torch.Generator().manual_seed(seed)
    B, T, V = 4, 7, 5
    lengths = torch.tensor([7, 5, 3, 2])
    padding_mask = torch.arange(T)[None, :] >= lengths[:, None]
    mb_logprobs = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
    new_logprobs = (mb_logprobs + 0.4 * torch.randn(B, T, generator=g)).requires_grad_(True)
    mb_advantage = torch.randn(B, T, generator=g, dtype=torch.float64)
    mb_values = torch.randn(B, T, generator=g, dtype=torch.float64)
    vpred = (mb_values + 0.3 * torch.randn(B, T, generator=g)).requires_grad_(True)
    mb_return = torch.randn(B, T, generator=g, dtype=torch.float64)
    cliprange, cliprange_value = 0.2, 0.2

    vpredclipped = torch.clamp(vpred, mb_values - cliprange_value, mb_values + cliprange_value)
    vf_losses1 = torch.square(vpred - mb_return)
    vf_losses2 = torch.square(vpredclipped - mb_return)
    vf_loss_max = torch.max(vf_losses1, vf_losses2)
    vf_loss = 0.5 * trl.masked_mean(vf_loss_max, ~padding_mask)
    vf_clipfrac = trl.masked_mean((vf_losses2 > vf_losses1).float(), ~padding_mask)
    logprobs_diff = new_logprobs - mb_logprobs
    ratio = torch.exp(logprobs_diff)
    pg_losses = -mb_advantage * ratio
    pg_losses2 = -mb_advantage * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    pg_loss_max = torch.max(pg_losses, pg_losses2)
    pg_loss = trl.masked_mean(pg_loss_max, ~padding_mask)
    pg_clipfrac = trl.masked_mean((pg_losses2 > pg_losses).float(), ~padding_mask)

    pol = ppo_policy_loss(new_logprobs, mb_logprobs, mb_advantage, ~padding_mask, cliprange)
    val = ppo_value_loss(vpred, mb_values, mb_return, ~padding_mask, cliprange_value)
    torch.testing.assert_close(pol.loss, pg_loss, rtol=0, atol=1e-12)
    torch.testing.assert_close(val.loss, vf_loss, rtol=0, atol=1e-12)
    torch.testing.assert_close(pol.clip_fraction.float(), pg_clipfrac)
    torch.testing.assert_close(val.clip_fraction.float(), vf_clipfrac)
    for ours, theirs, wrt in ((pol.loss, pg_loss, new_logprobs), (val.loss, vf_loss, vpred)):
        (a,) = torch.autograd.grad(ours, wrt)
        (b,) = torch.autograd.grad(theirs, wrt)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)

    logits = torch.randn(B, T, V, generator=g, dtype=torch.float64)
    prob_dist = torch.nn.functional.softmax(logits, dim=-1)
    trl_entropy = torch.logsumexp(logits, dim=-1) - torch.sum(prob_dist * logits, dim=-1)
    expected = trl.masked_mean(trl_entropy, ~padding_mask)
    torch.testing.assert_close(entropy_bonus(logits, ~padding_mask), expected, rtol=0, atol=1e-12)


def test_entropy_bonus_of_uniform_is_log_v():
    logits = torch.zeros(2, 3, 8)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert float(entropy_bonus(logits, mask)) == pytest.approx(math.log(8))


def test_errors_name_the_problem():
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="advantages shape"):
        ppo_policy_loss(z, z, torch.zeros(2), torch.ones(2, 3))
    with pytest.raises(ValueError, match="clip_eps"):
        ppo_policy_loss(z, z, z, torch.ones(2, 3), clip_eps=0.0)
    with pytest.raises(ValueError, match="or None for no clipping"):
        ppo_value_loss(z, z, z, torch.ones(2, 3), clip_eps=-1.0)
    with pytest.raises(ValueError, match="empty mask"):
        ppo_policy_loss(z, z, z, torch.zeros(2, 3))
