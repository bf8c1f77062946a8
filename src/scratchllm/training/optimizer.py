"""AdamW with decoupled weight decay on the weight matrices only.

Weight decay pulls weights toward zero each step (``w -= lr * wd * w``, separately from
the gradient: Loshchilov & Hutter's "decoupled" decay). It is a prior on the matrices
that mix features; applied elsewhere it does harm:

- **biases** and **norm gains/offsets** (every 1-D parameter) set scales and offsets;
  pulling a LayerNorm gain toward 0 shrinks the whole activation.
- **embeddings** (token and position tables, every ``nn.Embedding`` weight) are lookup
  tables: a rare token's row gets few gradient updates but is decayed every step, so
  decay would erase what was learned about rare tokens. A tied ``lm_head`` shares the
  token table and is therefore not decayed either.

So the rule is: decay a parameter iff it has 2 or more dimensions and does not belong to
an ``nn.Embedding``. ``decay_groups`` returns the two lists by name, for inspection.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from scratchllm.configs.train import TrainConfig


def decay_groups(model: nn.Module) -> tuple[list[str], list[str]]:
    """``(decayed, not_decayed)`` parameter names of ``model`` (trainable ones only).

    A parameter shared between modules (tied weights) is listed once, by its first name.
    """
    embedding_ids = {
        id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding | nn.EmbeddingBag)
    }
    decay, no_decay = [], []
    for name, p in model.named_parameters():  # named_parameters skips shared duplicates
        if not p.requires_grad:
            continue
        if p.dim() >= 2 and id(p) not in embedding_ids:
            decay.append(name)
        else:
            no_decay.append(name)
    return decay, no_decay


def configure_optimizer(
    model: nn.Module, cfg: TrainConfig, device_type: str = "cpu"
) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` over ``model``'s trainable parameters, decay on matrices only.

    Uses the fused kernel where this torch build supports it for ``device_type`` (one
    kernel for all parameters), else the ``foreach`` multi-tensor path. Both compute the
    same update as the textbook loop. The fused kernel writes the parameters without
    bumping their version counters (torch 2.13), so a step hook bumps them: the decode
    kernel's packed weights (``models.decode_kernel``) are checked by those counters, and a
    run that generates between updates (RL rollouts, in-run evaluations) would otherwise
    decode with the matrices of its first generation.
    """
    params = dict(model.named_parameters())
    decay, no_decay = decay_groups(model)
    groups = [
        {"params": [params[n] for n in decay], "weight_decay": cfg.weight_decay},
        {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError(
            f"{type(model).__name__} has no trainable parameters; a counting model "
            "is fitted, not optimized"
        )
    kwargs = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    if _fused_ok(device_type):
        kwargs["fused"] = True
    else:
        kwargs["foreach"] = True
    optimizer = torch.optim.AdamW(groups, **kwargs)
    optimizer.register_step_post_hook(_bump_versions)
    return optimizer


def _bump_versions(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
    """Mark every parameter as changed in place (no data is touched)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            torch.autograd.graph.increment_version(p)


def _fused_ok(device_type: str) -> bool:
    """Whether ``AdamW(fused=True)`` runs on this device type in this torch build."""
    if "fused" not in inspect.signature(torch.optim.AdamW).parameters:
        return False
    if device_type == "cuda":
        return True
    try:  # CPU (and MPS in newer builds) gained fused kernels over time: probe once, tiny.
        p = nn.Parameter(torch.zeros(1, device=device_type))
        p.grad = torch.zeros(1, device=device_type)
        torch.optim.AdamW([p], fused=True).step()
    except (RuntimeError, TypeError):
        return False
    return True
