"""Perplexity and bits per character/byte on held-out text.

The model predicts every token of the text but the first, each exactly once, from up to
``context_length`` tokens before it. Windows of the model's context slide over the tokens
by ``stride``; a window scores only the targets no earlier window scored, so each target
sees at least ``context_length - stride + 1`` tokens of context (all of it with stride 1,
the default for short contexts such as an n-gram's)::

    loss            mean negative log-likelihood, nats per token
    perplexity      exp(loss): the effective number of equally likely choices per token
    bits_per_token  loss / ln 2
    bits_per_char   total bits / characters predicted  (comparable across tokenizers)
    bits_per_byte   total bits / UTF-8 bytes predicted

>>> report = evaluate_text(model, tokenizer, held_out_text)           # doctest: +SKIP
>>> print(report.format_table())                                     # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from scratchllm.generation.generate import model_device
from scratchllm.metrics import LN2, perplexity
from scratchllm.models.base import LanguageModel, at_least_float32
from scratchllm.tokenizers.base import Tokenizer


@dataclass
class PerplexityReport:
    n_tokens: int  # targets scored (the text's tokens minus the first)
    loss: float  # nats per token
    perplexity: float
    bits_per_token: float
    n_chars: int | None = None  # characters those targets cover
    bits_per_char: float | None = None
    n_bytes: int | None = None  # UTF-8 bytes those targets cover
    bits_per_byte: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def format_table(self) -> str:
        return format_table(self.to_dict())


def default_stride(window: int) -> int:
    """1 (every target gets the full context) for windows up to 32, else half the window."""
    return 1 if window <= 32 else window // 2


@torch.inference_mode()
def next_token_logprobs(
    model: LanguageModel,
    ids: Sequence[int] | np.ndarray,
    stride: int | None = None,
    batch_size: int | None = None,
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """Yield ``(positions, logprobs)``: for each target position p (1..N-1, in order, each
    once), the model's log-probabilities ``[V]`` for ``ids[p]`` given the tokens before it.

    ``batch_size`` windows go through the model at once (default: about 8192 tokens' worth,
    so an n-gram's 2-token windows are not fed 64 at a time).
    """
    ids = np.asarray(ids)
    N = len(ids)
    if N < 2:
        raise ValueError(f"need at least 2 tokens to measure a prediction, got {N}")
    W = min(max(1, model.context_length), N - 1)
    S = default_stride(W) if stride is None else stride
    if not 1 <= S <= W:
        raise ValueError(f"stride ({S}) must be between 1 and the window ({W} tokens)")
    if batch_size is None:
        batch_size = max(1, 8192 // W)
    starts = np.arange(0, N - W, S)  # the last window ends at target N - 1
    if starts[-1] != N - 1 - W:
        starts = np.append(starts, N - 1 - W)
    ends = starts + W  # last target of each window
    new = np.diff(ends, prepend=0)  # targets no earlier window scored (the first: all W)
    device = model_device(model)
    model.eval()
    offsets = np.arange(W)
    for b in range(0, len(starts), batch_size):
        s, k = starts[b : b + batch_size], new[b : b + batch_size]
        x = torch.from_numpy(ids[s[:, None] + offsets].astype(np.int64)).to(device)  # (B, W)
        logits, _ = model(x)  # (B, W, V)
        keep = offsets[None, :] >= (W - k)[:, None]  # (B, W): the newly scored positions
        kept = at_least_float32(logits)[torch.from_numpy(keep).to(device)]  # (k, V)
        logprobs = F.log_softmax(kept, dim=-1)
        positions = (s[:, None] + offsets + 1)[keep]  # target index of each kept row
        yield positions, logprobs


def evaluate_ids(
    model: LanguageModel,
    ids: Sequence[int] | np.ndarray,
    stride: int | None = None,
    batch_size: int | None = None,
) -> tuple[float, int]:
    """``(total negative log-likelihood in nats, number of targets)`` over ``ids``."""
    ids = np.asarray(ids)
    total, count = 0.0, 0
    for positions, logprobs in next_token_logprobs(model, ids, stride, batch_size):
        targets = torch.from_numpy(ids[positions].astype(np.int64)).to(logprobs.device)
        total -= float(logprobs.gather(1, targets[:, None]).double().sum())
        count += len(positions)
    return total, count


def evaluate_text(
    model: LanguageModel,
    tokenizer: Tokenizer,
    text: str,
    stride: int | None = None,
    batch_size: int | None = None,
) -> PerplexityReport:
    """Perplexity and bits per token/char/byte of ``model`` on ``text``."""
    ids = tokenizer.encode(text)
    if tokenizer.vocab_size != model.vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
            f"{model.vocab_size}; use the tokenizer the model was trained with"
        )
    if len(ids) < 2:
        raise ValueError(
            f"the text has {len(ids)} token(s); perplexity needs at least 2 (give more text)"
        )
    nll, count = evaluate_ids(model, ids, stride, batch_size)
    # The first token is context only, so the characters predicted are the rest of the text.
    first = tokenizer.decode(ids[:1])
    n_chars = len(text) - len(first)
    n_bytes = len(text.encode("utf-8", "surrogatepass")) - len(first.encode("utf-8", "replace"))
    bits = nll / LN2
    loss = nll / count
    return PerplexityReport(
        n_tokens=count,
        loss=loss,
        perplexity=perplexity(loss),
        bits_per_token=loss / LN2,
        n_chars=n_chars,
        bits_per_char=bits / n_chars if n_chars > 0 else None,
        n_bytes=n_bytes,
        bits_per_byte=bits / n_bytes if n_bytes > 0 else None,
    )


def format_table(values: dict) -> str:
    """Two aligned columns, ``metric  value``; floats to 4 significant places, None as '-'."""
    rows = []
    for key, value in values.items():
        if isinstance(value, list | dict):
            continue
        if value is None:
            shown = "-"
        elif isinstance(value, float):
            shown = f"{value:.4g}" if math.isfinite(value) else str(value)
        else:
            shown = str(value)
        rows.append((key, shown))
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
