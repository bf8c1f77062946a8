"""The settings of the preference and RL methods: ``reward``, ``dpo``, ``ppo``, ``grpo``.

Each is a table in the form of ``finetuning.settings`` (sft's), so the same layers apply
(defaults, ``--config FILE.toml``, the flags; on ``--resume`` the run's ``finetune.toml``
first) and ``scratchllm finetune METHOD --help`` lists them. A method's table is:

- where it starts (``--from CKPT``: these methods start from a trained model) and the
  template of its rows (``--template``, sft's);
- its data: preference pairs (reward, dpo) or a task (ppo, grpo);
- the training flags of ``train`` that mean the same here (a step is the method's own,
  ``finetuning.loop``; ``--batch-size`` is pairs or prompts per step);
- LoRA / QLoRA (dpo, ppo, grpo; sft's flags);
- its own, with defaults from ``configs.rl``.

>>> s = resolve_settings({"base": "runs/sft", "data": "pairs.jsonl"}, options=DPO_OPTIONS)
>>> s["beta"], s["loss_type"], s["max_iters"], s["lr"]
(0.1, 'sigmoid', 200, 0.0001)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from scratchllm.configs.finetune import TEMPLATES
from scratchllm.configs.rl import (
    DPO_LOSS_TYPES,
    KL_ESTIMATORS,
    REDUCTIONS,
    SCALES,
    DPOConfig,
    GRPOConfig,
    PPOConfig,
    RewardConfig,
)
from scratchllm.finetuning.settings import LORA, START
from scratchllm.training.settings import BY_KEY, Option, resolve_settings

_DPO = {f.name: f.default for f in dataclasses.fields(DPOConfig)}
_GRPO = {f.name: f.default for f in dataclasses.fields(GRPOConfig)}
_PPO = {f.name: f.default for f in dataclasses.fields(PPOConfig)}
_RM = {f.name: f.default for f in dataclasses.fields(RewardConfig)}

# train's flags that keep their meaning (bf16, compile, label smoothing, early stopping and
# validity samples are the Trainer's own and are not offered here)
TRAIN_KEYS = (
    "max_iters",
    "batch_size",
    "gradient_accumulation_steps",
    "lr",
    "min_lr",
    "warmup_iters",
    "lr_decay_iters",
    "schedule",
    "weight_decay",
    "beta1",
    "beta2",
    "grad_clip",
    "eval_interval",
    "log_interval",
    "seed",
    "device",
)


def _o(group: str, key: str, type_: type, help_: str, default: Any = None, **kw: Any) -> Option:
    return Option(key, type_, help_, group, default, **kw)


def _train(**changes: tuple[Any, str | None]) -> tuple[Option, ...]:
    """train's options, with ``key=(default, help or None)`` changed for this method."""
    changes.setdefault("min_lr", (None, "the floor the cosine decays to (default: lr / 10)"))
    out = []
    for key in TRAIN_KEYS:
        o = BY_KEY[key]
        if key in changes:
            default, help_ = changes[key]
            o = dataclasses.replace(o, default=default, help=help_ or o.help)
        out.append(o)
    return tuple(out)


# fmt: off
TEMPLATE = _o("finetune", "template", str, "auto: the checkpoint's own chat template, else "
              "plain for a language task and chat otherwise; chat; plain", "auto",
              choices=TEMPLATES)
