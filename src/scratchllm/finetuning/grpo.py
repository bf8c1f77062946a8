"""GRPO: group-relative advantages and the clipped policy loss (Shao et al. 2024).

For each prompt the policy samples ``G`` completions ``o_1..o_G`` with rewards
``r_1..r_G`` (a verifier's 0/1). No value model: a completion's advantage is its reward
relative to its own group, the same for each of its tokens::

    A_i = (r_i - mean(r_1..r_G)) / (std(r_1..r_G) + eps)

``std`` is the **unbiased** sample standard deviation (divides by ``G - 1``; TRL calls
``torch.std``, whose default ``correction=1`` is that); ``ddof=0`` gives the population
one. ``eps = 1e-4`` as TRL. A group whose rewards are all equal (all right or all wrong)
has ``A = 0`` for every member: it teaches nothing, and the count of such groups is the
first thing to watch (an all-zero-reward batch trains nothing at all).

The loss per completion token, with ``rho = pi / pi_old`` (1 on the first pass over a
batch, where ``pi_old`` is ``pi`` detached; clipping bites when a batch is reused)::

    L_t = -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A) + beta * k3_t
    k3_t = exp(log ref - log pi) - (log ref - log pi) - 1

``beta = 0`` by default, as in TRL (no reference model needed). Three reductions:

- ``"sequence"`` (the GRPO paper, TRL ``loss_type="grpo"``): mean over tokens within each
  completion, then over completions; a long completion's tokens weigh less each.
- ``"token"`` (DAPO; TRL ``"bnpo"``, and ``"dapo"`` with ``num_tokens`` = the tokens of all
  accumulated micro-batches): one mean over all counted tokens.
- ``"dr_grpo"`` (Dr. GRPO, Liu et al. 2025): the token sum over a constant,
  ``B * max_completion_length``, so neither length nor batch content rescales a token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from scratchllm.finetuning.kl import kl_estimate
from scratchllm.finetuning.logprobs import masked_mean

Scale = Literal["group", "batch", "none"]
Reduction = Literal["sequence", "token", "dr_grpo"]
SCALES = ("group", "batch", "none")
REDUCTIONS = ("sequence", "token", "dr_grpo")


@dataclass(frozen=True)
class GroupAdvantages:
    advantages: torch.Tensor  # [N] one per completion, N = num_groups * G
    group_mean: torch.Tensor  # [N] the mean reward of each completion's group
    group_std: torch.Tensor  # [N] its group's std (ddof as asked)
    zero_std: torch.Tensor  # [N] bool, the completion's group has all rewards equal
    num_zero_std_groups: int  # groups that carry no learning signal
    num_groups: int


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    scale: Scale = "group",
    ddof: int = 1,
    eps: float = 1e-4,
) -> GroupAdvantages:
    """Group-relative advantages for ``rewards [N]``, laid out as consecutive groups of
    ``group_size`` (prompt 0's G completions, then prompt 1's, ...).

    ``scale``: ``"group"`` divides by the group's std (GRPO), ``"batch"`` by the whole
    batch's std (TRL's ``scale_rewards="batch"``), ``"none"`` not at all (Dr. GRPO).
    ``zero_std`` and the count always describe the groups' own spread, whatever the scale
    (TRL's ``frac_reward_zero_std`` looks at the batch std when ``scale="batch"``).

    >>> a = group_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0]), group_size=3)
    >>> a.advantages.round(decimals=3), a.num_zero_std_groups
    (tensor([ 1.1550, -0.5770, -0.5770,  0.0000,  0.0000,  0.0000]), 1)
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be [N], got shape {tuple(rewards.shape)}")
    if group_size < 2:
        raise ValueError(f"group_size ({group_size}) must be >= 2: GRPO compares samples")
    N = rewards.shape[0]
    if N % group_size:
        raise ValueError(f"{N} rewards do not split into groups of {group_size}")
    if ddof not in (0, 1):
        raise ValueError(f"ddof ({ddof!r}) must be 0 (population std) or 1 (sample std)")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    r = rewards.detach()
    grouped = r.view(-1, group_size)  # [num_groups, G]
    mean = grouped.mean(dim=1).repeat_interleave(group_size)  # [N]
    std = grouped.std(dim=1, correction=ddof).repeat_interleave(group_size)  # [N]
    zero = torch.isclose(std, torch.zeros_like(std))
    if scale == "group":
        adv = (r - mean) / (std + eps)
    elif scale == "batch":
        adv = (r - mean) / (r.std(correction=ddof) + eps)
    else:
        adv = r - mean
    num_zero = int(zero.view(-1, group_size)[:, 0].sum())
    return GroupAdvantages(
        advantages=adv,
        group_mean=mean,
        group_std=std,
        zero_std=zero,
        num_zero_std_groups=num_zero,
        num_groups=N // group_size,
    )


