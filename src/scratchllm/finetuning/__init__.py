"""Post-training losses as pure functions: tensors in, a loss and what to log out.

Each module is one concept, each loss its formula in the docstring beside the code, and
each is held against TRL (``tests/finetuning``). The trainers and the ``scratchllm
finetune`` verbs are built on these.

- ``logprobs``: ``token_logprobs`` ``[B, T]``, ``sequence_logprobs`` ``[B]`` (sums, as DPO
  needs), ``entropy``, ``masked_mean``.
- ``distill``: ``distillation_loss`` = a * CE + (1 - a) * T^2 * D(teacher || student), D in
  forward KL, reverse KL, generalized JSD(beta); ``token_divergence``.
- ``preference``: ``dpo_loss`` (sigmoid / cDPO, ipo, hinge) with its rewards, accuracy, margin.
- ``reward``: ``bradley_terry_loss`` and ``pair_accuracy`` for the reward model.
- ``kl``: ``kl_estimate`` (k1, k2, k3) and ``shaped_rewards`` (classic RLHF per-token rewards).
- ``advantages``: ``gae`` (advantages and returns) and ``whiten``.
- ``ppo``: ``ppo_policy_loss``, ``ppo_value_loss``, ``entropy_bonus``.
- ``grpo``: ``group_advantages`` and ``grpo_loss`` (sequence, token, Dr. GRPO reductions).
- ``passk``: ``pass_at_k``, the unbiased estimator (no torch).

>>> from scratchllm.finetuning import dpo_loss, sequence_logprobs      # doctest: +SKIP
"""

from importlib import import_module

# Names load on first use (PEP 562): ``passk`` is pure Python and imports without torch.
_EXPORTS = {
    "IGNORE_INDEX": "logprobs",
    "token_logprobs": "logprobs",
    "sequence_logprobs": "logprobs",
    "entropy": "logprobs",
    "masked_mean": "logprobs",
    "masked_sum": "logprobs",
    "DistillationOutput": "distill",
    "distillation_loss": "distill",
    "token_divergence": "distill",
    "DPOOutput": "preference",
    "dpo_loss": "preference",
    "RewardOutput": "reward",
    "bradley_terry_loss": "reward",
    "pair_accuracy": "reward",
    "ShapedRewards": "kl",
    "kl_estimate": "kl",
    "shaped_rewards": "kl",
    "GAEOutput": "advantages",
    "gae": "advantages",
    "whiten": "advantages",
    "PolicyLossOutput": "ppo",
    "ValueLossOutput": "ppo",
    "entropy_bonus": "ppo",
    "ppo_policy_loss": "ppo",
    "ppo_value_loss": "ppo",
    "GRPOOutput": "grpo",
    "GroupAdvantages": "grpo",
    "group_advantages": "grpo",
    "grpo_loss": "grpo",
    "mean_pass_at_k": "passk",
    "pass_at_k": "passk",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
