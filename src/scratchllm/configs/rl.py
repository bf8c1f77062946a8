"""The preference and RL methods' configuration dataclasses, torch-free.

Each holds what its method adds to the training settings (``TrainConfig``); the flags of
``scratchllm finetune reward|dpo|ppo|grpo`` read their defaults from these fields
(``finetuning.rl_settings``). The formulas they parametrise are in ``finetuning``
(``preference``, ``reward``, ``kl``, ``advantages``, ``ppo``, ``grpo``) and ``docs/rl.md``.

>>> DPOConfig().beta, GRPOConfig().group_size, GRPOConfig().beta
(0.1, 8, 0.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DPO_LOSS_TYPES = ("sigmoid", "ipo", "hinge")  # finetuning.preference's
REDUCTIONS = ("sequence", "token", "dr_grpo")  # finetuning.grpo's
SCALES = ("group", "batch", "none")
KL_ESTIMATORS = ("k1", "k2", "k3")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass
class RewardConfig:
    """Bradley-Terry: ``-log sigmoid(r_w - r_l)`` (+ ``center_coef * mean((r_w + r_l)^2)``)."""

    center_coef: float = 0.0  # pins the rewards' free additive constant near 0 (0: off)

    def __post_init__(self) -> None:
        _check(self.center_coef >= 0, f"center_coef ({self.center_coef!r}) must be >= 0")


@dataclass
class DPOConfig:
    """DPO and its variants on summed completion log-probs against a frozen reference."""

    beta: float = 0.1  # the implicit reward's scale: r = beta * (log pi - log ref)
    loss_type: str = "sigmoid"  # sigmoid (DPO), ipo or hinge
    label_smoothing: float = 0.0  # cDPO: labels taken as wrong with this probability
    rpo_alpha: float = 0.0  # RPO: + alpha * the chosen replies' NLL per token (0: off)
    precompute_ref: bool = False  # the reference's log-probs once, at the start (no model kept)

    def __post_init__(self) -> None:
        _check(self.beta > 0, f"beta ({self.beta!r}) must be > 0")
        _check(self.loss_type in DPO_LOSS_TYPES, f"loss_type: choose one of {DPO_LOSS_TYPES}")
        _check(
            0.0 <= self.label_smoothing < 0.5,
            f"label_smoothing ({self.label_smoothing!r}) must be in [0, 0.5)",
        )
        _check(self.rpo_alpha >= 0, f"rpo_alpha ({self.rpo_alpha!r}) must be >= 0")
        _check(
            self.label_smoothing == 0 or self.loss_type == "sigmoid",
            "label_smoothing (cDPO) goes with loss_type sigmoid only",
        )


@dataclass
class SamplingConfig:
    """How a policy's completions are drawn during RL."""

    temperature: float = 1.0  # of the samples trained on (> 0)
    top_k: int | None = None  # sample among the k likeliest tokens only
    max_new_tokens: int | None = None  # default: the task's longest right completion + 4

    def __post_init__(self) -> None:
        _check(
            math.isfinite(self.temperature) and self.temperature > 0,
            f"temperature ({self.temperature!r}) must be > 0: RL learns from samples",
        )
        _check(self.top_k is None or self.top_k >= 1, f"top_k ({self.top_k!r}) must be >= 1")
        _check(
            self.max_new_tokens is None or self.max_new_tokens >= 1,
            f"max_new_tokens ({self.max_new_tokens!r}) must be >= 1",
        )


@dataclass
class GRPOConfig(SamplingConfig):
    """GRPO: G samples per prompt, group-relative advantages, the clipped loss."""

    group_size: int = 8  # G completions per prompt
    num_iterations: int = 1  # updates per rollout (mu); from the second the ratio clip acts
    beta: float = 0.0  # k3 KL penalty to the reference (0, as TRL: no reference needed)
    clip_eps: float = 0.2  # ratio clip, low side (and high side unless clip_eps_high)
    clip_eps_high: float | None = None  # DAPO's clip-higher, e.g. 0.28
    reduction: str = "sequence"  # sequence (GRPO), token (DAPO) or dr_grpo
    scale_rewards: str = "group"  # divide by the group's std, the batch's, or none (Dr. GRPO)
    ddof: int = 1  # the std's degrees of freedom: 1 = sample std (TRL's torch.std), 0 = population
    partial_credit: float = 0.0  # a wrong answer's reward per correct digit (0: a 0/1 reward)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.group_size >= 2, f"group_size ({self.group_size}) must be >= 2")
        _check(self.num_iterations >= 1, f"num_iterations ({self.num_iterations}) must be >= 1")
        _check(self.beta >= 0, f"beta ({self.beta!r}) must be >= 0")
        _check(self.clip_eps > 0, f"clip_eps ({self.clip_eps!r}) must be > 0")
        _check(
            self.clip_eps_high is None or self.clip_eps_high > 0,
            f"clip_eps_high ({self.clip_eps_high!r}) must be > 0",
        )
        _check(self.reduction in REDUCTIONS, f"reduction: choose one of {REDUCTIONS}")
        _check(self.scale_rewards in SCALES, f"scale_rewards: choose one of {SCALES}")
        _check(self.ddof in (0, 1), f"ddof ({self.ddof!r}) must be 0 or 1")
        _check(
            0.0 <= self.partial_credit < 1.0,
            f"partial_credit ({self.partial_credit!r}) must be in [0, 1)",
        )


@dataclass
class PPOConfig(SamplingConfig):
    """Classic RLHF: a value head, shaped rewards with a KL penalty, GAE, clipped losses."""

    samples_per_prompt: int = 1  # completions of each prompt in a rollout
    kl_coef: float = 0.05  # per-token KL penalty to the reference in the reward
    kl_estimator: str = "k1"  # TRL's PPOTrainer default
    gamma: float = 1.0  # discount (one completion is one short episode)
    lam: float = 0.95  # GAE's lambda
    clip_eps: float = 0.2  # policy ratio clip
    value_clip: float | None = 0.2  # value clip, in reward units (None: unclipped)
    vf_coef: float = 0.1  # weight of the value loss (TRL's default)
    ent_coef: float = 0.0  # entropy bonus
    ppo_epochs: int = 4  # passes over each rollout
    num_minibatches: int = 1  # updates per pass
    whiten_advantages: bool = True  # normalise advantages over the rollout (TRL does)
    partial_credit: float = 0.0  # with a verifier reward: per correct digit (0: 0/1)

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.samples_per_prompt >= 1, "samples_per_prompt must be >= 1")
        _check(self.kl_coef >= 0, f"kl_coef ({self.kl_coef!r}) must be >= 0")
        _check(self.kl_estimator in KL_ESTIMATORS, f"kl_estimator: one of {KL_ESTIMATORS}")
        _check(0 <= self.gamma <= 1 and 0 <= self.lam <= 1, "gamma and lam must be in [0, 1]")
        _check(self.clip_eps > 0, f"clip_eps ({self.clip_eps!r}) must be > 0")
        _check(self.value_clip is None or self.value_clip > 0, "value_clip must be > 0 (or none)")
        _check(self.vf_coef >= 0 and self.ent_coef >= 0, "vf_coef and ent_coef must be >= 0")
        _check(self.ppo_epochs >= 1, f"ppo_epochs ({self.ppo_epochs}) must be >= 1")
        _check(self.num_minibatches >= 1, f"num_minibatches ({self.num_minibatches}) >= 1")
        _check(
            0.0 <= self.partial_credit < 1.0,
            f"partial_credit ({self.partial_credit!r}) must be in [0, 1)",
        )
