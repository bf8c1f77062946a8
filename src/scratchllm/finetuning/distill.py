"""Knowledge distillation: hard-label cross-entropy mixed with a divergence to a teacher.

Per counted token (the same mask as supervised fine-tuning), with ``p_T = softmax(z_teacher / tau)``
and ``p_S = softmax(z_student / tau)``::

    loss = a * CE(labels, softmax(z_student)) + (1 - a) * tau^2 * D(p_T || p_S)

averaged over the counted tokens. ``tau^2`` keeps the soft term's gradient the same size
as ``tau`` changes (Hinton et al. 2015: the gradient of the softened term scales as
``1 / tau^2``). The cross-entropy uses the student's logits at temperature 1.

The divergences (each summed over the vocabulary at a position):

- ``forward_kl``: ``KL(p_T || p_S) = sum_v p_T (log p_T - log p_S)``, mean-seeking: the
  student spreads mass over everything the teacher allows (classic distillation).
- ``reverse_kl``: ``KL(p_S || p_T) = sum_v p_S (log p_S - log p_T)``, mode-seeking.
- ``jsd`` with ``beta`` in (0, 1), the generalized Jensen-Shannon divergence of the GKD
  paper (Agarwal et al. 2024, eq. 1)::

      M = beta * p_T + (1 - beta) * p_S
      JSD_beta = beta * KL(p_T || M) + (1 - beta) * KL(p_S || M)

**TRL's convention** (``GKDTrainer.generalized_jsd_loss``, TRL 0.28): one ``beta`` covers
all three: ``beta = 0`` is ``forward_kl``, ``beta = 1`` is ``reverse_kl``, and any other
beta is ``jsd`` with that same beta (the mixture weight of the teacher). The JSD itself
tends to 0 at both ends, so TRL's two endpoints are special cases, not limits; we name
them instead. TRL's loss is our ``D`` term alone: no cross-entropy and no ``tau^2``
(``distillation_loss(alpha=0) / tau^2`` equals it), reduced as ``sum / counted tokens``
when labels are given (its ``"batchmean"``), as here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from scratchllm.finetuning.logprobs import IGNORE_INDEX, compute_dtype, counted_mask

Divergence = Literal["forward_kl", "reverse_kl", "jsd"]
DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")


def _kl(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """``KL(p || q)`` summed over the last axis, from log-probabilities: ``[...]``.
    Where ``p`` is exactly 0 the term is 0 (``xlogy`` convention), so a teacher that
    rules a token out costs nothing there."""
    p = logp.exp()
    # mask the difference, not the product: 0 * (-inf) would put NaN in the gradient
    diff = (logp - logq).masked_fill(p == 0, 0.0)
    return (p * diff).sum(-1)


def token_divergence(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    divergence: Divergence = "forward_kl",
    beta: float = 0.5,
    temperature: float = 1.0,
) -> torch.Tensor:
    """``D(p_T || p_S)`` at every position, both softened by ``temperature``: ``[B, T]``.

    ``student_logits`` and ``teacher_logits`` are ``[B, T, V]`` with the same ``V`` (a
    student of another family must share the teacher's tokenizer). Gradients flow to
    the student only: the teacher is a fixed target.
    """
    if student_logits.shape != teacher_logits.shape:
        s, t = tuple(student_logits.shape), tuple(teacher_logits.shape)
        if student_logits.shape[:-1] == teacher_logits.shape[:-1]:
            raise ValueError(
                f"student vocabulary ({s[-1]}) differs from the teacher's ({t[-1]}): "
                "distillation needs the same tokenizer; train the student with the teacher's"
            )
        raise ValueError(f"student logits {s} and teacher logits {t} must have the same shape")
    if temperature <= 0:
        raise ValueError(f"temperature ({temperature!r}) must be > 0")
    log_s = F.log_softmax(compute_dtype(student_logits) / temperature, dim=-1)  # [B, T, V]
    log_t = F.log_softmax(compute_dtype(teacher_logits.detach()) / temperature, dim=-1)
    log_t = log_t.to(log_s.dtype)
    if divergence == "forward_kl":
        return _kl(log_t, log_s)
    if divergence == "reverse_kl":
        return _kl(log_s, log_t)
    if divergence == "jsd":
        if not 0.0 < beta < 1.0:
            raise ValueError(
                f"jsd beta ({beta!r}) must be in (0, 1); its endpoints are 'forward_kl' "
                "(TRL's beta=0) and 'reverse_kl' (TRL's beta=1)"
            )
        # log M = logsumexp(log beta + log p_T, log(1 - beta) + log p_S), stable in log space
        b = torch.tensor(beta, dtype=log_s.dtype, device=log_s.device)
        log_m = torch.logaddexp(log_t + b.log(), log_s + (1 - b).log())
        return beta * _kl(log_t, log_m) + (1 - beta) * _kl(log_s, log_m)
    raise ValueError(f"divergence must be one of {DIVERGENCES}, got {divergence!r}")


@dataclass(frozen=True)
class DistillationOutput:
    """The loss to backpropagate and its two parts (each a mean over counted tokens)."""

    loss: torch.Tensor  # a * ce + (1 - a) * tau^2 * divergence
    ce: torch.Tensor  # hard-label cross-entropy
    divergence: torch.Tensor  # D(p_T || p_S) at temperature tau, before the tau^2 factor
    num_tokens: torch.Tensor  # how many positions counted


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None = None,
    alpha: float = 0.5,
    temperature: float = 1.0,
    divergence: Divergence = "forward_kl",
    beta: float = 0.5,
    ignore_index: int = IGNORE_INDEX,
) -> DistillationOutput:
    """``a * CE + (1 - a) * tau^2 * D(p_T || p_S)``, averaged over the counted tokens.

    ``labels [B, T]`` are the hard targets aligned with the logits; positions equal to
    ``ignore_index`` or where ``mask [B, T]`` is false do not count (for either term).
    ``alpha = 1`` is plain fine-tuning, ``alpha = 0`` pure distillation.

    >>> z = torch.randn(2, 3, 5)
    >>> out = distillation_loss(z, z, torch.zeros(2, 3, dtype=torch.long), alpha=0.0)
    >>> float(out.loss)          # a student equal to its teacher: nothing to learn
    0.0
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha ({alpha!r}) must be in [0, 1]")
    d = token_divergence(student_logits, teacher_logits, divergence, beta, temperature)  # [B, T]
    if labels.shape != d.shape:
        raise ValueError(f"labels shape {tuple(labels.shape)} must be (B, T) = {tuple(d.shape)}")
    keep = counted_mask(labels, mask, ignore_index)  # [B, T]
    n = keep.sum()
    if int(n) == 0:
        raise ValueError("no position counts: the mask (or the labels) exclude every token")
    B, T, V = student_logits.shape
    ce = F.cross_entropy(
        compute_dtype(student_logits).reshape(B * T, V),
        labels.masked_fill(~keep, ignore_index).reshape(B * T),
        ignore_index=ignore_index,
    )
    kd = (d * keep).sum() / n
    loss = alpha * ce + (1.0 - alpha) * temperature**2 * kd
    return DistillationOutput(loss=loss, ce=ce, divergence=kd, num_tokens=n)