PAIRS_DATA = (
    _o("data", "data", str, "preference pairs: a .jsonl file of {prompt, chosen, rejected} "
       "(strings or message lists; `scratchllm finetune pairs` writes one from a task)",
       metavar="PAIRS.jsonl"),
    _o("data", "val_fraction", float, "the share of prompts whose pairs are held out for "
       "evaluation (split by a hash of the prompt, so no prompt is on both sides)", 0.1),
)
TASK_DATA = (
    _o("data", "data", str, "the task to practise: a language with answers and a verifier, "
       "e.g. addition:digits=3 (prompts from its training side; eval uses the held-out "
       "tenth)", metavar="TASK"),
)
EVAL = (
    _o("eval", "eval_n", int, "held-out task prompts scored at each evaluation", 200,
       metavar="N"),
    _o("eval", "eval_k", int, "completions per held-out prompt for pass@k at each evaluation "
       "(sampled at temperature 1; 1: greedy accuracy only)", 8, metavar="K"),
)
SAMPLING = (
    _o("rollout", "temperature", float, "sampling temperature of the rollouts",
       _GRPO["temperature"], metavar="T"),
    _o("rollout", "top_k", int, "sample among the k likeliest tokens only", metavar="K"),
    _o("rollout", "max_new_tokens", int, "longest completion (default: the task's longest "
       "right one + 4)", metavar="N"),
)
REWARD = (
    _o("reward", "center_coef", float, "add c * mean((r_w + r_l)^2), pinning the rewards' "
       "free constant near 0", _RM["center_coef"], metavar="C"),
)
DPO = (
    _o("dpo", "beta", float, "the implicit reward's scale, r = beta (log pi - log ref)",
       _DPO["beta"], metavar="B"),
    _o("dpo", "loss_type", str, "sigmoid (DPO), ipo or hinge (SLiC)", _DPO["loss_type"],
       choices=DPO_LOSS_TYPES),
    _o("dpo", "label_smoothing", float, "cDPO: the probability that a label is wrong "
       "(sigmoid only)", _DPO["label_smoothing"], metavar="EPS"),
    _o("dpo", "rpo_alpha", float, "RPO: add alpha times the chosen replies' negative "
       "log-likelihood per token (0: off)", _DPO["rpo_alpha"], metavar="A"),
    _o("dpo", "reference", str, "the frozen reference (default: the --from checkpoint)",
       metavar="CKPT"),
    _o("dpo", "precompute_ref", bool, "compute the reference's log-probs of every pair once "
       "at the start and keep no reference model", _DPO["precompute_ref"]),
    _o("eval", "task", str, "also score this task's held-out prompts (greedy) at each "
       "evaluation, e.g. the task the pairs came from", metavar="TASK"),
)
GRPO = (
    _o("grpo", "group_size", int, "G: completions per prompt", _GRPO["group_size"],
       metavar="G"),
    _o("grpo", "num_iterations", int, "updates per rollout (the ratio clip acts from the "
       "second)", _GRPO["num_iterations"], metavar="MU"),
    _o("grpo", "beta", float, "k3 KL penalty to the reference (0: none, no reference kept)",
       _GRPO["beta"], metavar="B"),
    _o("grpo", "clip_eps", float, "ratio clip", _GRPO["clip_eps"], metavar="EPS"),
    _o("grpo", "clip_eps_high", float, "the ratio clip's high side (DAPO's clip-higher; "
       "default: clip_eps)", metavar="EPS"),
    _o("grpo", "reduction", str, "loss normaliser: per sequence (GRPO), per token (DAPO) or "
       "a constant (Dr. GRPO)", _GRPO["reduction"], choices=REDUCTIONS),
    _o("grpo", "scale_rewards", str, "divide advantages by the group's std, the batch's, or "
       "not at all (Dr. GRPO)", _GRPO["scale_rewards"], choices=SCALES),
    _o("grpo", "ddof", int, "the std's degrees of freedom (1: sample std, as TRL)",
       _GRPO["ddof"], choices=(0, 1)),
    _o("grpo", "partial_credit", float, "a wrong answer's reward: W times the share of digits "
       "in place (0: a 0/1 reward)", _GRPO["partial_credit"], metavar="W"),
)
PPO = (
    _o("ppo", "reward_model", str, "score completions with this reward model (finetune "
       "reward); default: the task's verifier", metavar="CKPT"),
    _o("ppo", "samples_per_prompt", int, "completions of each prompt per rollout",
       _PPO["samples_per_prompt"], metavar="N"),
    _o("ppo", "kl_coef", float, "per-token KL penalty to the reference in the reward",
       _PPO["kl_coef"], metavar="C"),
    _o("ppo", "kl_estimator", str, "the per-token KL estimate", _PPO["kl_estimator"],
       choices=KL_ESTIMATORS),
    _o("ppo", "gamma", float, "discount", _PPO["gamma"], metavar="G"),
    _o("ppo", "lam", float, "GAE lambda", _PPO["lam"], metavar="L"),
    _o("ppo", "clip_eps", float, "policy ratio clip", _PPO["clip_eps"], metavar="EPS"),
    _o("ppo", "value_clip", float, "value clip in reward units (0: unclipped)",
       _PPO["value_clip"], metavar="EPS"),
    _o("ppo", "vf_coef", float, "weight of the value loss", _PPO["vf_coef"], metavar="C"),
    _o("ppo", "ent_coef", float, "weight of the entropy bonus", _PPO["ent_coef"],
       metavar="C"),
    _o("ppo", "ppo_epochs", int, "passes over each rollout", _PPO["ppo_epochs"],
       metavar="E"),
    _o("ppo", "num_minibatches", int, "updates per pass", _PPO["num_minibatches"],
       metavar="M"),
    _o("ppo", "whiten_advantages", bool, "normalise the advantages over the rollout",
       _PPO["whiten_advantages"]),
    _o("ppo", "partial_credit", float, "verifier reward: W times the share of digits in place "
       "for a wrong answer", _PPO["partial_credit"], metavar="W"),
)
# fmt: on

