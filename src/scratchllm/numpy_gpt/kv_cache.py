"""The key/value cache of incremental decoding, in NumPy.

Generating token ``t`` would re-run attention over all earlier tokens in every layer;
their keys and values never change, so each layer keeps them in a preallocated
``[B, H, max_length, D]`` buffer, and each step writes its new slots in place and
attends over the filled prefix.

The bookkeeping is the PyTorch GPT's (``scratchllm.models.layers.kv_cache``), so both
engines decode alike: left padding lets prompts of different lengths share a batch
(``key_mask`` marks the padded slots no query may see, and each row's positions count
its real tokens only), and while no row has padding both stay None and every step takes
the unmasked path.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scratchllm.numpy_gpt.masks import look_ahead_mask


@dataclass(eq=False)
class KVCache:
    buffer: np.ndarray  # (n_layer, 2, B, H, max_length, D): keys [:, 0], values [:, 1]
    length: int = 0  # slots filled (the same for every row; padding fills slots too)
    key_mask: np.ndarray | None = None  # (B, max_length) True = real token; None = no padding
    positions: np.ndarray | None = None  # (B,) each row's next position; None = length
    max_position: int = 0  # the largest next position over the rows

    @classmethod
    def allocate(
        cls, n_layer: int, batch_size: int, n_head: int, max_length: int, head_dim: int, dtype
    ) -> KVCache:
        if batch_size < 1:
            raise ValueError(f"batch_size ({batch_size}) must be at least 1")
        if max_length < 1:
            raise ValueError(f"max_length ({max_length}) must be at least 1")
        shape = (n_layer, 2, batch_size, n_head, max_length, head_dim)
        return cls(np.zeros(shape, dtype=dtype))

    @property
    def batch_size(self) -> int:
        return self.buffer.shape[2]

    @property
    def max_length(self) -> int:
        return self.buffer.shape[4]

    def reorder(self, index: np.ndarray) -> KVCache:
        """Keep batch rows ``index`` (``[B]``, repeats allowed), in place."""
        index = np.asarray(index)
        if index.shape != (self.batch_size,):
            raise ValueError(f"index shape {index.shape} must be ({self.batch_size},)")
        self.buffer[...] = self.buffer[:, :, index]
        if self.key_mask is not None:
            self.key_mask = self.key_mask[index]
            self.positions = self.positions[index]
        return self

    def advance(self, T: int, pad_mask: np.ndarray | None, block_size: int):
        """Reserve slots for ``T`` new tokens; return ``(start, positions, mask)``.

        ``positions`` is a ``slice`` when every row sits at the same positions, else
        ``[B, T]``; ``mask`` is None when the new queries may see every filled key (one
        token, no padding), else bool ``[B or 1, 1, T, start + T]``.
        """
        start, end = self.length, self.length + T
        if end > self.max_length:
            raise ValueError(
                f"the KV cache holds {self.max_length} tokens and {start} are used; "
                f"{T} more do not fit (start a new state, e.g. sliding the window)"
            )
        B = self.batch_size
        if pad_mask is not None:
            pad_mask = np.asarray(pad_mask).astype(bool)
            if pad_mask.shape != (B, T):
                raise ValueError(f"pad_mask shape {pad_mask.shape} must be {(B, T)}")
            if self.key_mask is None and pad_mask.all():
                pad_mask = None  # no padding after all: stay on the fast path
        if pad_mask is not None and self.key_mask is None:  # the first padding: start tracking
            self.key_mask = np.zeros((B, self.max_length), dtype=bool)
            self.key_mask[:, :start] = True
            self.positions = np.full(B, start, dtype=np.int64)

        if self.key_mask is None:  # every row holds only real tokens
            if end > block_size:
                raise ValueError(_too_long(end, block_size))
            self.length = self.max_position = end
            mask = None if T == 1 else look_ahead_mask(T, end)[None, None]
            return start, slice(start, end), mask

        all_real = pad_mask is None
        if all_real:
            pad_mask = np.ones((B, T), dtype=bool)
        self.max_position = int((self.positions + pad_mask.sum(1)).max())
        if self.max_position > block_size:
            raise ValueError(_too_long(self.max_position, block_size))
        # A real token's position counts the real tokens before it; padding gets 0.
        positions = np.maximum(self.positions[:, None] + np.cumsum(pad_mask, 1) - 1, 0)
        self.positions = self.positions + pad_mask.sum(1)
        self.key_mask[:, start:end] = pad_mask
        self.length = end
        keys = self.key_mask[:, None, None, :end]  # (B, 1, 1, end)
        if T == 1 and all_real:
            return start, positions, keys  # the one query may see every real key
        q = np.arange(start, end)[:, None]
        k = np.arange(end)
        # Causal, real keys only, and always its own slot (a padding query with no real
        # key before it would otherwise see nothing: NaN). Its output is never used.
        return start, positions, (keys & (k <= q)) | (k == q)  # (B, 1, T, end)


def _too_long(n: int, block_size: int) -> str:
    return (
        f"position {n - 1} is past the model's block_size ({block_size}); "
        f"keep at most {block_size} real tokens per row (slide the window)"
    )
