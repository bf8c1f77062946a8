"""Measuring models: perplexity on text, and validity / novelty / KL on synthetic languages.

- ``perplexity``: ``evaluate_text`` (loss, perplexity, bits per token/char/byte) and the
  sliding-window ``next_token_logprobs`` every measurement shares.
- ``sampling``: ``sample_tokens``, many seeded samples of one prompt through
  ``generation.generate`` (the sampler ``scratchllm sample`` runs).
- ``validity``: ``evaluate_language`` (valid, unique, novel, KL), ``kl_to_language``, and
  ``ValidityEvaluator`` (the Trainer's evaluator for a language).
- ``task``: ``evaluate_task`` (exact-match accuracy on held-out prompts of a language with
  answers, by operand length and carries for addition, scratchpad steps, pass@k).
- ``run``: ``evaluate_checkpoint``, a saved model measured on text or a language (what
  ``scratchllm eval`` does).
- ``inspect``: the plots that show what a model learned (``inspect_checkpoint``).
"""

from scratchllm.evaluation.perplexity import (
    PerplexityReport,
    evaluate_ids,
    evaluate_text,
    next_token_logprobs,
)
from scratchllm.evaluation.run import evaluate_checkpoint
from scratchllm.evaluation.sampling import sample_tokens
from scratchllm.evaluation.task import TaskResult, evaluate_task, heldout_prompts
from scratchllm.evaluation.validity import (
    LanguageReport,
    ValidityEvaluator,
    evaluate_language,
    kl_to_language,
)

__all__ = [
    "LanguageReport",
    "PerplexityReport",
    "TaskResult",
    "ValidityEvaluator",
    "evaluate_checkpoint",
    "evaluate_ids",
    "evaluate_language",
    "evaluate_task",
    "evaluate_text",
    "heldout_prompts",
    "kl_to_language",
    "next_token_logprobs",
    "sample_tokens",
]
