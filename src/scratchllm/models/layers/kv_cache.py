"""The key/value cache that makes token-by-token decoding cheap.

Without a cache, generating token ``t`` re-runs attention over all ``t`` earlier tokens
in every layer. Their keys and values never change, so a decoder keeps them: each layer
owns a preallocated ``[B, n_head, max_length, head_dim]`` buffer for keys and one for
values, and each step writes its new slots in place and attends over the filled prefix.
Nothing is concatenated or reallocated per token.

Left padding lets prompts of different lengths share one batch: padded slots are filled
like any other, but ``key_mask`` marks them so no query ever attends to them, and a
row's positions count only its real tokens, so a padded row decodes exactly like its
prompt alone. While no row has padding, ``key_mask`` and ``positions`` stay None and
every step takes the unmasked fast path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(eq=False)
class KVCache:
    keys: list[torch.Tensor]  # per layer: (B, H, max_length, D), written in place
    values: list[torch.Tensor]  # per layer: (B, H, max_length, D)
    length: int = 0  # slots filled so far (the same for every row; padding fills slots too)
    key_mask: torch.Tensor | None = None  # (B, max_length) True = real token; None = no padding
    positions: torch.Tensor | None = None  # (B,) the next position of each row; None = length
    max_position: int = 0  # the largest next position over the rows (host-side, no sync)
    buffer: torch.Tensor | None = None  # (n_layer, 2, B, H, max_length, D): keys/values views
    plan: Any = None  # what the model's fast one-token path keeps between steps (its weights)

    @classmethod
    def allocate(
        cls,
        n_layer: int,
        batch_size: int,
        n_head: int,
        max_length: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> KVCache:
        if batch_size < 1:
            raise ValueError(f"batch_size ({batch_size}) must be at least 1")
        if max_length < 1:
            raise ValueError(f"max_length ({max_length}) must be at least 1")
        # One allocation for everything; the per-layer tensors are views into it.
        buf = torch.zeros(
            n_layer, 2, batch_size, n_head, max_length, head_dim, dtype=dtype, device=device
        )
        return cls(keys=list(buf[:, 0].unbind(0)), values=list(buf[:, 1].unbind(0)), buffer=buf)

    @property
    def batch_size(self) -> int:
        return self.keys[0].size(0)

    @property
    def max_length(self) -> int:
        return self.keys[0].size(2)

    def reorder(self, index: torch.Tensor) -> KVCache:
        """Keep batch rows ``index`` (``[B]``, repeats allowed), in place: beam search
        continues some beams twice and drops others."""
        index = index.to(self.keys[0].device)
        if index.shape != (self.batch_size,):
            raise ValueError(f"index shape {tuple(index.shape)} must be ({self.batch_size},)")
        if self.buffer is not None:
            self.buffer.copy_(self.buffer[:, :, index])  # one gather for every layer
        else:
            for t in (*self.keys, *self.values):
                t.copy_(t[index])
        if self.key_mask is not None:
            self.key_mask = self.key_mask[index]
            self.positions = self.positions[index]
        return self

    def advance(self, T: int, pad_mask: torch.Tensor | None, block_size: int):
        """Reserve slots for ``T`` new tokens; return ``(start, positions, mask, is_causal)``.

        ``positions`` is a ``slice`` when all rows share positions, else ``[B, T]``;
        ``mask`` is None when plain causal attention is exact (``is_causal`` says whether
        SDPA must apply its own causal mask), else a bool ``[B or 1, 1, T, start+T]``.
        """
        start, end = self.length, self.length + T
        if end > self.max_length:
            raise ValueError(
                f"the KV cache holds {self.max_length} tokens and {start} are used; "
                f"{T} more do not fit (start a new state, e.g. sliding the window)"
            )
        B = self.batch_size
        if pad_mask is not None:
            if pad_mask.shape != (B, T):
                raise ValueError(f"pad_mask shape {tuple(pad_mask.shape)} must be {(B, T)}")
            pad_mask = pad_mask.to(device=self.keys[0].device, dtype=torch.bool)
            if self.key_mask is None and bool(pad_mask.all()):
                pad_mask = None  # no padding after all: stay on the fast path
        if pad_mask is not None and self.key_mask is None:  # the first padding: start tracking
            self.key_mask = torch.zeros(
                B, self.max_length, dtype=torch.bool, device=pad_mask.device
            )
            self.key_mask[:, :start] = True
            self.positions = torch.full((B,), start, dtype=torch.long, device=pad_mask.device)

        if self.key_mask is None:  # every row holds only real tokens
            if start + T > block_size:
                raise ValueError(_too_long(start + T, block_size))
            self.length = self.max_position = end
            if T == 1:
                return start, slice(start, end), None, False  # one query sees every key
            if start == 0:
                return start, slice(start, end), None, True
            q = torch.arange(start, end, device=self.keys[0].device)[:, None]
            k = torch.arange(end, device=self.keys[0].device)
            return start, slice(start, end), (k <= q)[None, None], False

        all_real = pad_mask is None
        if all_real and T == 1:  # the common decode step of a padded batch: fewest ops
            if self.max_position + 1 > block_size:
                raise ValueError(_too_long(self.max_position + 1, block_size))
            self.max_position += 1
            positions = self.positions[:, None].clone()  # (B, 1)
            self.positions += 1
            self.key_mask[:, start] = True
            self.length = end
            return start, positions, self.key_mask[:, None, None, :end], False
        if all_real:
            pad_mask = torch.ones(B, T, dtype=torch.bool, device=self.key_mask.device)
            self.max_position += T  # every row gains T real tokens; no device sync needed
        else:
            self.max_position = int((self.positions + pad_mask.sum(1)).max())
        if self.max_position > block_size:
            raise ValueError(_too_long(self.max_position, block_size))
        # A real token's position counts the real tokens before it; padding gets 0.
        positions = (self.positions[:, None] + pad_mask.cumsum(1) - 1).clamp(min=0)  # (B, T)
        self.positions += pad_mask.sum(1)
        self.key_mask[:, start:end] = pad_mask
        self.length = end
        keys = self.key_mask[:, None, None, :end]  # (B, 1, 1, end)
        if T == 1 and all_real:
            return start, positions, keys, False  # the one query may see every real key
        q = torch.arange(start, end, device=keys.device)[:, None]
        k = torch.arange(end, device=keys.device)
        # Causal, real keys only, and always its own slot: a padding query with no real key
        # before it would otherwise see nothing (NaN). Its output is never used.
        mask = (keys & (k <= q)) | (k == q)  # (B, 1, T, end)
        return start, positions, mask, False


def _too_long(n: int, block_size: int) -> str:
    return (
        f"position {n - 1} is past the model's block_size ({block_size}); "
        f"keep at most {block_size} real tokens per row (slide the window)"
    )
