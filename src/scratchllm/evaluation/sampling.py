"""Many samples from one prompt, for measuring: ``generation.generate`` in seeded batches.

The validity of a model on a language (``validity.evaluate_language``, the study, the
Trainer's evaluations) is measured on strings sampled here, and here samples come from
``generate``: the same decode loop, KV cache and sampling that ``scratchllm sample``
runs, so a measured figure is a figure of what a user gets. Sample ``i`` of a call is
drawn by its own generator, seeded with the ``i``-th word of
``numpy.random.SeedSequence(seed)``: the samples do not depend on the batch size, the
first k of n are the k of a call with n = k, and two seeds give unrelated samples.

>>> model = NGram(NGramConfig(n=2, vocab_size=3, smoothing=0)).fit([0, 1, 2, 0, 1, 2])
>>> sample_tokens(model, prompt=[0], n=2, max_new_tokens=4, seed=0)   # doctest: +SKIP
[[1, 2, 0, 1], [1, 2, 0, 1]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from scratchllm.generation import generate
from scratchllm.models.base import LanguageModel


def sample_seeds(seed: int, n: int) -> list[int]:
    """The seeds of samples ``0..n-1`` of a call seeded ``seed``.

    >>> sample_seeds(0, 3) == sample_seeds(0, 5)[:3]
    True
    """
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n)]


def sample_tokens(
    model: LanguageModel,
    prompt: Sequence[int],
    n: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    seed: int = 0,
    stop_token: int | None = None,
    batch_size: int = 256,
) -> list[list[int]]:
    """``n`` continuations of ``prompt``, each up to ``max_new_tokens`` new tokens.

    A sequence stops after it produces ``stop_token`` (which it keeps). ``temperature`` 0
    means greedy (always the most likely token); higher flattens the distribution.
    The same ``seed`` gives the same samples; ``batch_size`` rows are decoded at once.
    """
    if not temperature >= 0:
        raise ValueError(f"temperature ({temperature!r}) must be >= 0 (0 = greedy)")
    if n < 1 or max_new_tokens < 1:
        raise ValueError(f"n ({n}) and max_new_tokens ({max_new_tokens}) must be >= 1")
    prompt = list(prompt)
    if not prompt:
        raise ValueError("the prompt needs at least one token (e.g. the end-of-sample marker)")
    seeds = sample_seeds(seed, n)
    out: list[list[int]] = []
    for first in range(0, n, batch_size):
        rows = seeds[first : first + batch_size]
        ids = generate(
            model,
            [prompt] * len(rows),
            max_new_tokens,
            temperature=temperature,
            eos_token_id=stop_token,
            seed=rows,
        )
        for row in ids[:, len(prompt) :].tolist():
            if stop_token is not None and stop_token in row:
                row = row[: row.index(stop_token) + 1]  # what follows is padding
            out.append(row)
    return out
