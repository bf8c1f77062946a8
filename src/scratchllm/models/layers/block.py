"""One pre-norm transformer block: attention, then the feed-forward part::

    x = x + attn(ln_1(x))     # tokens look at earlier tokens
    x = x + mlp(ln_2(x))      # each token thinks on its own (an MLP or a mixture of experts)

GPT-2's layout and parameter names (``ln_1``, ``attn``, ``ln_2``, ``mlp``). When training on a
CPU, a block that ``models/train_block.py`` takes runs as one Function on its C++ kernels,
with the same values and gradients.
"""

from __future__ import annotations

import torch
from torch import nn

from scratchllm.configs.models import GPTConfig
from scratchllm.models import train_block
from scratchllm.models.layers.attention import CausalSelfAttention
from scratchllm.models.layers.ffn import MLP, MoE
from scratchllm.models.layers.norms import make_norm


class Block(nn.Module):
    """One pre-norm transformer block (see the module docstring)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        c = config
        hidden = c.ffn_hidden or 4 * c.n_embd
        self.ln_1 = make_norm(c.norm, c.n_embd, c.bias, c.layer_norm_epsilon)
        self.attn = CausalSelfAttention(c.n_embd, c.n_head, c.bias, c.dropout)
        self.ln_2 = make_norm(c.norm, c.n_embd, c.bias, c.layer_norm_epsilon)
        self.is_moe = c.ffn == "moe"
        if self.is_moe:
            self.mlp = MoE(c.n_embd, hidden, c.act, c.bias, c.dropout, c.n_expert, c.moe_top_k)
        else:
            self.mlp = MLP(c.n_embd, hidden, c.act, c.bias, c.dropout)

    def forward(
        self,
        x: torch.Tensor,  # (B, T, C)
        *,
        mask: torch.Tensor | None = None,
        is_causal: bool = True,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
        start: int = 0,
        token_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return the new residual stream and the MoE balancing loss (None for an MLP).

        ``mask``, ``is_causal``, ``rope``, ``cache`` and ``start`` go to the attention (see
        ``CausalSelfAttention.forward``); ``token_mask [B, T]`` (False = padding) keeps
        padding out of the MoE's balancing statistics.
        """
        if (
            mask is None
            and is_causal
            and rope is None
            and cache is None
            and not self.is_moe
            and train_block.fits(self, x)
        ):  # training on a CPU: the block as one Function on the C++ kernels
            return train_block.block(self, x), None
        x = x + self.attn(
            self.ln_1(x), mask=mask, is_causal=is_causal, rope=rope, cache=cache, start=start
        )
        if self.is_moe:
            h, aux = self.mlp(self.ln_2(x), token_mask)
            return x + h, aux
        return x + self.mlp(self.ln_2(x)), None
