"""The KL penalty to a reference model, estimated per token, and classic RLHF rewards.

The policy ``pi`` samples the tokens, so ``KL(pi || ref) = E_pi[log pi - log ref]`` is
estimated at each sampled token from two numbers, ``log pi`` and ``log ref``. With
``log_r = log ref - log pi`` (Schulman, "Approximating KL divergence", 2020)::

    k1 = -log_r                    unbiased, high variance, can be negative
    k2 = log_r^2 / 2               biased, low variance, >= 0
    k3 = exp(log_r) - 1 - log_r    unbiased, low variance, >= 0   (GRPO's penalty)

**Classic RLHF reward shaping** (Ziegler et al. 2019; Ouyang et al. 2022): the
reward model's (or the verifier's) score arrives at the last completion token, and every
token pays for straying from the reference::

    reward[b, t] = -kl_coef * k(b, t)  +  score[b] * [t is the last counted token of b]

TRL's ``PPOTrainer`` (0.28) adds the score one position *after* the last token (the
first padding slot, trl issue #3750); here it lands on the last counted token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

KLEstimator = Literal["k1", "k2", "k3"]
KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_estimate(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: KLEstimator = "k3"
) -> torch.Tensor:
    """Per-token estimate of ``KL(pi || ref)`` at the sampled tokens: same shape as inputs.

    >>> kl_estimate(torch.tensor([-1.0]), torch.tensor([-1.0]))   # same model: no KL
    tensor([0.])
    """
    if logprobs.shape != ref_logprobs.shape:
        raise ValueError(
            f"logprobs {tuple(logprobs.shape)} and ref_logprobs {tuple(ref_logprobs.shape)} "
            "must have the same shape"
        )
    log_r = ref_logprobs - logprobs
    if estimator == "k1":
        return -log_r
    if estimator == "k2":
        return 0.5 * log_r**2
    if estimator == "k3":
        return torch.expm1(log_r) - log_r
    raise ValueError(f"estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")


def last_counted_index(mask: torch.Tensor) -> torch.Tensor:
    """``[B]``: the index of the last true position of each row of ``mask [B, T]``."""
    m = mask.bool()
    if bool((~m.any(-1)).any()):
        rows = torch.nonzero(~m.any(-1)).flatten().tolist()
        raise ValueError(f"rows {rows} of the mask have no counted token")
    T = m.shape[-1]
    return T - 1 - m.flip(-1).int().argmax(-1)


@dataclass(frozen=True)
class ShapedRewards:
    rewards: torch.Tensor  # [B, T] per-token rewards, 0 outside the mask
    kl: torch.Tensor  # [B, T] the per-token KL estimate, 0 outside the mask


def shaped_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    estimator: KLEstimator = "k1",
) -> ShapedRewards:
    """Per-token rewards: ``score`` on the last counted token, ``-kl_coef * KL`` on each.

    ``scores [B]``; ``logprobs``, ``ref_logprobs``, ``mask`` ``[B, T]``. Everything is
    detached: rewards are constants of the rollout, not functions of the parameters.
    The default ``k1`` is TRL's ``PPOConfig.kl_estimator`` default.

    >>> r = shaped_rewards(torch.tensor([1.0]), torch.zeros(1, 3), torch.zeros(1, 3),
    ...                    torch.tensor([[1, 1, 0]]), kl_coef=0.1)
    >>> r.rewards
    tensor([[0., 1., 0.]])
    """
    if kl_coef < 0:
        raise ValueError(f"kl_coef ({kl_coef!r}) must be >= 0")
    if mask.shape != logprobs.shape or scores.shape != logprobs.shape[:1]:
        raise ValueError(
            f"scores {tuple(scores.shape)} must be [B] and mask {tuple(mask.shape)} must "
            f"match logprobs {tuple(logprobs.shape)} = [B, T]"
        )
    m = mask.bool()
    kl = kl_estimate(logprobs.detach(), ref_logprobs.detach(), estimator).masked_fill(~m, 0.0)
    rewards = 0.0 - kl_coef * kl  # (0 - x, not -x: no -0.0 outside the mask)
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last_counted_index(m)] += scores.detach().to(rewards.dtype)
    return ShapedRewards(rewards=rewards, kl=kl)
