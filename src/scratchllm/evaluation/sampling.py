"""A plain ancestral sampler that works for any ``LanguageModel``.

Each step re-runs ``forward`` on the last ``context_length`` tokens and draws the next
token from ``softmax(logits / temperature)``: no cache, no tricks, so it serves every model
family the same way (the fast decode loop is ``scratchllm.generation``'s job). It draws many
sequences at once as one batch.

>>> model = NGram(NGramConfig(n=2, vocab_size=3, smoothing=0)).fit([0, 1, 2, 0, 1, 2])
>>> sample_tokens(model, prompt=[0], n=2, max_new_tokens=4, seed=0)   # doctest: +SKIP
[[1, 2, 0, 1], [1, 2, 0, 1]]
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from scratchllm.models.base import LanguageModel


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's tensors live (CPU for a model with none)."""
    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


@torch.inference_mode()
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
    The same ``seed`` gives the same samples.
    """
    if not temperature >= 0:
        raise ValueError(f"temperature ({temperature!r}) must be >= 0 (0 = greedy)")
    if n < 1 or max_new_tokens < 1:
        raise ValueError(f"n ({n}) and max_new_tokens ({max_new_tokens}) must be >= 1")
    prompt = list(prompt)
    if not prompt:
        raise ValueError("the prompt needs at least one token (e.g. the end-of-sample marker)")
    model.eval()
    device = model_device(model)
    generator = torch.Generator(device=device).manual_seed(seed)
    window = max(1, model.context_length)
    out: list[list[int]] = []
    for first in range(0, n, batch_size):
        b = min(batch_size, n - first)
        seq = torch.tensor([prompt] * b, dtype=torch.long, device=device)  # (b, P)
        done = torch.zeros(b, dtype=torch.bool, device=device)
        for _ in range(max_new_tokens):
            logits, _ = model(seq[:, -window:])
            logits = logits[:, -1, :].float()  # (b, V): the next token's scores
            if temperature == 0:
                nxt = logits.argmax(-1)
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            seq = torch.cat([seq, nxt[:, None]], dim=1)  # (b, P + t)
            if stop_token is not None:
                done |= nxt == stop_token
                if bool(done.all()):
                    break
        for row in seq[:, len(prompt) :].tolist():
            if stop_token is not None and stop_token in row:
                row = row[: row.index(stop_token) + 1]
            out.append(row)
    return out
