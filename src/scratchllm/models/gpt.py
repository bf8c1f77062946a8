"""GPT: a decoder-only transformer, GPT-2's architecture with switchable parts.

Token ids become vectors (``wte``), learn where they are (``pos``: a learned table, fixed
sinusoids, or rotary queries/keys), and pass through ``n_layer`` pre-norm blocks::

    x = x + attn(norm_1(x))     # tokens look at earlier tokens
    x = x + ffn(norm_2(x))      # each token thinks on its own (an MLP or a mixture of experts)

and a final norm and ``lm_head`` turn each vector into next-token logits. With the
defaults (``pos="learned"``, ``norm="layernorm"``, ``ffn="mlp"``, ``bias=True``) this is
GPT-2, parameter name for parameter name (``transformer.h.0.attn.c_attn.weight``, ...),
so ``scratchllm.interop.load_gpt2`` copies Hugging Face weights in one to one.

Initialisation follows GPT-2: every weight ~ N(0, 0.02), biases 0, norm gains 1, and
the projections that write into the residual stream (``attn.c_proj``, ``mlp.c_proj``)
scaled by ``1 / sqrt(2 * n_layer)`` so the stream's variance does not grow with depth.

>>> import torch
>>> model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50))
>>> logits, loss = model(torch.zeros(1, 5, dtype=torch.long), torch.zeros(1, 5, dtype=torch.long))
>>> tuple(logits.shape)
(1, 5, 50)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from scratchllm.configs.models import GPTConfig
from scratchllm.models import train_ends, train_gpt
from scratchllm.models.base import LanguageModel, lm_loss, register
from scratchllm.models.gpt_decode import build_plan, decode_token
from scratchllm.models.layers.attention import ATTENTION_IMPLS
from scratchllm.models.layers.block import Block
from scratchllm.models.layers.documents import document_attention
from scratchllm.models.layers.kv_cache import KVCache
from scratchllm.models.layers.norms import make_norm
from scratchllm.models.layers.positions import rope_at, rope_tables, sinusoidal_table

__all__ = ["GPT", "GPTConfig", "Block"]


@register
class GPT(LanguageModel):
    """A GPT language model; see the module docstring for the architecture."""

    family = "gpt"
    config_class = GPTConfig

    def __init__(self, config: GPTConfig) -> None:
        super().__init__(config)
        c = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(c.vocab_size, c.n_embd),
                drop=nn.Dropout(c.dropout),
                h=nn.ModuleList(Block(c) for _ in range(c.n_layer)),
                ln_f=make_norm(c.norm, c.n_embd, c.bias, c.layer_norm_epsilon),
            )
        )
        if c.pos == "learned":
            self.transformer["wpe"] = nn.Embedding(c.block_size, c.n_embd)
        # Derived tables are non-persistent buffers: rebuilt from the config, never saved.
        if c.pos == "sinusoidal":
            self.register_buffer("pos_table", sinusoidal_table(c.block_size, c.n_embd), False)
        if c.pos == "rope":
            cos, sin = rope_tables(c.block_size, c.head_dim, c.rope_base)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        if c.tie_weights:
            self.lm_head.weight = self.transformer.wte.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2's initialisation (see the module docstring)."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=residual_std)

    @property
    def context_length(self) -> int:
        return self.config.block_size

    def set_attention_impl(self, impl: str) -> None:
        """``"sdpa"`` (fused, the default) or ``"reference"`` (explicit softmax, which keeps
        each layer's attention weights in ``transformer.h[i].attn.last_weights``)."""
        if impl not in ATTENTION_IMPLS:
            raise ValueError(
                f"unknown attention impl {impl!r}; choose one of {list(ATTENTION_IMPLS)}"
            )
        for block in self.transformer.h:
            block.attn.impl = impl
            block.attn.last_weights = None

    # -- the parts shared by forward and forward_step -------------------------------------

    def _embed(self, idx: torch.Tensor, positions: slice | torch.Tensor) -> torch.Tensor:
        x = self.transformer.wte(idx)  # (B, T, C)
        if self.config.pos == "learned":
            x = x + self.transformer.wpe.weight[positions]  # (T, C) or (B, T, C)
        elif self.config.pos == "sinusoidal":
            x = x + self.pos_table[positions]
        return self.transformer.drop(x) if self.training and self.config.dropout > 0 else x

    def _rope(self, positions: slice | torch.Tensor):
        if self.config.pos != "rope":
            return None
        return rope_at(self.rope_cos, self.rope_sin, positions)

    # -- training / scoring -------------------------------------------------------------

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        loss_mask: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        documents: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``[B, T, V]`` for ids ``idx [B, T]``, and the loss when ``targets`` is given.

        ``attention_mask [B, T]`` (bool or 0/1, False = padding) lets rows of unequal
        length share a batch, padded on either side: no token attends to padding,
        positions count real tokens only (so a left-padded row gives the logits of its
        text alone), and padded positions are left out of the loss. ``documents [B, T]``
        (packed rows: the example each position belongs to) keeps attention inside each
        example and restarts positions with it (``layers.documents``). With ``ffn="moe"``
        the loss includes ``moe_aux_loss_coef`` times the balancing loss of every layer.
        """
        if idx.dim() != 2:
            raise ValueError(f"idx must be [B, T] token ids, got shape {tuple(idx.shape)}")
        B, T = idx.shape
        if self.config.block_size < T:
            raise ValueError(
                f"sequence length {T} is longer than block_size ({self.config.block_size}); "
                f"crop the input to the last {self.config.block_size} tokens"
            )
        mask, token_mask, positions = None, None, slice(0, T)
        if attention_mask is not None:
            if attention_mask.shape != (B, T):
                raise ValueError(
                    f"attention_mask shape {tuple(attention_mask.shape)} must be (B, T) = {(B, T)}"
                )
            token_mask = attention_mask.to(device=idx.device, dtype=torch.bool)
            positions = (token_mask.cumsum(1) - 1).clamp(min=0)  # (B, T) real tokens before
            causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
            eye = torch.eye(T, dtype=torch.bool, device=idx.device)
            # Real keys in the past, and always its own slot (a leading pad has no real key).
            mask = (token_mask[:, None, None, :] & causal) | eye  # (B, 1, T, T)
            loss_mask = token_mask if loss_mask is None else token_mask & loss_mask.bool()
        if documents is not None:  # packed rows (fine-tuning); padding is its own document
            if attention_mask is not None or documents.shape != (B, T):
                raise ValueError(f"documents must be (B, T) = {(B, T)}, without attention_mask")
            mask, positions = document_attention(documents.to(idx.device))

        # Training on a CPU: the whole model as one Function on the C++ kernels where
        # train_gpt takes it; else its two ends as Functions where train_ends takes them,
        # and the blocks where train_block does.
        whole = train_gpt.run(self, idx, targets, loss_mask, positions)
        if whole is not None:
            return whole
        if train_ends.embed_fits(self, idx, positions):
            x = train_ends.embed(self, idx)
        else:
            x = self._embed(idx, positions)
        rope = self._rope(positions)
        aux = None
        for block in self.transformer.h:
            x, block_aux = block(
                x, mask=mask, is_causal=mask is None, rope=rope, token_mask=token_mask
            )
            if block_aux is not None:
                aux = block_aux if aux is None else aux + block_aux
        if targets is not None and train_ends.head_fits(self, x, targets, loss_mask):
            logits, loss = train_ends.head_loss(self, x, targets, loss_mask)
        else:
            logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, V)
            if targets is None:
                return logits, None
            loss = lm_loss(logits, targets, loss_mask)
        if aux is not None:
            loss = loss + self.config.moe_aux_loss_coef * aux
        return logits, loss

    @torch.no_grad()
    def attention_weights(
        self, idx: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Every layer's attention weights for ``idx [B, T]``: ``[n_layer, B, n_head, T, T]``,
        row ``i`` of a head being how much token ``i`` looks at each earlier token."""
        impls = [block.attn.impl for block in self.transformer.h]
        self.set_attention_impl("reference")
        try:
            self(idx, attention_mask=attention_mask)
            return torch.stack([block.attn.last_weights for block in self.transformer.h])
        finally:
            for block, impl in zip(self.transformer.h, impls):
                block.attn.impl = impl
                block.attn.last_weights = None

    # -- incremental decoding -----------------------------------------------------------

    def new_state(self, batch_size: int, max_length: int) -> KVCache:
        """An empty KV cache for ``batch_size`` rows of up to ``max_length`` slots."""
        w = self.transformer.wte.weight
        c = self.config
        return KVCache.allocate(
            c.n_layer, batch_size, c.n_head, max_length, c.head_dim, w.dtype, w.device
        )

    def forward_step(
        self, idx: torch.Tensor, state: KVCache, pad_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Append ``idx [B, T_new]`` to ``state`` and return their logits ``[B, T_new, V]``.

        Call it once with the prompt (prefill), then with one token at a time. The logits
        equal ``forward``'s on the whole sequence. ``pad_mask [B, T_new]`` (False = left
        padding) keeps padding out of attention and positions. Raises ValueError when the
        cache or ``block_size`` would overflow.
        """
        if not torch.is_inference_mode_enabled():  # a decorator's new context costs a
            with torch.inference_mode():  # microsecond a token: none when already in one
                return self.forward_step(idx, state, pad_mask)
        if idx.dim() != 2:
            raise ValueError(f"idx must be [B, T_new] token ids, got shape {tuple(idx.shape)}")
        B, T = idx.shape
        if state.batch_size != B:
            raise ValueError(f"idx has {B} rows but the state was made for {state.batch_size}")
        start, positions, mask, is_causal = state.advance(T, pad_mask, self.config.block_size)
        if state.buffer is not None:
            # The fast path, when gpt_decode supports this model: the C++ step for any
            # number of tokens, or PyTorch functions for one token, instead of the modules.
            # The weights are gathered once per state (a decline is kept too); whether they
            # still apply is checked on every call.
            if state.plan is None:
                state.plan = build_plan(self, B, state.max_length) or False
            plan = state.plan
            if plan and (T == 1 or plan.kernel is not None) and plan.applies():
                pos = None if state.key_mask is None else positions  # (B, T) with padding
                logits = decode_token(plan, idx, state.buffer, start, pos, state.key_mask)
                if logits is not None:  # None: a token id out of range, which F.embedding names
                    return logits
        x = self._embed(idx, positions)  # (B, T, C)
        rope = self._rope(positions)
        for block, k, v in zip(self.transformer.h, state.keys, state.values):
            x, _ = block(x, mask=mask, is_causal=is_causal, rope=rope, cache=(k, v), start=start)
        return self.lm_head(self.transformer.ln_f(x))  # (B, T, V)
