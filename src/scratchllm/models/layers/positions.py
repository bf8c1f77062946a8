"""How a transformer learns where a token is: three ways to encode position.

* ``learned`` (GPT-2): a trainable table ``wpe [block_size, n_embd]`` added to the token
  embeddings. It lives in the model as ``transformer.wpe``, an ``nn.Embedding``.
* ``sinusoidal`` (Vaswani et al., 2017): the same addition, but the table is fixed::

      PE[p, 2i]   = sin(p / 10000^(2i / C))
      PE[p, 2i+1] = cos(p / 10000^(2i / C))

* ``rope`` (rotary, Su et al., 2021): nothing is added to the embeddings; instead each
  query and key vector is rotated by an angle proportional to its position, pair of
  features by pair of features, so ``q_m . k_n`` depends only on ``m - n``. We pair
  feature ``i`` with feature ``i + head_dim / 2`` ("rotate half", as GPT-NeoX and the
  Hugging Face LLaMA do), which equals the interleaved form up to a fixed permutation of
  the features.

Every table here is derived from the config, so it is a non-persistent buffer: it is
rebuilt on load, never saved.

A position argument is either a ``slice`` (every row of the batch sits at the same
positions, the common case) or a LongTensor ``[B, T]`` (left-padded rows, whose positions
count real tokens only); ``table[positions]`` works for both.

**The rope layout, in one place.** ``rope_tables`` gives ``cos`` and ``sin`` as
``[block_size, head_dim]``; ``rope_at`` picks the rows of some positions and shapes them
``[T, 1, 1, D]`` (or ``[B, T, 1, 1, D]``) to broadcast over the fused queries and keys
``[B, T, 2, H, D]``, and ``apply_rope`` turns them. The model and its one-token decode path
both go through ``rope_at``.
"""

from __future__ import annotations

import math

import torch

Positions = slice | torch.Tensor


def sinusoidal_table(block_size: int, n_embd: int) -> torch.Tensor:
    """The fixed ``[block_size, n_embd]`` table of the original transformer.

    >>> t = sinusoidal_table(4, 6)
    >>> t[0].tolist()  # position 0: sin(0) = 0, cos(0) = 1
    [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    """
    pos = torch.arange(block_size, dtype=torch.float64)[:, None]  # (T, 1)
    i2 = torch.arange(0, n_embd, 2, dtype=torch.float64)  # (ceil(C/2),) the even feature ids
    angle = pos * torch.exp(-math.log(10000.0) * i2 / n_embd)  # (T, ceil(C/2))
    table = torch.empty(block_size, n_embd, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : n_embd // 2])  # an odd C has one sin more than cos
    return table.float()


def rope_tables(block_size: int, head_dim: int, base: float = 10000.0):
    """``(cos, sin)``, each ``[block_size, head_dim]``, for ``apply_rope``.

    Feature pair ``(i, i + head_dim/2)`` turns at frequency ``base^(-2i/head_dim)``; the
    two halves of each row repeat the same angles so the rotation is two multiplies.
    """
    if head_dim % 2:
        raise ValueError(f"rope needs an even head size, got head_dim {head_dim}")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angle = torch.arange(block_size, dtype=torch.float64)[:, None] * inv_freq  # (T, D/2)
    angle = torch.cat((angle, angle), dim=-1)  # (T, D)
    return angle.cos().float(), angle.sin().float()


def rope_at(
    cos: torch.Tensor, sin: torch.Tensor, positions: Positions
) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows of the rope tables at ``positions``, shaped for ``apply_rope`` on q/k
    laid out ``[B, T, 2, H, D]``: ``[T, 1, 1, D]`` for a slice, ``[B, T, 1, 1, D]`` for a
    ``[B, T]`` tensor of positions.

    >>> cos, sin = rope_tables(8, 4)
    >>> tuple(rope_at(cos, sin, slice(2, 5))[0].shape)
    (3, 1, 1, 4)
    """
    return cos[positions][..., None, None, :], sin[positions][..., None, None, :]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``[x1, x2] -> [-x2, x1]`` on the last dimension: a 90-degree turn of each pair."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair ``(x_i, x_{i+D/2})`` of ``x [..., D]`` by its position's angle.

    ``cos`` and ``sin`` broadcast against ``x`` (the caller shapes them).
    """
    return x * cos + rotate_half(x) * sin
