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


def schedule_change(old: TrainConfig, new: TrainConfig, step: int) -> str | None:
    """What resuming at ``step`` under ``new`` instead of ``old`` does to the learning
    rate, in words; None when the schedule from ``step`` on is the same.

    >>> old = TrainConfig(max_iters=2000)                 # warmup 100, cosine to step 2000
    >>> import textwrap
    >>> print(textwrap.fill(schedule_change(old, old.replace(max_iters=822), step=411), 80))
    the resume changes the learning-rate schedule: the cosine ends at step 822 (was
    2000: lr_decay_iters follows max_iters unless set), warmup 41 steps (was 100);
    the learning rate at step 411 is 0.000587 (was 0.000942)
    >>> schedule_change(old, old.replace(max_iters=4000, lr_decay_iters=2000), step=2000) is None
    True
    """
    changes = []
    if new.decay_iters != old.decay_iters and new.schedule == old.schedule == "cosine":
        why = ": lr_decay_iters follows max_iters unless set" if new.lr_decay_iters is None else ""
        changes.append(f"the cosine ends at step {new.decay_iters} (was {old.decay_iters}{why})")
    if new.warmup_steps != old.warmup_steps:
        changes.append(f"warmup {new.warmup_steps} steps (was {old.warmup_steps})")
    for name in ("schedule", "lr", "min_lr"):
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            changes.append(f"{name} {b:g} (was {a:g})" if name != "schedule" else f"{b} (was {a})")
    if not changes:
        return None
    before, after = lr_at(step, old), lr_at(step, new)
    at = f"; the learning rate at step {step} is {after:.3g}"
    at += f" (was {before:.3g})" if before != after else " (as before)"
    return "the resume changes the learning-rate schedule: " + ", ".join(changes) + at
