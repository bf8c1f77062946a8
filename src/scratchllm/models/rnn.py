"""Recurrent language models: a vanilla tanh RNN, a GRU or an LSTM, stacked ``n_layer`` deep.

Each token id becomes a vector (``wte``), the recurrent stack reads the vectors left to
right carrying a hidden state (``rnn``, cells written out in ``rnn_cells``), and a linear
head turns each step's top hidden state into next-token logits::

    idx (B, T) -> wte -> (B, T, n_embd) -> rnn -> (B, T, n_hidden) -> lm_head -> (B, T, V)

One family, ``"rnn"``, covers the three cells: ``RNNConfig.cell`` picks ``"rnn"``,
``"gru"`` or ``"lstm"``. ``model.rnn`` names its parameters as ``torch.nn.RNN/GRU/LSTM``
do (``weight_ih_l0``, ...; gates in torch's order), so
``model.rnn.load_state_dict(torch_lstm.state_dict())`` copies torch weights in one to one.

**Context length.** An RNN has no window: its state summarises everything it has read.
What bounds it in practice is the length of the sequences it was trained on, so
``context_length`` reports ``block_size``, the training window. ``forward`` accepts any
length; ``scratchllm.generation`` conditions on the last ``block_size`` tokens (past that
it restarts the state on the latest window, so generating with and without the carried
state gives the same tokens).

**Incremental decoding.** ``new_state`` gives the zero state (``(h,)`` or ``(h, c)``, each
``(n_layer, B, n_hidden)``) and ``forward_step`` feeds it more tokens. Unlike a KV cache
the state never grows: a step costs the same at token 10 and token 10 000. Where
``pad_mask`` is False a step is skipped and the state carried through unchanged, so a
left-padded row decodes exactly like its prompt alone.

>>> model = RNNLM(RNNConfig(cell="gru", vocab_size=20, n_embd=8, n_hidden=16, n_layer=2))
>>> logits, loss = model(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 5, dtype=torch.long))
>>> tuple(logits.shape)
(2, 5, 20)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from scratchllm.configs.models import RNNConfig
from scratchllm.models.base import LanguageModel, lm_loss, register
from scratchllm.models.rnn_cells import Recurrent


@dataclass(eq=False)
class RNNState:
    """The carried state of a batch: ``(h,)`` or ``(h, c)``, each ``(n_layer, B, n_hidden)``."""

    hx: tuple[torch.Tensor, ...]
    length: int = 0  # tokens fed so far (padding included)

    @property
    def batch_size(self) -> int:
        return self.hx[0].size(1)

    def reorder(self, index: torch.Tensor) -> RNNState:
        """Keep batch rows ``index`` (``[B]``, repeats allowed): beam search's reshuffle."""
        index = index.to(self.hx[0].device)
        self.hx = tuple(s.index_select(1, index) for s in self.hx)
        return self


@register
class RNNLM(LanguageModel):
    """A recurrent language model; see the module docstring."""

    family = "rnn"
    config_class = RNNConfig

    def __init__(self, config: RNNConfig) -> None:
        super().__init__(config)
        c = config
        self.wte = nn.Embedding(c.vocab_size, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.rnn = Recurrent(
            c.cell, c.n_embd, c.n_hidden, c.n_layer, bias=c.bias, dropout=c.dropout, fast=c.fast
        )
        self.lm_head = nn.Linear(c.n_hidden, c.vocab_size)

    @property
    def context_length(self) -> int:
        return self.config.block_size

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        loss_mask: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``[B, T, V]`` for ids ``idx [B, T]``, and the loss when ``targets`` is given.

        Every sequence starts from the zero state. ``attention_mask [B, T]`` (False =
        padding) lets rows of unequal length share a batch: padded steps leave the state
        untouched and are left out of the loss, so each row gets the logits of its text alone.
        """
        if idx.dim() != 2:
            raise ValueError(f"idx must be [B, T] token ids, got shape {tuple(idx.shape)}")
        mask = None
        if attention_mask is not None:
            if attention_mask.shape != idx.shape:
                raise ValueError(
                    f"attention_mask shape {tuple(attention_mask.shape)} must be (B, T) = "
                    f"{tuple(idx.shape)}"
                )
            mask = attention_mask.to(device=idx.device, dtype=torch.bool)
            loss_mask = mask if loss_mask is None else mask & loss_mask.bool()
        x = self.drop(self.wte(idx))  # (B, T, n_embd)
        out, _ = self.rnn(x, None, mask)  # (B, T, n_hidden)
        logits = self.lm_head(self.drop(out))  # (B, T, V)
        loss = None if targets is None else lm_loss(logits, targets, loss_mask)
        return logits, loss

    # -- incremental decoding -----------------------------------------------------------

    def new_state(self, batch_size: int, max_length: int) -> RNNState:
        """The zero state for ``batch_size`` rows. ``max_length`` is accepted for the
        common interface and ignored: a recurrent state does not grow with the sequence."""
        if batch_size < 1:
            raise ValueError(f"batch_size ({batch_size}) must be at least 1")
        return RNNState(self.rnn.zero_state(batch_size, self.lm_head.weight))

    def forward_step(
        self, idx: torch.Tensor, state: RNNState, pad_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Feed ``idx [B, T_new]`` into ``state`` (updated in place); return their logits
        ``[B, T_new, V]``, equal to ``forward``'s on the whole sequence.

        ``pad_mask [B, T_new]`` (False = padding) skips those steps: the state passes
        through them unchanged. Gradients flow when called outside ``no_grad``, so the
        same path serves truncated backpropagation through time.
        """
        if idx.dim() != 2:
            raise ValueError(f"idx must be [B, T_new] token ids, got shape {tuple(idx.shape)}")
        B, T = idx.shape
        if state.batch_size != B:
            raise ValueError(f"idx has {B} rows but the state was made for {state.batch_size}")
        if pad_mask is not None and pad_mask.shape != (B, T):
            raise ValueError(f"pad_mask shape {tuple(pad_mask.shape)} must be {(B, T)}")
        x = self.drop(self.wte(idx))  # (B, T, n_embd)
        out, state.hx = self.rnn(x, state.hx, pad_mask)  # (B, T, n_hidden)
        state.length += T
        return self.lm_head(self.drop(out))  # (B, T, V)
