"""KL estimators (hand values, unbiasedness by sampling) and classic RLHF reward shaping."""

from __future__ import annotations

import math

import pytest
import torch

from scratchllm.finetuning import kl_estimate, shaped_rewards


def test_hand_values():
    # log pi = -1, log ref = -2: log_r = -1
    lp, ref = torch.tensor([-1.0], dtype=torch.float64), torch.tensor([-2.0], dtype=torch.float64)
    assert float(kl_estimate(lp, ref, "k1")) == pytest.approx(1.0)
    assert float(kl_estimate(lp, ref, "k2")) == pytest.approx(0.5)
    assert float(kl_estimate(lp, ref, "k3")) == pytest.approx(math.exp(-1))  # e^-1 - 1 + 1


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_unbiased_for_kl_of_policy_to_reference(estimator):
    """Tokens sampled from pi: the mean estimate converges to the exact KL(pi || ref)."""
    g = torch.Generator().manual_seed(0)
    logp = torch.log_softmax(torch.randn(6, generator=g, dtype=torch.float64), -1)
    logref = torch.log_softmax(torch.randn(6, generator=g, dtype=torch.float64), -1)
    exact = float((logp.exp() * (logp - logref)).sum())
    tokens = torch.multinomial(logp.exp(), 200_000, replacement=True, generator=g)
    est = kl_estimate(logp[tokens], logref[tokens], estimator)
    stderr = float(est.std()) / math.sqrt(len(tokens))
    assert abs(float(est.mean()) - exact) < 4 * stderr
    if estimator == "k3":
        assert (est >= 0).all()  # k3 is never negative; k1 is, on some tokens
    else:
        assert (est < 0).any()


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_shaped_rewards_match_trl_ppo_with_the_score_on_the_last_token(estimator):
    """The KL and reward lines of ``trl/experimental/ppo/ppo_trainer.py`` (0.28) lines
    764-771, with the score placed at ``sequence_lengths`` (the last real token, the fix
    proposed in trl PR #5338 for issue #3750) instead of one slot after it."""
    g = torch.Generator().manual_seed(1)
    B, T = 4, 6
    lengths = torch.tensor([6, 4, 2, 1])
    response_idxs = torch.arange(T).repeat(B, 1)
    sequence_lengths = lengths - 1  # TRL's name for the index of the last real token
    padding_mask = response_idxs > sequence_lengths.unsqueeze(1)
    logprobs = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
    ref_logprobs = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
    scores = torch.randn(B, generator=g, dtype=torch.float64)
    kl_coef = 0.05  # PPOConfig's default

    INVALID_LOGPROB = 1.0
    t_logprobs = torch.masked_fill(logprobs, padding_mask, INVALID_LOGPROB)
    t_ref = torch.masked_fill(ref_logprobs, padding_mask, INVALID_LOGPROB)
    logr = t_ref - t_logprobs
    kl = -logr if estimator == "k1" else (logr.exp() - 1) - logr
    non_score_reward = -kl_coef * kl
    rewards = non_score_reward.clone()
    rewards[torch.arange(B), sequence_lengths] += scores

    out = shaped_rewards(scores, logprobs, ref_logprobs, ~padding_mask, kl_coef, estimator)
    real = ~padding_mask
    torch.testing.assert_close(out.rewards[real], rewards[real], rtol=0, atol=1e-12)
    torch.testing.assert_close(out.kl[real], kl[real], rtol=0, atol=1e-12)
    assert (out.rewards[padding_mask] == 0).all() and (out.kl[padding_mask] == 0).all()


def test_shaped_rewards_hand_case():
    # KL per token (k1) = logp - ref = [0.5, -0.25, 1.0]; kl_coef 0.1; score 2 on token 1
    out = shaped_rewards(
        torch.tensor([2.0]),
        torch.tensor([[-1.0, -2.0, -3.0]]),
        torch.tensor([[-1.5, -1.75, -4.0]]),
        torch.tensor([[True, True, False]]),
        kl_coef=0.1,
    )
    torch.testing.assert_close(out.rewards, torch.tensor([[-0.05, 2.025, 0.0]]))
    assert not out.rewards.requires_grad


def test_score_lands_on_the_last_completion_token_after_a_prompt():
    # prompt (2 tokens), completion (2), padding (2): the score goes to index 3
    mask = torch.tensor([[0, 0, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1]], dtype=torch.bool)
    z = torch.zeros(2, 6)
    out = shaped_rewards(torch.tensor([5.0, 7.0]), z, z, mask, kl_coef=0.1)
    expected = torch.zeros(2, 6)
    expected[0, 3], expected[1, 5] = 5.0, 7.0
    torch.testing.assert_close(out.rewards, expected)


def test_errors_name_the_problem():
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="estimator must be one of"):
        kl_estimate(z, z, "k4")
    with pytest.raises(ValueError, match="same shape"):
        kl_estimate(z, z[:, :2])
    with pytest.raises(ValueError, match=r"rows \[1\] of the mask have no counted token"):
        shaped_rewards(torch.zeros(2), z, z, torch.tensor([[1, 0, 0], [0, 0, 0]]), 0.1)
    with pytest.raises(ValueError, match="kl_coef"):
        shaped_rewards(torch.zeros(2), z, z, torch.ones(2, 3), -0.1)
