"""Logits processors: small functions of the next-token logits, applied one after another.

Each processor is called as ``processor(input_ids, logits) -> logits`` with the tokens so
far ``input_ids [B, T]`` and the next-token logits ``logits [B, V]``, the calling
convention of Hugging Face's ``LogitsProcessor``, so a user can pass theirs too. None of
them modifies its input in place.

The order ``generate`` uses is Hugging Face's: the repetition penalty (it changes which
token is most likely, so it counts for greedy decoding and beam search too), then, only
when sampling, temperature, top-k and top-p. Filtered tokens get ``-inf`` so softmax gives
them probability 0.

>>> import torch
>>> chain = ProcessorChain([Temperature(0.5), TopK(2)])
>>> chain(torch.zeros(1, 0, dtype=torch.long), torch.tensor([[1.0, 3.0, 2.0]])).tolist()
[[-inf, 6.0, 4.0]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Temperature:
    """Divide the logits by ``temperature`` (> 0): below 1 sharpens, above 1 flattens.

    Temperature 0 (greedy) is not a division; ``generate`` handles it by taking the argmax.
    """

    temperature: float

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(
                f"temperature must be > 0 to scale logits, got {self.temperature} "
                "(use 0 in generate() for greedy decoding)"
            )

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return logits / self.temperature


@dataclass(frozen=True)
class TopK:
    """Keep the ``top_k`` largest logits per row (and any tied with the k-th); -inf the rest."""

    top_k: int

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise ValueError(f"top_k must be an integer >= 1, got {self.top_k!r}")

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        k = min(self.top_k, logits.shape[-1])
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1) the k-th largest logit
        return logits.masked_fill(logits < kth, float("-inf"))


@dataclass(frozen=True)
class TopP:
    """Nucleus sampling: keep the most likely tokens until their probability reaches ``top_p``.

    A token is dropped when the tokens ranked above it already hold ``top_p`` of the mass,
    so the most likely token always stays (at least ``min_tokens_to_keep`` do).

    >>> import torch
    >>> logits = torch.tensor([[0.5, 0.3, 0.2]]).log()
    >>> TopP(0.7)(None, logits).isinf().tolist()  # 0.5 < 0.7: 0.3 stays; 0.8 >= 0.7: 0.2 goes
    [[False, False, True]]
    """

    top_p: float
    min_tokens_to_keep: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.min_tokens_to_keep < 1:
            raise ValueError(f"min_tokens_to_keep must be >= 1, got {self.min_tokens_to_keep}")

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        # "The better tokens hold >= top_p" is the same as "this token and the worse ones
        # hold <= 1 - top_p". We sum from the least likely end: small numbers added first
        # keep their precision, so top_p close to 1 does not drop tokens by rounding.
        sorted_logits, order = torch.sort(logits, dim=-1)  # (B, V) ascending
        mass_at_or_below = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = mass_at_or_below <= 1.0 - self.top_p
        drop_sorted[..., -self.min_tokens_to_keep :] = False
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        return logits.masked_fill(drop, float("-inf"))


@dataclass(frozen=True)
class RepetitionPenalty:
    """Make tokens already in ``input_ids`` less likely (CTRL, Keskar et al. 2019).

    A seen token's logit is divided by ``penalty`` when positive and multiplied by it when
    negative, so ``penalty > 1`` always lowers it; each token is penalised once however
    often it occurred. The prompt counts, as in Hugging Face.

    >>> import torch
    >>> RepetitionPenalty(2.0)(torch.tensor([[0, 1, 1]]), torch.tensor([[4.0, -4.0, 4.0]]))
    tensor([[ 2., -8.,  4.]])
    """

    penalty: float

    def __post_init__(self) -> None:
        if not self.penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0 (1.0 = off), got {self.penalty}")

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        seen = logits.gather(-1, input_ids)  # (B, T) the logit of every token seen so far
        seen = torch.where(seen < 0, seen * self.penalty, seen / self.penalty)
        # Duplicates in input_ids write the same value, so the scatter is well defined.
        return logits.scatter(-1, input_ids, seen)


class ProcessorChain(list):
    """A list of processors applied in order; itself a processor."""

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        for processor in self:
            logits = processor(input_ids, logits)
        return logits


def check_sampling_args(
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    repetition_penalty: float,
) -> None:
    """Raise a ValueError naming the first out-of-range sampling setting."""
    if temperature is None or not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k is not None:
        TopK(top_k)
    if top_p is not None:
        TopP(top_p)
    RepetitionPenalty(repetition_penalty)


def build_processors(
    *,
    do_sample: bool,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    extra: Sequence[LogitsProcessor] = (),
) -> ProcessorChain:
    """The chain ``generate`` applies: penalty, the user's ``extra``, then the sampling warpers.

    Settings that change nothing (temperature 1, top_p 1, penalty 1) add no processor, so
    the plain case costs nothing per token.
    """
    check_sampling_args(temperature, top_k, top_p, repetition_penalty)
    chain = ProcessorChain()
    if repetition_penalty != 1.0:
        chain.append(RepetitionPenalty(repetition_penalty))
    chain.extend(extra)
    if do_sample:
        if temperature != 1.0:
            chain.append(Temperature(temperature))
        if top_k is not None:
            chain.append(TopK(top_k))
        if top_p is not None and top_p < 1.0:
            chain.append(TopP(top_p))
    return chain


def sample_tokens(logits: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """One token per row of ``logits [B, V]``, drawn from ``softmax(logits)`` by inverse CDF
    with one uniform from row b's own ``generators[b]``, so a row's draws depend on nothing
    but its logits and its generator (not on the other rows of the batch)."""
    probs = torch.softmax(logits.float(), dim=-1)  # (B, V)
    cdf = probs.cumsum(dim=-1)
    u = torch.cat([torch.rand(1, generator=g) for g in generators]).to(cdf.device)
    target = (u * cdf[:, -1])[:, None]  # (B, 1) scaled by the total to absorb rounding
    tokens = torch.searchsorted(cdf, target, right=True)[:, 0]
    return tokens.clamp_(max=logits.shape[-1] - 1)
