"""Training losses: next-token cross-entropy over the positions that count, with label smoothing.

The models compute their loss themselves with ``models.base.lm_loss`` (so a model's own
extra terms, such as the mixture-of-experts balancing loss, stay in it); the Trainer asks
for label smoothing by running the forward pass inside ``models.label_smoothing(eps)``,
which ``lm_loss`` reads: one ``log_softmax`` over ``[B, T, V]``, not a second pass.
``masked_cross_entropy`` is the same loss as a plain function of logits, for code that
holds logits rather than a model.

**Label smoothing** trains against ``(1 - eps) * onehot(target) + eps * uniform``, which
for one position is::

    loss = (1 - eps) * (-log p[target]) + eps * mean_v(-log p[v])

the same quantity ``torch.nn.functional.cross_entropy(label_smoothing=eps)`` computes.
"""

from __future__ import annotations

import torch

from scratchllm.models.base import label_smoothing as smoothing
from scratchllm.models.base import lm_loss


def masked_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    loss_mask: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    ignore_index: int = -1,
) -> torch.Tensor:
    """Mean next-token cross-entropy over the counted positions, with optional smoothing.

    ``logits [B, T, V]``, ``targets [B, T]``; ``loss_mask [B, T]`` (bool or 0/1) keeps only
    the positions where it is true; targets equal to ``ignore_index`` never count. The loss
    is in the logits' precision (half precision upcast to float32).

    >>> logits = torch.zeros(1, 2, 4)                      # uniform over 4 tokens
    >>> round(float(masked_cross_entropy(logits, torch.tensor([[1, 2]]))), 4)  # ln 4
    1.3863
    """
    if loss_mask is not None and loss_mask.shape != targets.shape:
        raise ValueError(
            f"loss_mask shape {tuple(loss_mask.shape)} must match targets {tuple(targets.shape)}"
        )
    with smoothing(label_smoothing):
        return lm_loss(logits, targets, loss_mask, ignore_index)
