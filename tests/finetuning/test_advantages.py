"""GAE: hand-computed cases, a scalar loop reference, TRL's PPO loop, and whitening."""

from __future__ import annotations

import pytest
import torch

from scratchllm.finetuning import gae, whiten


def _t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_hand_computed_three_steps():
    # gamma 0.9, lam 0.8, terminal after the last step:
    # d2 = 2 - 0.5 = 1.5                    A2 = 1.5
    # d1 = 0 + 0.9 * 0.5 - 1.0 = -0.55      A1 = -0.55 + 0.72 * 1.5 = 0.53
    # d0 = 1 + 0.9 * 1.0 - 0.5 = 1.4        A0 = 1.4 + 0.72 * 0.53 = 1.7816
    out = gae(_t([[1.0, 0.0, 2.0]]), _t([[0.5, 1.0, 0.5]]), gamma=0.9, lam=0.8)
    torch.testing.assert_close(out.advantages, _t([[1.7816, 0.53, 1.5]]))
    torch.testing.assert_close(out.returns, _t([[2.2816, 1.53, 2.0]]))


def test_hand_computed_done_and_bootstrap():
    # two episodes in one rollout, the second cut short and bootstrapped from V = 10;
    # gamma = lam = 1 makes A the Monte-Carlo return minus V:
    # episode 1 (steps 0, 1): A0 = 1 + 2 - 1 = 2, A1 = 2 - 1 = 1
    # episode 2 (steps 2, 3): A2 = 3 + 4 + 10 - 1 = 16, A3 = 4 + 10 - 1 = 13
    out = gae(
        _t([[1.0, 2.0, 3.0, 4.0]]),
        _t([[1.0, 1.0, 1.0, 1.0]]),
        gamma=1.0,
        lam=1.0,
        dones=torch.tensor([[False, True, False, False]]),
        next_value=_t([10.0]),
    )
    torch.testing.assert_close(out.advantages, _t([[2.0, 1.0, 16.0, 13.0]]))


def test_hand_computed_right_padding():
    # the completion is 2 tokens; what the padding holds must not leak in:
    # A1 = 1 - 0.4 = 0.6 (terminal), A0 = (0 + 0.4 - 0.2) + 0.5 * 0.6 = 0.5
    out = gae(
        _t([[0.0, 1.0, 9.0, 9.0]]),
        _t([[0.2, 0.4, 7.0, 7.0]]),
        gamma=1.0,
        lam=0.5,
        mask=torch.tensor([[1, 1, 0, 0]]),
    )
    torch.testing.assert_close(out.advantages, _t([[0.5, 0.6, 0.0, 0.0]]))
    torch.testing.assert_close(out.returns, _t([[0.7, 1.0, 0.0, 0.0]]))


def _gae_loop(rewards, values, gamma, lam, mask, dones, next_value):
    """Reference: one scalar at a time, straight from the definition."""
    B, T = rewards.shape
    adv = [[0.0] * T for _ in range(B)]
    for b in range(B):
        following = 0.0  # A_{t+1}
        for t in reversed(range(T)):
            if not mask[b][t]:
                following = 0.0
                continue
            if t == T - 1:
                cont, v_next = (not dones[b][t]), float(next_value[b])
            else:
                cont, v_next = (bool(mask[b][t + 1]) and not dones[b][t]), float(values[b][t + 1])
            delta = float(rewards[b][t]) + gamma * v_next * cont - float(values[b][t])
            following = delta + gamma * lam * cont * following
            adv[b][t] = following
    return torch.tensor(adv, dtype=torch.float64)


