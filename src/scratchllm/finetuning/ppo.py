"""PPO's clipped policy loss, clipped value loss and entropy term (Schulman et al. 2017).

Per token, with the probability ratio ``rho = pi(a) / pi_old(a) = exp(log pi - log pi_old)``
of the current policy to the one that sampled the rollout, and advantage ``A``::

    policy:  L_pi = max(-A * rho, -A * clip(rho, 1 - eps, 1 + eps))
    value:   L_V  = 1/2 * max((V - R)^2, (V_old + clip(V - V_old, -eps_v, eps_v) - R)^2)
    entropy: H    = -sum_v p_v log p_v

each averaged over the counted (completion) tokens. The total PPO loss is
``L_pi + vf_coef * L_V - ent_coef * H``. The clip keeps one update from moving the policy
(or the value) far from the rollout's; "max" of the two negated terms is the paper's
pessimistic "min" of the objectives. These are TRL's ``PPOTrainer`` formulas (0.28),
which reduce with a masked mean over the minibatch's tokens, as here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scratchllm.finetuning.logprobs import entropy, masked_mean


def _same_shape(ref_name: str, ref: torch.Tensor, **others: torch.Tensor) -> None:
    for name, x in others.items():
        if x.shape != ref.shape:
            raise ValueError(
                f"{name} shape {tuple(x.shape)} must match {ref_name} {tuple(ref.shape)}"
            )


@dataclass(frozen=True)
class PolicyLossOutput:
    loss: torch.Tensor  # the clipped surrogate, mean over counted tokens
    clip_fraction: torch.Tensor  # share of counted tokens where the clip was active
    approx_kl: torch.Tensor  # mean of (log pi - log pi_old)^2 / 2, how far the update went


def ppo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
) -> PolicyLossOutput:
    """PPO's clipped surrogate on ``[B, T]`` log-probs of the sampled tokens.

    ``old_logprobs`` come from the rollout (detached); ``advantages [B, T]`` from ``gae``.

    >>> lp = torch.tensor([[-1.0, -2.0]])
    >>> float(ppo_policy_loss(lp, lp, torch.tensor([[1.0, 3.0]]), torch.ones(1, 2)).loss)
    -2.0
    """
    _same_shape("logprobs", logprobs, old_logprobs=old_logprobs, advantages=advantages, mask=mask)
    if clip_eps <= 0:
        raise ValueError(f"clip_eps ({clip_eps!r}) must be > 0")
    m = mask.bool()
    log_ratio = logprobs - old_logprobs.detach()
    ratio = log_ratio.exp()
    a = advantages.detach()
    unclipped = -a * ratio
    clipped = -a * ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped > unclipped).to(ratio.dtype), m)
        approx_kl = masked_mean(0.5 * log_ratio**2, m)
    return PolicyLossOutput(
        loss=masked_mean(torch.maximum(unclipped, clipped), m),
        clip_fraction=clip_fraction,
        approx_kl=approx_kl,
    )


@dataclass(frozen=True)
class ValueLossOutput:
    loss: torch.Tensor  # 1/2 * squared error (clipped), mean over counted tokens
    clip_fraction: torch.Tensor  # share of counted tokens where the clipped error was larger


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float | None = 0.2,
) -> ValueLossOutput:
    """The value head's loss on ``[B, T]`` predictions; ``clip_eps=None`` is unclipped.

    The clip is in value units (TRL's ``cliprange_value``), so it depends on the reward scale.
    """
    _same_shape("values", values, old_values=old_values, returns=returns, mask=mask)
    m = mask.bool()
    target = returns.detach()
    err = (values - target) ** 2
    if clip_eps is None:
        return ValueLossOutput(loss=0.5 * masked_mean(err, m), clip_fraction=torch.zeros(()))
    if clip_eps <= 0:
        raise ValueError(f"clip_eps ({clip_eps!r}) must be > 0, or None for no clipping")
    old = old_values.detach()
    v_clipped = old + (values - old).clamp(-clip_eps, clip_eps)
    err_clipped = (v_clipped - target) ** 2
    with torch.no_grad():
        clip_fraction = masked_mean((err_clipped > err).to(err.dtype), m)
    return ValueLossOutput(
        loss=0.5 * masked_mean(torch.maximum(err, err_clipped), m), clip_fraction=clip_fraction
    )


def entropy_bonus(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the policy over the counted tokens (``logits [B, T, V]``); the PPO
    loss subtracts ``ent_coef`` times it, so a positive coefficient keeps exploration."""
    if logits.shape[:-1] != mask.shape:
        raise ValueError(
            f"mask shape {tuple(mask.shape)} must be logits' [B, T] = {tuple(logits.shape[:-1])}"
        )
    return masked_mean(entropy(logits), mask.bool())
