"""How much training each study run gets, and how big its neural models are.

**Budgets** (``BUDGETS``: tiny, small, medium) fix the training steps, batch, window and
learning rate, and a target parameter count: the width of each neural model (GPT
``n_embd``, MLP and RNN ``n_hidden``) is solved so that its parameter count lands nearest
the target (``specs.build_model``), so mlp, rnn, gru, lstm and gpt are compared at about
the same size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """How much training each run gets, and how big the neural models are."""

    name: str
    max_iters: int  # optimizer steps per neural model
    batch_size: int  # windows per step
    block_size: int  # training window (and the GPT's / RNN's context) in symbols
    lr: float  # peak learning rate, after a linear warmup
    min_lr: float  # where the cosine ends: low, so the last steps settle the sharp rules
    warmup_iters: int
    weight_decay: float  # AdamW's; decay fights the sharp logits a rule needs on tiny runs
    train_samples: int  # samples drawn from the language to train on (10 % held for val)
    heldout_samples: int  # fresh samples for the validation loss and the KL
    eval_samples: int  # samples drawn from each model and verified
    target_params: int  # neural widths are solved to land near this many parameters
    gpt_layers: int
    gpt_heads: int
    mlp_embd: int  # MLP token embedding width (n_hidden is solved)
    rnn_layers: int
    rnn_embd: int  # RNN/GRU/LSTM embedding width (n_hidden is solved)
    smoothing: float = 0.01  # counting models: add-k pseudo-count

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and value < 1:
                raise ValueError(f"budget {self.name}: {f.name} ({value}) must be at least 1")
        if self.warmup_iters > self.max_iters:
            raise ValueError(
                f"budget {self.name}: warmup_iters ({self.warmup_iters}) must not exceed "
                f"max_iters ({self.max_iters})"
            )


# tiny is tuned so its CI checks hold across seeds 0-2 (a bigram fails sticky:k=2,stop=0.3, a
# trigram passes markov:order=2,length=8, the GPT passes both at >= 99 % valid, sampled at
# temperature 1) in under two minutes for 2 languages x 3 models on two cores. With the
# default (longer) samples the GPT lands at 98-99.5 %: close, not reliably over the line.
# What mattered, in order: more steps, a high learning rate decayed far, no weight decay,
# and fresh samples over epochs.
# small and medium scale the same recipe up; they were not tuned run by run.
BUDGETS: dict[str, Budget] = {
    "tiny": Budget(
        name="tiny",
        max_iters=3000,
        batch_size=64,
        block_size=16,  # plenty for rules that read a few symbols back; cheap attention
        lr=1e-2,  # small models take a high rate...
        min_lr=1e-4,  # ...and a long decay, which makes the invalid symbols' logits sharp
        warmup_iters=50,
        weight_decay=0.0,
        train_samples=20_000,  # fewer samples, many epochs: the GPT overfits and slips
        heldout_samples=200,
        eval_samples=400,
        target_params=12_000,
        gpt_layers=2,
        gpt_heads=2,
        mlp_embd=8,
        rnn_layers=1,
        rnn_embd=16,
    ),
    "small": Budget(
        name="small",
        max_iters=4000,
        batch_size=64,
        block_size=32,
        lr=5e-3,
        min_lr=5e-5,
        warmup_iters=100,
        weight_decay=0.0,
        train_samples=20_000,
        heldout_samples=500,
        eval_samples=1000,
        target_params=50_000,
        gpt_layers=2,
        gpt_heads=4,
        mlp_embd=16,
        rnn_layers=1,
        rnn_embd=32,
    ),
    "medium": Budget(
        name="medium",
        max_iters=8000,
        batch_size=64,
        block_size=64,
        lr=2e-3,
        min_lr=2e-5,
        warmup_iters=200,
        weight_decay=0.0,
        train_samples=50_000,
        heldout_samples=1000,
        eval_samples=2000,
        target_params=200_000,
        gpt_layers=4,
        gpt_heads=4,
        mlp_embd=32,
        rnn_layers=2,
        rnn_embd=64,
    ),
}


def get_budget(name: str) -> Budget:
    if name not in BUDGETS:
        raise ValueError(f"unknown budget {name!r}; choose one of: {', '.join(BUDGETS)}")
    return BUDGETS[name]