@pytest.mark.parametrize("seed", range(4))
def test_matches_the_loop_reference_on_random_rollouts(seed):
    g = torch.Generator().manual_seed(seed)
    B, T = 5, 9
    rewards = torch.randn(B, T, generator=g, dtype=torch.float64)
    values = torch.randn(B, T, generator=g, dtype=torch.float64)
    mask = torch.rand(B, T, generator=g) > 0.2  # gaps too: a gap ends the episode
    dones = torch.rand(B, T, generator=g) > 0.8
    next_value = torch.randn(B, generator=g, dtype=torch.float64)
    gamma, lam = 0.97, 0.9
    out = gae(rewards, values, gamma, lam, mask=mask, dones=dones, next_value=next_value)
    expected = _gae_loop(rewards, values, gamma, lam, mask, dones, next_value)
    torch.testing.assert_close(out.advantages, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.returns, (expected + values) * mask, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_matches_trl_ppo_trainer_loop(seed):
    """TRL has no GAE function: this is its loop, ``trl/experimental/ppo/ppo_trainer.py``
    (0.28) lines 779-788, ``returns = advantages + values`` (line 788), on right-padded
    completions whose rewards and values TRL has zeroed at the padding."""
    g = torch.Generator().manual_seed(seed)
    B, T = 4, 7
    lengths = torch.tensor([7, 5, 3, 1])
    mask = torch.arange(T)[None, :] < lengths[:, None]
    rewards = torch.randn(B, T, generator=g, dtype=torch.float64) * mask
    values = torch.randn(B, T, generator=g, dtype=torch.float64) * mask
    gamma, lam = 1.0, 0.95  # PPOConfig's defaults

    lastgaelam = 0
    advantages_reversed = []
    gen_length = T
    for t in reversed(range(gen_length)):
        nextvalues = values[:, t + 1] if t < gen_length - 1 else 0.0
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam = delta + gamma * lam * lastgaelam
        advantages_reversed.append(lastgaelam)
    trl_advantages = torch.stack(advantages_reversed[::-1], axis=1)
    trl_returns = trl_advantages + values

    out = gae(rewards, values, gamma, lam, mask=mask)
    torch.testing.assert_close(out.advantages[mask], trl_advantages[mask], rtol=0, atol=1e-12)
    torch.testing.assert_close(out.returns[mask], trl_returns[mask], rtol=0, atol=1e-12)


def test_lambda_limits_are_td_error_and_monte_carlo():
    g = torch.Generator().manual_seed(9)
    r, v = torch.randn(3, 6, generator=g, dtype=torch.float64), torch.randn(3, 6, generator=g)
    v = v.double()
    td = gae(r, v, gamma=0.9, lam=0.0).advantages
    v_next = torch.cat([v[:, 1:], torch.zeros(3, 1, dtype=torch.float64)], 1)
    torch.testing.assert_close(td, r + 0.9 * v_next - v, rtol=0, atol=1e-12)
    mc = gae(r, v, gamma=0.9, lam=1.0).advantages
    discount = 0.9 ** torch.arange(6, dtype=torch.float64)
    to_go = torch.stack([(r[:, t:] * discount[: 6 - t]).sum(1) for t in range(6)], 1)
    torch.testing.assert_close(mc, to_go - v, rtol=0, atol=1e-12)


def test_inputs_are_treated_as_constants():
    r = torch.randn(2, 4, requires_grad=True)
    v = torch.randn(2, 4, requires_grad=True)
    out = gae(r, v)
    assert not out.advantages.requires_grad and not out.returns.requires_grad


@pytest.mark.parametrize("shift_mean", [True, False])
def test_whiten_equals_trl_masked_whiten(trl, shift_mean):
    g = torch.Generator().manual_seed(11)
    x = torch.randn(4, 6, generator=g, dtype=torch.float64) * 3 + 1
    mask = torch.rand(4, 6, generator=g) > 0.3
    theirs = trl.masked_whiten(x, mask, shift_mean=shift_mean)
    ours = whiten(x, mask, shift_mean=shift_mean)
    # TRL's Bessel factor n / (n - 1) divides two integer tensors, which torch does in
    # float32: agreement to ~1e-7 relative, not to float64's last digit
    torch.testing.assert_close(ours[mask], theirs[mask], rtol=1e-6, atol=1e-9)
    assert (ours[~mask] == 0).all()
    if shift_mean:
        kept = ours[mask]
        assert abs(float(kept.mean())) < 1e-12 and float(kept.std()) == pytest.approx(1, abs=1e-6)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"must both be \[B, T\]"):
        gae(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="gamma"):
        gae(torch.zeros(2, 3), torch.zeros(2, 3), gamma=1.5)
    with pytest.raises(ValueError, match="dones shape"):
        gae(torch.zeros(2, 3), torch.zeros(2, 3), dones=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="at least 2"):
        whiten(torch.zeros(2, 3), torch.tensor([[1, 0, 0], [0, 0, 0]]))
