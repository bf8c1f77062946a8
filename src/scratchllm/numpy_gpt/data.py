"""Batches from a ``TokenDataset`` as NumPy arrays, drawn exactly as the PyTorch Trainer
draws them.

``TokenDataset.get_batch`` returns torch tensors; this is the same draw without torch:
``B`` window starts from ``rng.integers(lo, hi - T)`` over the split's token range, each
window ``T + 1`` tokens long, ``x`` its first ``T`` and ``y`` its last ``T``, and the loss
mask aligned with ``y``. Given a generator in the same state, both return the same
windows and leave the generator in the same state, so a NumPy run and a PyTorch run
with one seed train on the same batches, step for step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class Batch(NamedTuple):
    x: np.ndarray  # (B, T) int64 input ids
    y: np.ndarray  # (B, T) int64 next-token targets
    mask: np.ndarray | None  # (B, T) bool: which targets count; None = all


def get_batch(
    dataset: Any, split: str, batch_size: int, block_size: int, rng: np.random.Generator
) -> Batch:
    """``batch_size`` random windows of ``block_size`` tokens from ``split`` of ``dataset``
    (a ``scratchllm.data.TokenDataset``)."""
    for name, v in (("batch_size", batch_size), ("block_size", block_size)):
        if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} ({v!r}) must be a positive integer")
    lo, hi = dataset.split_range(split)
    if hi - lo < block_size + 1:
        raise ValueError(
            f"the {split} split of {dataset.directory} has {hi - lo} tokens, but block_size "
            f"{block_size} needs at least {block_size + 1} (a window plus its next token); "
            "use more text or a smaller block size"
        )
    starts = rng.integers(lo, hi - block_size, size=batch_size)  # last start: hi - T - 1
    idx = starts[:, None] + np.arange(block_size + 1)  # (B, T+1)
    chunk = dataset.tokens[idx].astype(np.int64)
    mask = None if dataset.mask is None else dataset.mask[idx[:, 1:]].astype(bool)
    return Batch(chunk[:, :-1], chunk[:, 1:], mask)
