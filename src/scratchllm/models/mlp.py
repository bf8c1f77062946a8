"""The neural n-gram model (Bengio et al., 2003): an MLP over the previous n - 1 tokens.

Like the counting n-gram it predicts token ``t + 1`` from a fixed window of the ``n - 1``
tokens ending at ``t``; unlike it, similar contexts share statistics, because each token
is a learned vector and the prediction a smooth function of them::

    x = [wte(idx[t-n+2]), ..., wte(idx[t])]     # (n-1) * n_embd, concatenated
    h = act(fc(x))                              # tanh (Bengio's) or relu
    logits = lm_head(h) (+ direct(x))           # direct: Bengio's optional input->output path

``forward`` computes this for every position of a ``[B, T]`` window at once: the windows
are cut with ``unfold`` (no Python loop over T).

**The start token.** A position with fewer than ``n - 1`` tokens before it in the window
(the first tokens of a training window, or a short prompt) fills the missing slots with
a *learned start embedding*: row ``vocab_size`` of ``wte``, which no real token uses. The
same rule holds in training and in generation, and left padding (``attention_mask``
False) is treated as "no token here" too, so a padded row scores like its text alone.

There is no incremental path (``new_state`` gives None): the generator re-runs
``forward`` on the last ``n - 1`` tokens, which costs no more than a cache would.

>>> model = MLPLM(MLPConfig(n=3, vocab_size=10, n_embd=4, n_hidden=16))
>>> logits, _ = model(torch.tensor([[1, 2, 3]]))
>>> tuple(logits.shape), model.context_length
((1, 3, 10), 2)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scratchllm.configs.models import MLPConfig
from scratchllm.models.base import LanguageModel, lm_loss, register

ACTIVATIONS = {"tanh": torch.tanh, "relu": F.relu}


@register
class MLPLM(LanguageModel):
    """Bengio-style neural n-gram language model; see the module docstring."""

    family = "mlp"
    config_class = MLPConfig

    def __init__(self, config: MLPConfig) -> None:
        super().__init__(config)
        c = config
        width = (c.n - 1) * c.n_embd  # the concatenated context
        self.wte = nn.Embedding(c.vocab_size + 1, c.n_embd)  # row vocab_size: the start token
        self.drop = nn.Dropout(c.dropout)
        self.fc = nn.Linear(width, c.n_hidden)
        self.lm_head = nn.Linear(c.n_hidden, c.vocab_size)
        self.direct = nn.Linear(width, c.vocab_size, bias=False) if c.direct else None

    @property
    def context_length(self) -> int:
        return self.config.n - 1

    @property
    def start_token(self) -> int:
        """The id of the learned start embedding (``vocab_size``): "no token in this slot"."""
        return self.config.vocab_size

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        loss_mask: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``[B, T, V]`` for ids ``idx [B, T]``, and the loss when ``targets`` is given.

        ``attention_mask [B, T]`` (False = padding) replaces padded slots by the start
        token and leaves them out of the loss.
        """
        if idx.dim() != 2:
            raise ValueError(f"idx must be [B, T] token ids, got shape {tuple(idx.shape)}")
        B, T = idx.shape
        V, n = self.config.vocab_size, self.config.n
        # The embedding has a row past V (the start token), so check the range ourselves.
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= V):
            raise ValueError(f"idx holds ids outside 0..{V - 1} (vocab_size {V})")
        if attention_mask is not None:
            if attention_mask.shape != idx.shape:
                raise ValueError(
                    f"attention_mask shape {tuple(attention_mask.shape)} must be (B, T) = "
                    f"{tuple(idx.shape)}"
                )
            mask = attention_mask.to(device=idx.device, dtype=torch.bool)
            idx = idx.masked_fill(~mask, self.start_token)
            loss_mask = mask if loss_mask is None else mask & loss_mask.bool()
        padded = F.pad(idx, (n - 2, 0), value=self.start_token)  # (B, T + n - 2)
        context = padded.unfold(1, n - 1, 1)  # (B, T, n-1): the tokens t-n+2 .. t
        x = self.drop(self.wte(context).flatten(2))  # (B, T, (n-1) * n_embd)
        h = self.drop(ACTIVATIONS[self.config.act](self.fc(x)))  # (B, T, n_hidden)
        logits = self.lm_head(h)  # (B, T, V)
        if self.direct is not None:
            logits = logits + self.direct(x)
        loss = None if targets is None else lm_loss(logits, targets, loss_mask)
        return logits, loss
