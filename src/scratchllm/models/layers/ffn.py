"""The position-wise feed-forward part of a block: a dense MLP, or a mixture of experts.

The MLP widens each token's vector (``4 * n_embd`` by default), applies a non-linearity
and projects back: GPT-2's ``mlp.c_fc`` and ``mlp.c_proj``.

The mixture of experts (MoE) keeps ``n_expert`` such MLPs and a ``router`` that sends
each token to its ``top_k`` highest-scoring experts, so parameters grow with the number
of experts while the work per token stays that of ``top_k`` MLPs. Left alone, a router
collapses onto a few experts; the Switch Transformer's load-balancing loss (Fedus et
al., 2021) pushes it back toward uniform use::

    aux = n_expert * sum_e f_e * P_e

where ``f_e`` is the fraction of routing slots that went to expert ``e`` and ``P_e`` the
mean router probability of ``e``. Both are ``1 / n_expert`` when routing is uniform,
which makes ``aux = 1`` its minimum. The model adds ``moe_aux_loss_coef * aux``
(summed over layers) to the language-model loss. Every routed token is processed
(no capacity limit, so nothing is dropped).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scratchllm.configs.models import ACTIVATIONS
from scratchllm.models import train_kernel


class GELU(nn.GELU):
    """``nn.GELU`` that trains the exact form with the C++ kernel of
    ``models/train_kernel.py`` on a CPU (the same values, to float32 rounding); the tanh
    form and everything else run PyTorch's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.approximate == "none" and train_kernel.wants(x):
            return train_kernel.gelu(x)
        return super().forward(x)


def make_activation(name: str) -> nn.Module:
    """``gelu`` is the exact erf form; ``gelu_tanh`` is GPT-2's tanh approximation
    (transformers' ``gelu_new``); ``relu`` is the original transformer's."""
    if name == "gelu":
        return GELU()
    if name == "gelu_tanh":
        return GELU(approximate="tanh")
    if name == "relu":
        return nn.ReLU()
    raise ValueError(f"unknown activation {name!r}; choose one of {list(ACTIVATIONS)}")


class MLP(nn.Module):
    """``c_proj(act(c_fc(x)))``: ``[..., C] -> [..., hidden] -> [..., C]``."""

    def __init__(self, n_embd: int, hidden: int, act: str, bias: bool, dropout: float) -> None:
        super().__init__()
        self.c_fc = nn.Linear(n_embd, hidden, bias=bias)
        self.act = make_activation(act)
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            isinstance(self.act, GELU)
            and self.act.approximate == "none"
            and train_kernel.linear_fits(x, self.c_fc, self.c_proj)
        ):  # training on a CPU: the C++ GELU keeps its slope for the backward
            y = train_kernel.gelu_mlp(x, self.c_fc, self.c_proj)
        else:
            y = self.c_proj(self.act(self.c_fc(x)))
        # Skipping an inactive dropout saves a module call per layer when decoding.
        return self.dropout(y) if self.training and self.dropout.p > 0 else y


class MoE(nn.Module):
    """A top-k routed mixture of ``n_expert`` MLPs with the Switch load-balancing loss.

    ``forward(x [B, T, C], token_mask [B, T] or None) -> (y [B, T, C], aux scalar)``.
    With ``top_k = 1`` a token's output is its expert's output scaled by the router
    probability (so the router gets a gradient from the language-model loss, as in
    Switch); with ``top_k > 1`` the chosen probabilities are renormalised to sum to 1.
    ``token_mask`` (False = padding) keeps padding out of the balancing statistics.
    """

    def __init__(
        self,
        n_embd: int,
        hidden: int,
        act: str,
        bias: bool,
        dropout: float,
        n_expert: int,
        top_k: int,
    ) -> None:
        super().__init__()
        self.top_k = top_k
        self.router = nn.Linear(n_embd, n_expert, bias=False)
        self.experts = nn.ModuleList(
            MLP(n_embd, hidden, act, bias, dropout) for _ in range(n_expert)
        )

    def forward(
        self, x: torch.Tensor, token_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, C = x.shape
        E = len(self.experts)
        flat = x.reshape(B * T, C)  # (N, C)
        probs = F.softmax(self.router(flat).float(), dim=-1)  # (N, E) in fp32 for stability
        top_p, top_i = probs.topk(self.top_k, dim=-1)  # (N, k)
        if self.top_k > 1:
            top_p = top_p / top_p.sum(dim=-1, keepdim=True)
        top_p = top_p.to(x.dtype)

        out = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            rows, slot = (top_i == e).nonzero(as_tuple=True)  # which tokens chose e, in which slot
            if rows.numel() == 0:
                continue
            y = expert(flat[rows]) * top_p[rows, slot, None]  # (n_e, C)
            out.index_add_(0, rows, y)

        # Switch balancing loss over the real tokens: E * sum_e f_e * P_e.
        chosen = F.one_hot(top_i, E).sum(dim=1).float()  # (N, E) routing slots per expert
        if token_mask is None:
            f = chosen.mean(dim=0) / self.top_k
            P = probs.mean(dim=0)
        else:
            w = token_mask.reshape(B * T, 1).float()
            n = w.sum().clamp(min=1.0)
            f = (chosen * w).sum(dim=0) / (n * self.top_k)
            P = (probs * w).sum(dim=0) / n
        aux = E * (f * P).sum()
        return out.view(B, T, C), aux