@dataclass(frozen=True)
class GRPOOutput:
    loss: torch.Tensor
    kl: torch.Tensor | None  # mean k3 over counted tokens; None when beta = 0
    clip_ratio_low: torch.Tensor  # share of tokens with rho < 1 - eps_low and A < 0
    clip_ratio_high: torch.Tensor  # share of tokens with rho > 1 + eps_high and A > 0
    clip_ratio: torch.Tensor  # either


def grpo_loss(
    logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    old_logprobs: torch.Tensor | None = None,
    ref_logprobs: torch.Tensor | None = None,
    beta: float = 0.0,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    reduction: Reduction = "sequence",
    max_completion_length: int | None = None,
    num_tokens: float | None = None,
) -> GRPOOutput:
    """The GRPO loss on ``[B, T]`` completion log-probs with advantages ``[B]`` (or ``[B, T]``).

    ``old_logprobs``: from the policy that sampled the batch, when the batch is reused
    for more than one update (``None``: the first pass, ratio 1). ``ref_logprobs`` are
    needed when ``beta > 0``. ``clip_eps_high`` defaults to ``clip_eps`` (DAPO's
    "clip-higher" sets it larger, e.g. 0.28). ``max_completion_length`` is Dr. GRPO's
    constant (default ``T``). ``num_tokens`` replaces the ``"token"`` reduction's
    denominator, so micro-batches of one accumulated step share one (DAPO).
    """
    if logprobs.dim() != 2 or mask.shape != logprobs.shape:
        raise ValueError(
            f"logprobs {tuple(logprobs.shape)} and mask {tuple(mask.shape)} must both be [B, T]"
        )
    B, T = logprobs.shape
    a = advantages.detach()
    if a.shape == (B,):
        a = a.unsqueeze(1)  # [B, 1]: a completion's advantage is shared by its tokens
    elif a.shape != (B, T):
        raise ValueError(f"advantages shape {tuple(a.shape)} must be [B] or [B, T] = {(B, T)}")
    eps_low = clip_eps
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    if eps_low <= 0 or eps_high <= 0:
        raise ValueError(f"clip_eps ({eps_low!r}) and clip_eps_high ({eps_high!r}) must be > 0")
    if beta < 0:
        raise ValueError(f"beta ({beta!r}) must be >= 0")
    m = mask.to(logprobs.dtype)
    old = logprobs.detach() if old_logprobs is None else old_logprobs.detach()
    ratio = torch.exp(logprobs - old)  # [B, T]
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high)
    per_token = -torch.minimum(ratio * a, clipped * a)  # [B, T]
    kl = None
    if beta != 0.0:
        if ref_logprobs is None:
            raise ValueError("beta > 0 needs ref_logprobs (the reference model's log-probs)")
        k3 = kl_estimate(logprobs, ref_logprobs.detach(), "k3")
        per_token = per_token + beta * k3
        kl = masked_mean(k3.detach(), m)
    if reduction == "sequence":
        # an empty completion adds 0 but still counts in the mean over B, as in TRL
        loss = ((per_token * m).sum(-1) / m.sum(-1).clamp(min=1.0)).mean()
    elif reduction == "token":
        denom = m.sum().clamp(min=1.0) if num_tokens is None else num_tokens
        loss = (per_token * m).sum() / denom
    elif reduction == "dr_grpo":
        L = T if max_completion_length is None else max_completion_length
        loss = (per_token * m).sum() / (B * L)
    else:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    with torch.no_grad():
        low = (ratio < 1 - eps_low) & (a < 0)
        high = (ratio > 1 + eps_high) & (a > 0)
        tokens = m.sum().clamp(min=1.0)
        out = GRPOOutput(
            loss=loss,
            kl=kl,
            clip_ratio_low=(low * m).sum() / tokens,
            clip_ratio_high=(high * m).sum() / tokens,
            clip_ratio=((low | high) * m).sum() / tokens,
        )
    return out
