"""Direct preference optimisation (DPO) and its IPO, hinge and cDPO variants.

Inputs are per-pair log-probabilities ``[B]`` of the chosen (``w``) and rejected (``l``)
completions, **summed** over completion tokens (``logprobs.sequence_logprobs``), under the
policy ``pi`` and a frozen reference ``ref`` (the starting model, or log-probs computed
once beforehand). With the implicit reward ``r(y) = beta * (log pi(y) - log ref(y))``::

    h = (log pi(w) - log pi(l)) - (log ref(w) - log ref(l))     the preference logit

    sigmoid (DPO, Rafailov et al. 2023): -log sigmoid(beta * h)
    cDPO (labels flipped w.p. eps):      -(1-eps) log sigmoid(beta * h) - eps log sigmoid(-beta * h)
    ipo (Azar et al. 2023, tau = beta):  (h - 1 / (2 * beta))^2
    hinge (SLiC, Zhao et al. 2023):      max(0, 1 - beta * h)

At the start of training ``pi = ref``, so ``h = 0`` and the DPO loss is ``ln 2``.

These are the formulas of TRL's ``DPOTrainer.dpo_loss`` (TRL 0.28) for the same names;
TRL ignores ``label_smoothing`` outside ``sigmoid`` with a warning, here it is an error.
TRL feeds IPO length-normalised log-probs (the mean per completion token, not the sum):
pass ``sequence_logprobs(..., reduction="mean")`` to train IPO as TRL does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

DPOLossType = Literal["sigmoid", "ipo", "hinge"]
DPO_LOSS_TYPES = ("sigmoid", "ipo", "hinge")


@dataclass(frozen=True)
class DPOOutput:
    """The loss and what a DPO run logs (rewards detached: they are for reading)."""

    loss: torch.Tensor  # mean of ``losses``
    losses: torch.Tensor  # [B] per pair
    chosen_rewards: torch.Tensor  # [B] beta * (log pi(w) - log ref(w))
    rejected_rewards: torch.Tensor  # [B] beta * (log pi(l) - log ref(l))
    reward_accuracy: torch.Tensor  # fraction of pairs with chosen reward > rejected reward
    reward_margin: torch.Tensor  # mean of chosen_rewards - rejected_rewards


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float = 0.1,
    loss_type: DPOLossType = "sigmoid",
    label_smoothing: float = 0.0,
) -> DPOOutput:
    """The DPO family's loss on a batch of pairs; every input is ``[B]``.

    ``label_smoothing`` (cDPO, ``0 <= eps < 0.5``) models preference labels that are
    wrong with probability ``eps``; only ``loss_type="sigmoid"`` has it.

    >>> z = torch.tensor([-5.0, -7.0])
    >>> round(float(dpo_loss(z, z, z, z).loss), 4)     # policy = reference: ln 2
    0.6931
    """
    shape = policy_chosen.shape
    for name, x in (
        ("policy_rejected", policy_rejected),
        ("ref_chosen", ref_chosen),
        ("ref_rejected", ref_rejected),
    ):
        if x.shape != shape:
            raise ValueError(
                f"{name} shape {tuple(x.shape)} must match policy_chosen {tuple(shape)}"
            )
    if policy_chosen.dim() != 1:
        raise ValueError(f"log-probs must be [B] (one per pair), got shape {tuple(shape)}")
    if beta <= 0:
        raise ValueError(f"beta ({beta!r}) must be > 0")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing ({label_smoothing!r}) must be in [0, 0.5)")
    if label_smoothing > 0 and loss_type != "sigmoid":
        raise ValueError(
            f"label_smoothing applies to loss_type='sigmoid' (cDPO) only, not {loss_type!r}"
        )
    ref_chosen, ref_rejected = ref_chosen.detach(), ref_rejected.detach()
    h = (policy_chosen - policy_rejected) - (ref_chosen - ref_rejected)  # [B]
    if loss_type == "sigmoid":
        eps = label_smoothing
        losses = -(1 - eps) * F.logsigmoid(beta * h) - eps * F.logsigmoid(-beta * h)
    elif loss_type == "ipo":
        losses = (h - 1 / (2 * beta)) ** 2
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * h)
    else:
        raise ValueError(f"loss_type must be one of {DPO_LOSS_TYPES}, got {loss_type!r}")
    chosen_rewards = beta * (policy_chosen - ref_chosen).detach()
    rejected_rewards = beta * (policy_rejected - ref_rejected).detach()
    return DPOOutput(
        loss=losses.mean(),
        losses=losses,
        chosen_rewards=chosen_rewards,
        rejected_rewards=rejected_rewards,
        reward_accuracy=(chosen_rewards > rejected_rewards).float().mean(),
        reward_margin=(chosen_rewards - rejected_rewards).mean(),
    )
