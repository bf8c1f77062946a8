"""Per-token log-probabilities, their sums per sequence, entropy, and masked means.

Every post-training loss starts here. A model gives logits ``[B, T, V]`` aligned with
its labels ``[B, T]`` (position ``t`` predicts ``labels[:, t]``, the convention of
``models.base.lm_loss``), and a mask ``[B, T]`` says which positions count (the
completion, never the prompt or the padding)::

    token_logprobs[b, t]    = log p(labels[b, t] | x[b, <=t])        where counted, else 0
    sequence_logprobs[b]    = sum_t token_logprobs[b, t]              (DPO: a sum, not a mean)

Precision: float32 and float64 logits stay as they are (so a float64 test is exact);
float16 and bfloat16 are upcast to float32 first, because ``logsumexp`` over a large
vocabulary loses most of its digits in half precision.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

IGNORE_INDEX = -1  # the labels value that never counts, as in models.base.lm_loss


def compute_dtype(x: torch.Tensor) -> torch.Tensor:
    """``x`` in a dtype fit for log-softmax: half precision upcast to float32, else as is."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def counted_mask(
    labels: torch.Tensor, mask: torch.Tensor | None = None, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Bool ``[B, T]``: positions whose label is real (not ``ignore_index``) and, when
    ``mask`` (bool or 0/1) is given, where it is true."""
    keep = labels != ignore_index
    if mask is not None:
        if mask.shape != labels.shape:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} must match labels {tuple(labels.shape)}"
            )
        keep = keep & mask.bool()
    return keep


def token_logprobs(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """``log p(labels[b, t])`` at each counted position, 0 elsewhere: ``[B, T]``.

    ``logits [B, T, V]``; ``labels [B, T]`` (``ignore_index`` never counts, so padding may
    carry it); ``mask [B, T]`` narrows the counted positions further (e.g. to the
    completion). Computed as ``logit[label] - logsumexp(logits)``, which never builds the
    ``[B, T, V]`` log-softmax.

    >>> logits = torch.zeros(1, 3, 4)                   # uniform over 4 tokens
    >>> token_logprobs(logits, torch.tensor([[2, 0, -1]]))   # the last is padding
    tensor([[-1.3863, -1.3863,  0.0000]])
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be [B, T, V], got shape {tuple(logits.shape)}")
    B, T, V = logits.shape
    if labels.shape != (B, T):
        raise ValueError(f"labels shape {tuple(labels.shape)} must be (B, T) = {(B, T)}")
    keep = counted_mask(labels, mask, ignore_index)  # [B, T]
    if bool(((labels[keep] < 0) | (labels[keep] >= V)).any()):
        raise ValueError(f"labels must be token ids in [0, {V}) where they count")
    logits = compute_dtype(logits)
    safe = labels.masked_fill(~keep, 0)  # any valid id; its value is discarded below
    picked = logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # [B, T]
    logp = picked - torch.logsumexp(logits, dim=-1)  # [B, T]
    return logp.masked_fill(~keep, 0.0)


def sequence_logprobs(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: Literal["sum", "mean"] = "sum",
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """Per-sequence log-probability of the counted tokens: ``[B]``.

    ``reduction="sum"`` is ``log p(completion | prompt)``, what DPO compares.
    ``"mean"`` divides by the number of counted tokens: the length-normalised form that
    TRL's ``DPOTrainer`` feeds its IPO loss. A sequence with no counted token is an error
    (its sum would silently be 0, a certain completion).
    """
    keep = counted_mask(labels, mask, ignore_index)
    n = keep.sum(-1)  # [B]
    if bool((n == 0).any()):
        rows = torch.nonzero(n == 0).flatten().tolist()
        raise ValueError(f"sequences {rows} have no counted token (check the completion mask)")
    total = token_logprobs(logits, labels, keep).sum(-1)  # [B]
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / n
    raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of the softmax at each position: ``[...]`` from ``[..., V]``.

    ``H = -sum_v p_v log p_v = logsumexp(z) - sum_v p_v z_v``.
    """
    logits = compute_dtype(logits)
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``sum(x * mask)`` over all elements."""
    return (x * mask.to(x.dtype)).sum()


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is true; an empty mask is an error."""
    n = mask.sum()
    if int(n) == 0:
        raise ValueError("masked mean over an empty mask: no position counts")
    return masked_sum(x, mask) / n.to(x.dtype)