_PAIRS_STEP = "pairs per micro-batch"
_PROMPTS_STEP = "prompts per step (each sampled G times)"
REWARD_OPTIONS = (
    START + (TEMPLATE,) + PAIRS_DATA
    + _train(max_iters=(300, None), lr=(3e-4, None), eval_interval=(50, None),
             batch_size=(16, _PAIRS_STEP))
    + REWARD
)  # fmt: skip
DPO_OPTIONS = (
    START + (TEMPLATE,) + PAIRS_DATA
    + _train(max_iters=(200, None), lr=(1e-4, None), eval_interval=(50, None),
             batch_size=(16, _PAIRS_STEP), weight_decay=(0.0, None))
    + LORA + DPO + EVAL[:1]
)  # fmt: skip
GRPO_OPTIONS = (
    START + (TEMPLATE,) + TASK_DATA
    + _train(max_iters=(100, None), lr=(1e-4, None), eval_interval=(25, None),
             batch_size=(16, _PROMPTS_STEP), weight_decay=(0.0, None),
             log_interval=(5, None), schedule=("constant", None),
             gradient_accumulation_steps=(1, "micro-batches each update is split into "
                                             "(whole groups; the loss is the same)"))
    + LORA + SAMPLING + GRPO + EVAL
)  # fmt: skip
PPO_OPTIONS = (
    START + (TEMPLATE,) + TASK_DATA
    + tuple(o for o in _train(max_iters=(100, None), lr=(1e-4, None),
                              eval_interval=(25, None), log_interval=(5, None),
                              batch_size=(32, "prompts per rollout"),
                              weight_decay=(0.0, None), schedule=("constant", None))
            if o.key != "gradient_accumulation_steps")
    + LORA + SAMPLING + PPO + EVAL
)  # fmt: skip


def dpo_config(s: dict[str, Any]) -> DPOConfig:
    return DPOConfig(**{k: s[k] for k in _DPO})


def reward_config(s: dict[str, Any]) -> RewardConfig:
    return RewardConfig(**{k: s[k] for k in _RM})


def grpo_config(s: dict[str, Any]) -> GRPOConfig:
    return GRPOConfig(**{k: s[k] for k in _GRPO})


def ppo_config(s: dict[str, Any]) -> PPOConfig:
    values = {k: s[k] for k in _PPO}
    if values["value_clip"] == 0:
        values["value_clip"] = None
    return PPOConfig(**values)


__all__ = [
    "DPO_OPTIONS",
    "GRPO_OPTIONS",
    "PPO_OPTIONS",
    "REWARD_OPTIONS",
    "dpo_config",
    "grpo_config",
    "ppo_config",
    "resolve_settings",
    "reward_config",
]
