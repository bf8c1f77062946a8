"""Measuring models: perplexity on text, and validity / novelty / KL on synthetic languages.

- ``perplexity``: ``evaluate_text`` (loss, perplexity, bits per token/char/byte) and the
  sliding-window ``next_token_logprobs`` every measurement shares.
- ``sampling``: ``sample_tokens``, many seeded samples of one prompt through
  ``generation.generate`` (the sampler ``scratchllm sample`` runs).
- ``validity``: ``evaluate_language`` (valid, unique, novel, KL) and ``kl_to_language``.
"""

from scratchllm.evaluation.perplexity import (
    PerplexityReport,
    evaluate_ids,
    evaluate_text,
    next_token_logprobs,
)
from scratchllm.evaluation.sampling import sample_tokens
from scratchllm.evaluation.validity import LanguageReport, evaluate_language, kl_to_language

__all__ = [
    "LanguageReport",
    "PerplexityReport",
    "evaluate_ids",
    "evaluate_language",
    "evaluate_text",
    "kl_to_language",
    "next_token_logprobs",
    "sample_tokens",
]
