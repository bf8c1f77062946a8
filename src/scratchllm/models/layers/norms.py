"""Normalisation layers: LayerNorm (GPT-2) and RMSNorm (LLaMA and friends).

LayerNorm centres each feature vector and scales it to unit variance, then applies a
learned gain (and bias)::

    y = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias

RMSNorm skips the centring and the bias, dividing by the root mean square only::

    y = x / sqrt(mean(x**2) + eps) * weight

It is cheaper and works as well in practice (Zhang & Sennrich, 2019).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scratchllm.configs.models import NORMS


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (``torch.nn.LayerNorm`` always had one before 2.1)."""

    def __init__(self, n_embd: int, bias: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.bias = nn.Parameter(torch.zeros(n_embd)) if bias else None
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """Root-mean-square normalisation with a learned gain and no bias."""

    def __init__(self, n_embd: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n_embd))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.rms_norm is the formula in the module docstring as one fused kernel.
        return F.rms_norm(x, self.weight.shape, self.weight, self.eps)


def make_norm(kind: str, n_embd: int, bias: bool, eps: float) -> nn.Module:
    """The norm layer named by ``kind`` (one of ``NORMS``)."""
    if kind == "layernorm":
        return LayerNorm(n_embd, bias=bias, eps=eps)
    if kind == "rmsnorm":
        return RMSNorm(n_embd, eps=eps)
    raise ValueError(f"unknown norm {kind!r}; choose one of {list(NORMS)}")
