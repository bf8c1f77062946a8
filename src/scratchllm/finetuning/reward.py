"""The reward model's loss: Bradley-Terry on preference pairs.

A reward model gives one scalar per sequence (the GPT with a scalar head on its last
token). Bradley-Terry says ``P(w preferred to l) = sigmoid(r_w - r_l)``; its negative
log-likelihood is::

    loss = mean over pairs of  -log sigmoid(r_w - r_l - m)

with an optional per-pair margin ``m >= 0`` (Llama 2: a larger margin for pairs the
annotators rated far apart). ``center_coef`` adds ``c * mean((r_w + r_l)^2)`` (Eisenstein
et al. 2023), which pins the free additive constant of the rewards near zero.
These are the formulas of TRL's ``RewardTrainer.compute_loss`` (TRL 0.28).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class RewardOutput:
    """The loss and what a reward-model run logs."""

    loss: torch.Tensor
    accuracy: torch.Tensor  # fraction of pairs with r_w > r_l (a tie counts as wrong)
    margin: torch.Tensor  # mean of r_w - r_l


def bradley_terry_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    margin: torch.Tensor | float | None = None,
    center_coef: float = 0.0,
) -> RewardOutput:
    """Bradley-Terry loss on ``[B]`` rewards of chosen and rejected sequences.

    >>> r = torch.tensor([1.0, 2.0])
    >>> round(float(bradley_terry_loss(r, r).loss), 4)   # no preference yet: ln 2
    0.6931
    """
    if chosen_rewards.shape != rejected_rewards.shape or chosen_rewards.dim() != 1:
        raise ValueError(
            f"chosen {tuple(chosen_rewards.shape)} and rejected {tuple(rejected_rewards.shape)} "
            "rewards must both be [B], one per pair"
        )
    if center_coef < 0:
        raise ValueError(f"center_coef ({center_coef!r}) must be >= 0")
    diff = chosen_rewards - rejected_rewards  # [B]
    m = 0.0 if margin is None else margin
    loss = -F.logsigmoid(diff - m).mean()
    if center_coef:
        loss = loss + center_coef * ((chosen_rewards + rejected_rewards) ** 2).mean()
    return RewardOutput(
        loss=loss,
        accuracy=pair_accuracy(chosen_rewards, rejected_rewards),
        margin=diff.detach().mean(),
    )


def pair_accuracy(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """Fraction of pairs the rewards order correctly, ``mean(r_w > r_l)``; ties are wrong."""
    return (chosen_rewards > rejected_rewards).float().mean()
