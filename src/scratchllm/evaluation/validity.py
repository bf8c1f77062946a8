"""Has the model learned the language? Sample, verify, and compare distributions.

For a synthetic language (``scratchllm.data.languages``) we can do better than perplexity:

- **valid**: the fraction of M sampled strings the language's verifier accepts;
- **unique**: distinct samples / M (a model that repeats one valid string scores 1/M);
- **novel**: the fraction of samples that are not among the training samples (memorising
  the training set is not generalising);
- **kl**: for languages whose true next-symbol distribution is known, the mean over the
  symbol positions of held-out samples of ``KL(true || model)`` in nats: 0 means the
  model's predictions are the true ones.

Samples are drawn with ``sample_tokens`` (``generation.generate`` in seeded batches), each
starting from the end-of-sample marker (the same context a sample has in the training
stream) and cut at the next END.

>>> report = evaluate_language(model, tokenizer, get("markov:order=2"),
...                            train_samples=train, heldout=held_out)  # doctest: +SKIP
>>> report.valid, report.kl                                             # doctest: +SKIP
(1.0, 0.0012)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from scratchllm.data.languages import Language
from scratchllm.evaluation.perplexity import evaluate_text, format_table, next_token_logprobs
from scratchllm.evaluation.sampling import sample_tokens
from scratchllm.models.base import LanguageModel
from scratchllm.tokenizers.base import Tokenizer


@dataclass
class LanguageReport:
    language: str  # the spec
    n_samples: int  # M strings sampled
    valid: float  # fraction accepted by the verifier
    unique: float  # distinct / M
    novel: float | None  # fraction not among the training samples (None: not given)
    kl: float | None  # mean KL(true || model) per symbol, nats (None: unknown)
    kl_positions: int  # symbol positions the KL averages over
    val_loss: float | None  # held-out loss, nats per token
    perplexity: float | None
    bits_per_char: float | None
    temperature: float
    mean_length: float  # mean characters per sample (END included)
    invalid_examples: list[dict] = field(default_factory=list)  # a few, with the reason

    def to_dict(self) -> dict:
        return asdict(self)

    def format_table(self) -> str:
        table = format_table(self.to_dict())
        if self.invalid_examples:
            lines = [f"  {e['sample']!r}: {e['reason']}" for e in self.invalid_examples]
            table += "\ninvalid samples, e.g.:\n" + "\n".join(lines)
        return table


def evaluate_language(
    model: LanguageModel,
    tokenizer: Tokenizer,
    language: Language,
    n_samples: int = 1000,
    temperature: float = 1.0,
    seed: int = 0,
    train_samples: Iterable[str] | None = None,
    heldout: Sequence[str] | None = None,
    max_new_tokens: int | None = None,
    n_examples: int = 5,
) -> LanguageReport:
    """Sample ``n_samples`` strings from ``model`` and measure them against ``language``.

    ``heldout`` samples (not used in training) give the held-out loss and the KL;
    ``train_samples`` give the novelty. ``max_new_tokens`` bounds a sample's length
    (default: four times the longest known sample, at least 64 tokens).
    """
    end = language.END
    _check_vocab(model, tokenizer)
    end_ids = tokenizer.encode(end)
    stop = end_ids[0] if len(end_ids) == 1 else None
    if max_new_tokens is None:
        known = list(heldout or []) + [language.sample(_rng(seed))]
        longest = max(len(tokenizer.encode(s)) for s in known)
        max_new_tokens = max(64, 4 * longest)
    generated = sample_tokens(
        model,
        prompt=end_ids,
        n=n_samples,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        stop_token=stop,
    )
    samples = []
    for ids in generated:
        text = tokenizer.decode(ids)
        cut = text.find(end)
        samples.append(text if cut < 0 else text[: cut + 1])
    verdicts = [language.verify(s) for s in samples]
    n_valid = sum(v.valid for v in verdicts)
    novel = None
    if train_samples is not None:
        seen = set(train_samples)
        novel = sum(s not in seen for s in samples) / len(samples)
    examples = [
        {"sample": s, "position": v.position, "reason": v.reason}
        for s, v in zip(samples, verdicts)
        if not v.valid
    ][:n_examples]

    kl, kl_positions = None, 0
    val_loss = perplexity = bpc = None
    if heldout:
        stream = end + "".join(heldout)  # END first: the first sample starts in context
        report = evaluate_text(model, tokenizer, stream)
        val_loss, perplexity, bpc = report.loss, report.perplexity, report.bits_per_char
        found = kl_to_language(model, tokenizer, language, heldout)
        if found is not None:
            kl, kl_positions = found
    return LanguageReport(
        language=str(getattr(language, "spec", language)),
        n_samples=n_samples,
        valid=n_valid / n_samples,
        unique=len(set(samples)) / n_samples,
        novel=novel,
        kl=kl,
        kl_positions=kl_positions,
        val_loss=val_loss,
        perplexity=perplexity,
        bits_per_char=bpc,
        temperature=temperature,
        mean_length=float(np.mean([len(s) for s in samples])),
        invalid_examples=examples,
    )


@dataclass
class ValidityEvaluator:
    """A Trainer evaluator (``Trainer(evaluators=[...])``): at each evaluation, the share of
    ``n_samples`` strings sampled from the model that ``language`` accepts, and the share
    that are distinct. The same ``seed`` every time, so evaluations differ only by the
    model."""

    language: Language
    n_samples: int
    seed: int = 0

    def __call__(self, model: LanguageModel, tokenizer: Tokenizer) -> dict[str, float]:
        report = evaluate_language(
            model, tokenizer, self.language, n_samples=self.n_samples, seed=self.seed
        )
        return {"valid": report.valid, "unique": report.unique}


def kl_to_language(
    model: LanguageModel,
    tokenizer: Tokenizer,
    language: Language,
    samples: Sequence[str],
) -> tuple[float, int] | None:
    """``(mean KL(true || model) in nats, positions)`` over every symbol of ``samples``.

    At each position the true distribution is ``language.next_distribution(prefix)``
    and the model's is its prediction from the stream ``END + samples`` up to there.
    None when the language does not know its distribution, or when the tokenizer does
    not give each symbol its own token (then the model's symbol probabilities are not
    single predictions).
    """
    end = language.END
    stream = end + "".join(samples)
    ids = tokenizer.encode(stream)
    symbol_ids = {}
    for sym in language.alphabet:
        enc = tokenizer.encode(sym)
        if len(enc) != 1:
            return None
        symbol_ids[sym] = enc[0]
    if len(ids) != len(stream) or len(set(symbol_ids.values())) != len(symbol_ids):
        return None
    # prefix_start[p]: where the sample holding stream[p] begins
    starts = np.zeros(len(stream), dtype=np.int64)
    begin = 0
    for p, ch in enumerate(stream):
        starts[p] = begin
        if ch == end:
            begin = p + 1
    cache: dict[str, tuple[torch.Tensor, torch.Tensor] | None] = {}
    columns = torch.tensor(list(symbol_ids.values()))
    total, count = 0.0, 0
    for positions, logprobs in next_token_logprobs(model, ids):
        q = logprobs[:, columns].double()  # (k, S): model log-probs of the symbols
        for row, p in zip(q, positions.tolist()):
            prefix = stream[starts[p] : p]
            if prefix not in cache:
                dist = language.next_distribution(prefix)
                cache[prefix] = None if dist is None else _as_vectors(dist, symbol_ids)
            target = cache[prefix]
            if target is None:
                return None
            idx, probs = target
            total += float((probs * (probs.log() - row[idx])).sum())
            count += 1
    if count == 0:
        return None
    return total / count, count


def _as_vectors(
    dist: dict[str, float], symbol_ids: dict[str, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(column indices into the symbol list, probabilities) of the symbols with p > 0."""
    order = list(symbol_ids)
    items = [(order.index(s), p) for s, p in dist.items() if p > 0]
    idx = torch.tensor([i for i, _ in items], dtype=torch.long)
    return idx, torch.tensor([p for _, p in items], dtype=torch.float64)


def _check_vocab(model: LanguageModel, tokenizer: Tokenizer) -> None:
    if tokenizer.vocab_size != model.vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
            f"{model.vocab_size}; use the tokenizer the model was trained with"
        )


def _rng(seed: int) -> Any:
    import random

    return random.Random(seed)
