"""Generalized advantage estimation (Schulman et al. 2016) and advantage whitening.

For one trajectory with rewards ``r_t``, value estimates ``V_t``, discount ``gamma`` and
``lam``, and ``c_t = 1`` when step ``t + 1`` continues the same episode (0 after a done
or at the end of the completion)::

    delta_t = r_t + gamma * c_t * V_{t+1} - V_t
    A_t     = delta_t + gamma * lam * c_t * A_{t+1}      (backwards from the last step)
    R_t     = A_t + V_t                                  (the value target, "returns")

``lam = 1`` gives the Monte-Carlo advantage (return minus baseline), ``lam = 0`` the
one-step TD error. In RLHF each completion is one episode, a token is a step, and the
mask marks the completion tokens: the step after the last one is terminal (its value
counts as 0). TRL's ``PPOTrainer`` loop is the same recursion (``gamma = 1``,
``lam = 0.95`` by default, our defaults too).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scratchllm.finetuning.logprobs import masked_mean


@dataclass(frozen=True)
class GAEOutput:
    advantages: torch.Tensor  # [B, T], 0 outside the mask
    returns: torch.Tensor  # [B, T] value targets A + V, 0 outside the mask


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
    mask: torch.Tensor | None = None,
    dones: torch.Tensor | None = None,
    next_value: torch.Tensor | None = None,
) -> GAEOutput:
    """Advantages and returns for ``[B, T]`` rewards and values.

    ``mask [B, T]``: the steps that exist (completion tokens); a step whose successor is
    masked out ends its episode. ``dones [B, T]``: true where an episode ends after step
    ``t`` (for rollouts that hold several episodes in a row). ``next_value [B]``: the value
    of the state after step ``T - 1``, to bootstrap a rollout cut short; default 0
    (terminal). Inputs are detached: advantages are constants of the rollout.

    >>> r = torch.tensor([[0.0, 0.0, 1.0]]); v = torch.tensor([[0.5, 0.5, 0.5]])
    >>> gae(r, v, gamma=1.0, lam=1.0).advantages      # 1 - V_t: return minus baseline
    tensor([[0.5000, 0.5000, 0.5000]])
    """
    if rewards.shape != values.shape or rewards.dim() != 2:
        raise ValueError(
            f"rewards {tuple(rewards.shape)} and values {tuple(values.shape)} must both be [B, T]"
        )
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma ({gamma!r}) and lam ({lam!r}) must be in [0, 1]")
    B, T = rewards.shape
    r, v = rewards.detach(), values.detach()
    m = torch.ones_like(r, dtype=torch.bool) if mask is None else mask.bool()
    done = torch.zeros_like(m) if dones is None else dones.bool()
    for name, x in (("mask", m), ("dones", done)):
        if x.shape != (B, T):
            raise ValueError(f"{name} shape {tuple(x.shape)} must be (B, T) = {(B, T)}")
    # c[:, t] = 1 when step t+1 continues the episode of step t
    nxt_exists = torch.cat([m[:, 1:], torch.ones_like(m[:, :1])], dim=1)  # [B, T]
    c = (nxt_exists & ~done).to(r.dtype)
    v_next = torch.zeros(B, dtype=r.dtype, device=r.device) if next_value is None else next_value
    v_next = torch.cat([v[:, 1:], v_next.detach().to(r.dtype).reshape(B, 1)], dim=1)  # [B, T]
    delta = r + gamma * c * v_next - v  # [B, T]
    adv = torch.zeros_like(r)
    running = torch.zeros(B, dtype=r.dtype, device=r.device)
    for t in reversed(range(T)):  # the recursion runs backwards in time; B is vectorised
        running = delta[:, t] + gamma * lam * c[:, t] * running
        running = running * m[:, t]  # a step that does not exist has no advantage
        adv[:, t] = running
    returns = (adv + v).masked_fill(~m, 0.0)
    return GAEOutput(advantages=adv, returns=returns)


def whiten(
    x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps)`` over the masked positions, 0 outside them.

    The variance is unbiased (divides by ``n - 1``), as in TRL's ``masked_whiten``;
    ``shift_mean=False`` keeps the mean (TRL whitens rewards that way).
    """
    m = mask.bool()
    n = int(m.sum())
    if n < 2:
        raise ValueError(f"whitening needs at least 2 counted positions, got {n}")
    mean = masked_mean(x, m)
    var = masked_mean((x - mean) ** 2, m) * n / (n - 1)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out.masked_fill(~m, 0.0)
