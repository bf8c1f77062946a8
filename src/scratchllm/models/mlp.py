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

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from scratchllm.models.base import LanguageModel, lm_loss, register

ACTIVATIONS = {"tanh": torch.tanh, "relu": F.relu}


@dataclass
class MLPConfig:
    n: int = 4  # tokens per n-gram: the model sees the n - 1 tokens before the one it predicts
    vocab_size: int = 65  # tokens the model reads and predicts
    n_embd: int = 32  # embedding width of one token
    n_hidden: int = 256  # width of the hidden layer
    act: str = "tanh"  # hidden activation: "tanh" (Bengio 2003) or "relu"
    dropout: float = 0.0  # on the concatenated embeddings and the hidden layer (training)
    direct: bool = False  # add Bengio's direct connections from embeddings to logits

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 2:
            raise ValueError(
                f"n ({self.n!r}) must be an integer >= 2 (2 = bigram: one token of context); "
                "a unigram has no context to embed, use NGram(n=1)"
            )
        for name in ("vocab_size", "n_embd", "n_hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} ({value!r}) must be a positive integer")
        if self.act not in ACTIVATIONS:
            raise ValueError(f"unknown act {self.act!r}; choose one of {list(ACTIVATIONS)}")
        if not 0.0 <= self.dropout < 1.0:  # also rejects NaN
            raise ValueError(f"dropout ({self.dropout!r}) must be in [0, 1)")


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
