"""Multi-head causal self-attention, twice: fused and by hand.

Each token's vector is projected to a query, a key and a value in one matmul
(``c_attn``, GPT-2's fused QKV), split into ``n_head`` heads of ``head_dim`` features,
and each head computes::

    softmax(Q K^T / sqrt(head_dim) + mask) V

where the mask hides future tokens (causal) and padding. The heads are concatenated and
projected back (``c_proj``).

``impl = "sdpa"`` (the default) calls ``F.scaled_dot_product_attention``, which picks a
fused kernel; when training on a CPU, plain causal attention runs the C++ kernel of
``models/train_kernel.py`` instead (the same values, to float32 rounding).
``impl = "reference"`` writes the formula out with an explicit softmax and keeps the
attention weights in ``last_weights`` (``[B, n_head, T_q, T_k]``) for plots;
``tests/models/test_attention.py`` holds the two equal in values and gradients.

Masks are boolean, True where a query may look at a key (SDPA's convention), shaped
``[B or 1, 1, T_q, T_k]``. The model builds one per forward and shares it across layers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scratchllm.models import train_kernel
from scratchllm.models.layers.positions import apply_rope

ATTENTION_IMPLS = ("sdpa", "reference")


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``softmax(q k^T / sqrt(d)) v`` with masks, returning ``(output, weights)``.

    ``q [B, H, Tq, D]``, ``k, v [B, H, Tk, D]``; ``is_causal`` lets query ``i`` see keys
    ``0..i`` (queries aligned to the start, as SDPA does); ``mask [*, Tq, Tk]`` bool.
    A query whose keys are all masked would give NaN; callers keep the diagonal open.
    """
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, H, Tq, Tk)
    if is_causal:
        Tq, Tk = scores.shape[-2:]
        causal = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = F.softmax(scores, dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, dropout_p)
    return weights @ v, weights  # (B, H, Tq, D), (B, H, Tq, Tk)


class CausalSelfAttention(nn.Module):
    """GPT-2's attention block: ``c_attn`` (C -> 3C), heads, ``c_proj`` (C -> C)."""

    def __init__(self, n_embd: int, n_head: int, bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        self.n_head = n_head
        self.head_dim = n_embd // n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)
        self.impl = "sdpa"
        self.last_weights: torch.Tensor | None = None

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        is_causal: bool = True,
        *,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
        start: int = 0,
    ) -> torch.Tensor:
        """``x [B, T, C] -> [B, T, C]``.

        ``mask``: bool ``[B or 1, 1, T, T_k]``, True where a query may look; ``is_causal``:
        let SDPA apply the causal mask itself (only when ``mask`` is None).
        ``rope``: ``(cos, sin)`` from ``positions.rope_at`` (``[T, 1, 1, D]`` or
        ``[B, T, 1, 1, D]``).
        ``cache``: preallocated ``(keys, values)`` buffers ``[B, H, max_length, D]``; this
        call writes its keys and values into slots ``start:start+T`` in place and attends
        over slots ``0:start+T``.
        """
        B, T, C = x.shape
        dropout_p = self.dropout if self.training else 0.0
        if (
            rope is None
            and cache is None
            and mask is None
            and is_causal
            and dropout_p == 0.0
            and self.impl == "sdpa"
            and train_kernel.attention_fits(B, T, self.n_head, self.head_dim)
        ):  # training on a CPU: the C++ kernel reads c_attn's product as it is (adding its
            # bias itself when c_attn is a plain nn.Linear) and writes y side by side
            if train_kernel.linear_fits(x, self.c_attn):
                return self.c_proj(train_kernel.linear_attention(x, self.c_attn, self.n_head))
            qkv = self.c_attn(x)  # (B, T, 3C), e.g. from a LoRA layer
            if train_kernel.wants(qkv):
                return self.c_proj(train_kernel.causal_attention(qkv, self.n_head))
        else:
            qkv = self.c_attn(x)
        if rope is None:
            # split, not view + permute + unbind: the backward of split concatenates the
            # three gradients straight into qkv's layout (one copy; unbind's stack and the
            # permute back take two).
            heads = (B, T, self.n_head, self.head_dim)
            q, k, v = (t.view(heads).transpose(1, 2) for t in qkv.split(C, dim=2))
        else:  # rotate queries and keys together: one set of ops for both
            qkv = qkv.view(B, T, 3, self.n_head, self.head_dim)  # (B, T, 3, H, D)
            qk = apply_rope(qkv[:, :, :2], *rope)  # (B, T, 2, H, D)
            q, k = qk.permute(2, 0, 3, 1, 4).unbind(0)
            v = qkv[:, :, 2].transpose(1, 2)
        if cache is not None:
            k_buf, v_buf = cache
            k_buf.narrow(2, start, T).copy_(k)  # write this call's slots in place
            v_buf.narrow(2, start, T).copy_(v)
            k, v = k_buf.narrow(2, 0, start + T), v_buf.narrow(2, 0, start + T)  # (B, H, L, D)

        if self.impl == "sdpa":
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal
            )
        else:
            y, self.last_weights = reference_attention(q, k, v, mask, is_causal, dropout_p)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, H, D) -> (B, T, C): heads side by side
        y = self.c_proj(y)
        return self.resid_dropout(y) if dropout_p > 0 else y  # skip the no-op call when decoding
