"""Several documents in one row: attention that stays inside each, positions that restart.

Packing puts short examples side by side in one training row instead of padding each to
the block size. Two things keep them apart, so that each example is scored exactly as if
it were alone in its row:

- the attention mask is **block-diagonal** and causal: a token attends to the earlier
  tokens of its own document only;
- **positions restart** at 0 with each document (learned, sinusoidal and rotary positions
  alike), so an example's second token is at position 1 wherever the row put it.

``documents [B, T]`` holds, for each position, the id of the document it belongs to (any
integers; positions of one document need not even be contiguous). Padding at the end of a
row is simply one more document, which the loss mask leaves out.

>>> import torch
>>> mask, positions = document_attention(torch.tensor([[0, 0, 0, 1, 1, 2]]))
>>> positions.tolist()
[[0, 1, 2, 0, 1, 0]]
>>> mask[0, 0].int().tolist()[4]        # token 4 (document 1) sees tokens 3 and 4
[0, 0, 0, 1, 1, 0]
"""

from __future__ import annotations

import torch


def document_attention(documents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask [B, 1, T, T], positions [B, T])`` for ``documents [B, T]`` (see above).

    ``mask[b, 0, i, j]`` is True when query ``i`` may look at key ``j``: ``j <= i`` and both
    in the same document (SDPA's boolean convention); ``positions[b, i]`` is the number of
    earlier tokens of ``i``'s document.
    """
    if documents.dim() != 2:
        raise ValueError(f"documents must be [B, T] ids, got shape {tuple(documents.shape)}")
    T = documents.shape[1]
    same = documents[:, :, None] == documents[:, None, :]  # (B, T_q, T_k)
    causal = torch.ones(T, T, dtype=torch.bool, device=documents.device).tril()
    allowed = same & causal  # (B, T, T); the diagonal is always open
    positions = allowed.sum(-1) - 1  # (B, T): keys of its own document before it
    return allowed[:, None], positions
