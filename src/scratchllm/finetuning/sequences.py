"""Prompt + completion rows: how every preference and RL method hands text to a model.

A method sees a prompt (messages, rendered by the run's chat template) and a completion
(a reply: chosen, rejected, or sampled). Both become ids and are laid end to end, one row
per completion, right-padded to the longest row of the batch::

    ids     END 3 7 + 4 5 = 8 2 END  pad pad        (a plain-template language task)
    x       ids[:, :-1]                            what the model reads
    y       ids[:, 1:], -1 on padding              what it predicts
    mask    True where y is a completion token     what is scored: 8, 2 and END

``mask[b, t]`` says whether predicting ``y[b, t]`` counts, the ``[B, T]`` convention of
``finetuning.logprobs``. Right padding needs no attention mask: a causal model's real
positions never look ahead at it.

The prompt is ``prompt_ids``: the template's ``render_prompt`` (ending with its assistant
token), after the plain template's END (``finetuning.data.plain_prefix``: every sample of
a language's stream starts after one). The completion of a reply is its text and, for a
chat template, the end-of-turn token, so the two together are exactly what
``ChatTemplate.render`` gives the same conversation (tested), and a sampled completion
(``rollout``) is the tokens generated up to and including the stop token.

>>> rows = make_rows([[1, 2], [1]], [[3, 4], [5]], pad_id=0)
>>> rows.x.tolist(), rows.y.tolist(), rows.mask.int().tolist()
([[1, 2, 3], [1, 0, 0]], [[2, 3, 4], [5, -1, -1]], [[0, 1, 1], [1, 0, 0]])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from scratchllm.data.chat import ChatTemplate, Message
from scratchllm.finetuning.data import plain_prefix
from scratchllm.finetuning.logprobs import IGNORE_INDEX, token_logprobs


def prompt_ids(template: ChatTemplate, prompt: Sequence[Message]) -> list[int]:
    """The ids a model is given for ``prompt``: where generation (and the reply) starts."""
    return plain_prefix(template) + template.render_prompt(prompt)


def reply_ids(template: ChatTemplate, text: str) -> list[int]:
    """The ids of a reply: its text, then the template's end token (a chat template's; the
    plain template's reply ends with the language's END, part of the text)."""
    ids = template.tokenizer.encode_ordinary(text)
    return ids + ([template.end_id] if template.end_id is not None else [])


@dataclass
class Rows:
    """Prompt + completion rows, right-padded; see the module docstring."""

    x: torch.Tensor  # [B, T] inputs
    y: torch.Tensor  # [B, T] targets, IGNORE_INDEX on padding
    mask: torch.Tensor  # [B, T] bool, True on the completion's targets
    prompt_lens: list[int]
    completion_lens: list[int]

    def to(self, device: torch.device | str) -> Rows:
        return Rows(
            self.x.to(device),
            self.y.to(device),
            self.mask.to(device),
            self.prompt_lens,
            self.completion_lens,
        )

    def select(self, index: Sequence[int] | torch.Tensor) -> Rows:
        """The rows at ``index`` (cut to their own longest row)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        lens = [self.prompt_lens[i] + self.completion_lens[i] - 1 for i in idx.tolist()]
        T = max(lens)
        return Rows(
            self.x[idx, :T],
            self.y[idx, :T],
            self.mask[idx, :T],
            [self.prompt_lens[i] for i in idx.tolist()],
            [self.completion_lens[i] for i in idx.tolist()],
        )

    @property
    def last_index(self) -> torch.Tensor:
        """``[B]``: the position of each row's last real input (it predicts nothing after
        it; a reward model and a value head read the hidden state there)."""
        return torch.tensor(
            [p + c - 2 for p, c in zip(self.prompt_lens, self.completion_lens)],
            device=self.x.device,
        )


def make_rows(
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    pad_id: int = 0,
    max_length: int | None = None,
) -> Rows:
    """Rows of ``prompts[i] + completions[i]`` (module docstring).

    ``max_length``: the model's context; a longer row is an error naming it (a cut would
    score a completion the model never saw whole).
    """
    if len(prompts) != len(completions) or not prompts:
        raise ValueError(
            f"{len(prompts)} prompts and {len(completions)} completions: give one completion "
            "per prompt, at least one"
        )
    seqs = []
    for i, (p, c) in enumerate(zip(prompts, completions)):
        if not p or not c:
            raise ValueError(f"row {i}: the prompt and the completion need a token each")
        seqs.append(list(p) + list(c))
    T = max(len(s) for s in seqs) - 1
    if max_length is not None and max_length < T:
        i = max(range(len(seqs)), key=lambda i: len(seqs[i]))
        raise ValueError(
            f"row {i} has {len(prompts[i])} prompt + {len(completions[i])} completion tokens, "
            f"more than the model's context of {max_length} + 1; shorten it or use a model with "
            "a longer context"
        )
    B = len(seqs)
    x = torch.full((B, T), pad_id, dtype=torch.long)
    y = torch.full((B, T), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b, (s, p) in enumerate(zip(seqs, prompts)):
        n = len(s) - 1
        x[b, :n] = torch.tensor(s[:-1])
        y[b, :n] = torch.tensor(s[1:])
        mask[b, len(p) - 1 : n] = True  # targets s[len(p):], the completion
    return Rows(x, y, mask, [len(p) for p in prompts], [len(c) for c in completions])


def completion_logprobs(model: torch.nn.Module, rows: Rows) -> torch.Tensor:
    """``[B, T]`` log-probabilities of the completion tokens under ``model``, 0 elsewhere
    (``finetuning.logprobs.token_logprobs``): sum over ``T`` for a completion's log p."""
    logits, _ = model(rows.x)  # [B, T, V]
    return token_logprobs(logits, rows.y, rows.mask)


def full_sequences(
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    pad_id: int = 0,
    max_length: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids [B, L], last [B])``: whole prompt + completion sequences, right-padded, and
    the index of each one's last token (where a reward model reads its score)."""
    seqs = [list(p) + list(c) for p, c in zip(prompts, completions)]
    L = max(len(s) for s in seqs)
    if max_length is not None and max_length < L:
        raise ValueError(
            f"a prompt and its completion are {L} tokens, more than the reward model's "
            f"context of {max_length}"
        )
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = torch.tensor(s)
    return ids, torch.tensor([len(s) - 1 for s in seqs])
