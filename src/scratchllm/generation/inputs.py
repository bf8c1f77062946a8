"""Turn what a user passes as prompts into one left-padded batch.

A prompt batch is a LongTensor ``[B, T]`` (with an optional ``attention_mask`` whose 0s
mark left padding), one list of ids, or a list of id lists of different lengths. Decoder
models continue a sequence at its right end, so padding goes on the left: every row's
next token is then written into the same column.

>>> p = prepare_prompts([[5, 6, 7], [8]], pad_token_id=0, vocab_size=10)
>>> p.ids.tolist(), p.pad_lens
([[5, 6, 7], [0, 0, 8]], [0, 2])
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from scratchllm.generation.config import GenerationConfig


class PromptTruncatedWarning(UserWarning):
    """A prompt is longer than the model's context: only its last tokens condition it."""


@dataclass
class Prompts:
    """A left-padded prompt batch."""

    ids: torch.Tensor  # (B, T) long; the pad columns hold whatever the user gave
    pad_lens: list[int]  # per row, how many leading columns are padding

    @property
    def shape(self) -> tuple[int, int]:
        B, T = self.ids.shape
        return B, T

    @property
    def padded(self) -> bool:
        return max(self.pad_lens) > 0

    def real_mask(self) -> torch.Tensor:
        """``[B, T]`` bool, True at real tokens."""
        T = self.ids.shape[1]
        cols = torch.arange(T, device=self.ids.device)
        lens = torch.tensor(self.pad_lens, device=self.ids.device)
        return cols[None, :] >= lens[:, None]


def prepare_prompts(
    idx: torch.Tensor | Sequence[int] | Sequence[Sequence[int]],
    *,
    attention_mask: torch.Tensor | None = None,
    pad_token_id: int | None = None,
    vocab_size: int | None = None,
    device: torch.device | str | None = None,
) -> Prompts:
    """Validate the prompts and left-pad them into one batch (see the module docstring)."""
    if isinstance(idx, torch.Tensor):
        prompts = _from_tensor(idx, attention_mask)
    else:
        if attention_mask is not None:
            raise ValueError(
                "attention_mask goes with a tensor of prompts; a list of prompts is padded for you"
            )
        prompts = _from_lists(idx, pad_token_id)
    if device is not None:
        prompts.ids = prompts.ids.to(device)
    if vocab_size is not None:
        _check_range(prompts, vocab_size)
    return prompts


def prompts_for(
    model: torch.nn.Module,
    idx: torch.Tensor | Sequence[int] | Sequence[Sequence[int]],
    config: GenerationConfig,
    attention_mask: torch.Tensor | None = None,
    stacklevel: int = 3,
) -> Prompts:
    """``prepare_prompts`` for ``model`` (its vocabulary and device), padded with the
    config's fill id; warns (``PromptTruncatedWarning``) when a prompt is longer than the
    model's context."""
    prompts = prepare_prompts(
        idx,
        attention_mask=attention_mask,
        pad_token_id=config.fill_token_id,
        vocab_size=getattr(model, "vocab_size", None),
        device=model_device(model),
    )
    warn_if_truncated(model, prompts, stacklevel)
    return prompts


def warn_if_truncated(model: torch.nn.Module, prompts: Prompts, stacklevel: int = 2) -> None:
    """Warn (``PromptTruncatedWarning``) when a prompt is longer than the model's context."""
    ctx = context_length_of(model)
    longest = prompts.shape[1] - min(prompts.pad_lens)
    if longest > ctx:
        warnings.warn(
            f"prompt of {longest} tokens is longer than the model's context_length {ctx}; "
            f"only its last {ctx} tokens condition the output",
            PromptTruncatedWarning,
            stacklevel=stacklevel + 1,
        )


def context_length_of(model: torch.nn.Module) -> int:
    """The model's context length as an int >= 1 (unbounded families give sys.maxsize)."""
    ctx = getattr(model, "context_length", None)
    if ctx is None or ctx == float("inf"):
        return sys.maxsize
    return max(int(ctx), 1)  # a unigram (context 0) still gets the last token; it ignores it


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for an empty module)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _from_tensor(idx: torch.Tensor, attention_mask: torch.Tensor | None) -> Prompts:
    if idx.dtype.is_floating_point or idx.dtype == torch.bool or idx.is_complex():
        raise ValueError(f"prompt ids must be an integer tensor, got dtype {idx.dtype}")
    if idx.dim() == 1:
        idx = idx[None, :]
        if attention_mask is not None and attention_mask.dim() == 1:
            attention_mask = attention_mask[None, :]
    if idx.dim() != 2:
        raise ValueError(f"prompt ids must have shape (B, T), got {tuple(idx.shape)}")
    B, T = idx.shape
    if B == 0 or T == 0:
        raise ValueError(f"empty prompt (shape {(B, T)}): give at least one token, e.g. a BOS id")
    idx = idx.long()
    if attention_mask is None:
        return Prompts(idx, [0] * B)
    if tuple(attention_mask.shape) != (B, T):
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} must match the ids {(B, T)}"
        )
    if ((attention_mask != 0) & (attention_mask != 1)).any():
        raise ValueError("attention_mask must hold only 0 (padding) and 1 (token)")
    mask = attention_mask.to(device=idx.device).bool()
    # Left padding only: once a row has a real token, everything after it is real.
    if (mask[:, 1:] < mask[:, :-1]).any():
        raise ValueError(
            "attention_mask has padding after a real token; decoder-only generation needs "
            "left padding (pad at the start of each row)"
        )
    pad_lens = (~mask).sum(dim=1).tolist()
    for b, n in enumerate(pad_lens):
        if n == T:
            raise ValueError(f"prompt row {b} is all padding; give at least one token per row")
    return Prompts(idx, pad_lens)


def _from_lists(idx: Sequence, pad_token_id: int | None) -> Prompts:
    if isinstance(idx, str | bytes):
        raise ValueError("prompts must be token ids; encode the text with a tokenizer first")
    rows = list(idx)
    if not rows:
        raise ValueError("empty prompt: give at least one token, e.g. a BOS id")
    if all(_is_int(x) for x in rows):
        rows = [rows]  # one prompt given as a flat list of ids
    elif not all(isinstance(r, Sequence) and not isinstance(r, str | bytes) for r in rows):
        raise ValueError("prompts must be a list of ids or a list of id lists")
    for b, row in enumerate(rows):
        if len(row) == 0:
            raise ValueError(f"prompt row {b} is empty; give at least one token, e.g. a BOS id")
        if not all(_is_int(x) for x in row):
            raise ValueError(f"prompt row {b} holds a non-integer id: {list(row)[:8]}")
    T = max(len(r) for r in rows)
    pad_lens = [T - len(r) for r in rows]
    if any(pad_lens) and pad_token_id is None:
        raise ValueError(
            "prompts of different lengths need pad_token_id (or eos_token_id) to fill the "
            "left padding of the returned tensor"
        )
    fill = 0 if pad_token_id is None else pad_token_id
    ids = torch.tensor([[fill] * n + [int(x) for x in r] for n, r in zip(pad_lens, rows)])
    return Prompts(ids, pad_lens)


def _is_int(x: object) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, int):
        return True
    return isinstance(x, torch.Tensor) and x.dim() == 0 and not x.dtype.is_floating_point


def _check_range(prompts: Prompts, vocab_size: int) -> None:
    real = prompts.real_mask()
    ids = prompts.ids[real]
    bad = ids[(ids < 0) | (ids >= vocab_size)]
    if bad.numel():
        raise ValueError(
            f"prompt token id {int(bad[0])} is outside the model's vocabulary [0, {vocab_size})"
        )
