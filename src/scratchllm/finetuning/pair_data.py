"""Preference pairs as token ids, split into training and held-out pairs.

Each ``PreferencePair`` (``data.preferences``) becomes three id lists: the prompt
(``sequences.prompt_ids``), the chosen reply and the rejected one (``sequences.reply_ids``).
A batch of ``B`` pairs is one forward of ``2B`` rows, the chosen ones first
(``pair_rows``): both replies of a pair see the same prompt ids.

**Held out** are the pairs whose prompt falls in a ``val_fraction`` share by a hash
(``held_out``), so a prompt's pairs are all on one side and the held-out preference
accuracy is measured on prompts never trained on.

>>> held_out("37+45=", 0.1), held_out("37+45=", 1.0)
(False, True)
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from scratchllm.data.chat import ChatTemplate
from scratchllm.data.preferences import PreferencePair
from scratchllm.finetuning.logprobs import token_logprobs
from scratchllm.finetuning.sequences import Rows, make_rows, prompt_ids, reply_ids


@dataclass(frozen=True)
class EncodedPair:
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]
    source: str


def held_out(prompt: str, fraction: float) -> bool:
    """Whether a prompt's pairs are held out: a stable hash, the same on every run."""
    return zlib.crc32(("pairs:" + prompt).encode("utf-8", "surrogatepass")) % 10_000 < (
        fraction * 10_000
    )


def encode_pairs(
    pairs: Sequence[PreferencePair], template: ChatTemplate, max_length: int
) -> list[EncodedPair]:
    """Every pair as ids; a pair longer than the model's context is an error naming it."""
    out = []
    for p in pairs:
        try:
            ids = prompt_ids(template, p.prompt)
            w, l = reply_ids(template, p.chosen), reply_ids(template, p.rejected)
        except ValueError as e:
            raise ValueError(f"{p.source}: {e}") from None
        longest = len(ids) + max(len(w), len(l)) - 1
        if longest > max_length:
            raise ValueError(
                f"{p.source}: the prompt and its longer reply are {longest + 1} tokens, more than "
                f"the model's context of {max_length} + 1; shorten the pair or drop it"
            )
        out.append(EncodedPair(ids, w, l, p.source))
    return out


def split_pairs(pairs: Sequence[PreferencePair], fraction: float) -> tuple[list[int], list[int]]:
    """``(train indices, held-out indices)``; an error when either side is empty."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction ({fraction!r}) must be in [0, 1)")
    val = [i for i, p in enumerate(pairs) if held_out(p.prompt_text, fraction)]
    train = [i for i, p in enumerate(pairs) if not held_out(p.prompt_text, fraction)]
    if not train:
        raise ValueError(f"every one of the {len(pairs)} pairs is held out; lower --val-fraction")
    if fraction > 0 and not val:
        raise ValueError(
            f"no pair is held out with --val-fraction {fraction:g} ({len(pairs)} pairs, "
            f"{len({p.prompt_text for p in pairs})} prompts); give more pairs or a larger fraction"
        )
    return train, val


def pair_rows(pairs: Sequence[EncodedPair], pad_id: int = 0) -> Rows:
    """``2B`` rows: the ``B`` chosen replies, then the ``B`` rejected ones."""
    prompts = [p.prompt for p in pairs] * 2
    replies = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    return make_rows(prompts, replies, pad_id)


def pair_logprobs(
    model: torch.nn.Module, pairs: Sequence[EncodedPair], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log pi(chosen) [B], log pi(rejected) [B])``: log-probs summed over each reply's
    tokens (``logprobs.sequence_logprobs``' ``"sum"``), in one forward of ``2B`` rows."""
    rows = pair_rows(pairs).to(device)
    logits, _ = model(rows.x)  # [2B, T, V]
    total = token_logprobs(logits, rows.y, rows.mask).sum(-1)  # [2B]
    B = len(pairs)
    return total[:B], total[B:]
