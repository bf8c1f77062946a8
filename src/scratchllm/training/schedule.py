"""The learning-rate schedule: linear warmup, then cosine decay to a floor.

``lr_at(step, cfg)`` is a pure function of the step (0-based: the index of the update
about to be taken), so resuming at step k gives exactly the rate the uninterrupted run
had there, and a plot of the schedule needs no optimizer::

    lr ▲      ___
       │    /     `-.__                       warmup: lr * (step + 1) / warmup
       │   /           `--.__                 cosine: min_lr + (lr - min_lr) *
       │  /                  `--.___                  (1 + cos(pi * progress)) / 2
       │ /                          `------   floor:  min_lr after lr_decay_iters
       └─────────────────────────────────────▶ step
         warmup_iters              lr_decay_iters (default max_iters)

>>> cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_iters=10, max_iters=110)
>>> [round(lr_at(s, cfg), 3) for s in (0, 9, 10, 60, 110, 500)]
[0.1, 1.0, 1.0, 0.55, 0.1, 0.1]
"""

from __future__ import annotations

import math

from scratchllm.configs.train import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate for update number ``step`` (0-based) under ``cfg``'s schedule."""
    if step < 0:
        raise ValueError(f"step ({step}) must be >= 0")
    warmup = cfg.warmup_steps
    if step < warmup:
        # Start above zero: the first update already moves the weights a little.
        return cfg.lr * (step + 1) / warmup
    if cfg.schedule == "constant":
        return cfg.lr
    decay_end = cfg.decay_iters
    if step >= decay_end:
        return cfg.min_lr
    progress = (step - warmup) / (decay_end - warmup)  # 0 -> 1
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
