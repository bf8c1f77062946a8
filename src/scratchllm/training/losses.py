"""Training losses: next-token cross-entropy over the positions that count, with label smoothing.

The models compute the plain masked cross-entropy themselves (``models.base.lm_loss``);
the trainer adds label smoothing on top with ``smoothing_correction``, so a model's own
extra terms (the mixture-of-experts balancing loss) stay in the loss.

**Label smoothing** trains against ``(1 - eps) * onehot(target) + eps * uniform``, which
for one position is::

    loss = (1 - eps) * (-log p[target]) + eps * mean_v(-log p[v])

the same quantity ``torch.nn.functional.cross_entropy(label_smoothing=eps)`` computes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _counted(targets: torch.Tensor, loss_mask: torch.Tensor | None, ignore_index: int):
    """Bool ``(B, T)``: the positions whose prediction counts."""
    keep = targets != ignore_index
    if loss_mask is not None:
        if loss_mask.shape != targets.shape:
            raise ValueError(
                f"loss_mask shape {tuple(loss_mask.shape)} must match targets "
                f"{tuple(targets.shape)}"
            )
        keep = keep & loss_mask.bool()
    return keep


def masked_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    loss_mask: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    ignore_index: int = -1,
) -> torch.Tensor:
    """Mean next-token cross-entropy over the counted positions, with optional smoothing.

    ``logits [B, T, V]``, ``targets [B, T]``; ``loss_mask [B, T]`` (bool or 0/1) keeps only
    the positions where it is true; targets equal to ``ignore_index`` never count.

    >>> logits = torch.zeros(1, 2, 4)                      # uniform over 4 tokens
    >>> round(float(masked_cross_entropy(logits, torch.tensor([[1, 2]]))), 4)  # ln 4
    1.3863
    """
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing ({label_smoothing!r}) must be in [0, 1)")
    B, T, V = logits.shape
    keep = _counted(targets, loss_mask, ignore_index)
    safe = targets.masked_fill(~keep, ignore_index).reshape(B * T)
    return F.cross_entropy(
        logits.reshape(B * T, V).float(),
        safe,
        ignore_index=ignore_index,
        label_smoothing=label_smoothing,
    )


def smoothing_correction(
    logits: torch.Tensor,
    targets: torch.Tensor,
    loss_mask: torch.Tensor | None,
    label_smoothing: float,
    ignore_index: int = -1,
) -> torch.Tensor:
    """What label smoothing adds to the plain masked cross-entropy:
    ``eps * mean over counted positions of (mean_v(-log p[v]) - (-log p[target]))``.

    ``lm_loss(...) + smoothing_correction(...)`` equals ``masked_cross_entropy`` with
    ``label_smoothing=eps``. No position counted gives NaN, as the mean cross-entropy does.
    """
    B, T, V = logits.shape
    keep = _counted(targets, loss_mask, ignore_index)  # (B, T)
    logp = F.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    nll = -logp.gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)  # (B, T)
    uniform = -logp.mean(-1)  # (B, T): cross-entropy against the uniform distribution
    w = keep.float()
    return label_smoothing * ((uniform - nll) * w).sum() / w.sum()
