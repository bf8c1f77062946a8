"""``TrainConfig``: every knob of a training run, in one typed dataclass.

Names follow nanoGPT's ``train.py`` where they mean the same thing (``max_iters``,
``lr``, ``warmup_iters``, ``grad_clip``, ...), so its published configurations read
across. Model hyperparameters (``n_layer``, ``dropout``, ...) live in the model's own
config; this one holds only how to train. It round-trips through JSON into the
checkpoint, which is what ``--resume`` reads back::

    >>> cfg = TrainConfig(max_iters=200, lr=3e-4, warmup_iters=20)
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
    >>> cfg.decay_iters          # lr_decay_iters defaults to max_iters
    200
    >>> TrainConfig(max_iters=600).warmup_steps   # warmup defaults to 5 % (at most 100)
    30

**Batch arithmetic.** One optimizer step sees
``batch_size * gradient_accumulation_steps * world_size`` windows of ``block_size``
tokens: ``batch_size`` is what one process pushes through the model at once, as in
nanoGPT. Accumulating two micro-batches of 8 gives the same gradient as one batch of 16.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

DEVICES = ("auto", "cpu", "cuda", "mps")
# The training window of a model with no block size of its own (the n-gram and MLP models,
# which read a fixed n - 1 tokens): long enough that a batch has many targets per window.
DEFAULT_BLOCK_SIZE = 64
DTYPES = ("float32", "bfloat16")  # float32 = no autocast
SCHEDULES = ("cosine", "constant")


@dataclass
class TrainConfig:
    # -- how long, and on what ------------------------------------------------------------
    max_iters: int = 2000  # optimizer steps in the whole run
    batch_size: int = 12  # windows per micro-batch per process
    block_size: int | None = None  # tokens per window; None: see resolve_block_size
    gradient_accumulation_steps: int = 1  # micro-batches summed into one optimizer step

    # -- AdamW and the learning-rate schedule -----------------------------------------------
    lr: float = 1e-3  # peak learning rate, reached at the end of warmup
    min_lr: float = 1e-4  # the floor the cosine decays to (nanoGPT: lr / 10)
    warmup_iters: int | None = None  # linear warmup to lr; None: 5% of decay, at most 100
    lr_decay_iters: int | None = None  # step where the cosine reaches min_lr; None: max_iters
    schedule: str = "cosine"  # "cosine" (warmup, cosine to min_lr) or "constant" (warmup, lr)
    weight_decay: float = 0.1  # decoupled, on weight matrices only (see optimizer.py)
    beta1: float = 0.9
    beta2: float = 0.99  # nanoGPT's choice for small char models (0.95 for GPT-2 sizes)
    eps: float = 1e-8
    grad_clip: float | None = 1.0  # clip the global gradient norm to this; None or 0: off
    label_smoothing: float = 0.0  # mix this much of the uniform distribution into targets

    # -- evaluation, logging, stopping ------------------------------------------------------
    eval_interval: int = 250  # evaluate (and checkpoint) every this many steps, and at the end
    eval_iters: int = 20  # validation batches per evaluation
    log_interval: int = 10  # steps between metrics lines (the only per-step host syncs)
    early_stopping: int | None = None  # stop after this many evaluations without a new best
    validity_samples: int = 32  # samples checked by the language's verifier at each eval

    # -- machinery --------------------------------------------------------------------------
    seed: int = 1337  # seeds data order, initialisation noise and dropout
    device: str = "auto"  # "auto" = cuda, then mps, then cpu; or name one
    dtype: str = "float32"  # "bfloat16": bf16 autocast on accelerators (weights stay fp32)
    compile: bool = False  # torch.compile the model
    out_dir: str = "out"  # run directory: checkpoints, metrics.jsonl, loss.png
    progress: bool = True  # show a tqdm progress bar

    def __post_init__(self) -> None:
        _positive_int(self, "max_iters", "batch_size", "gradient_accumulation_steps")
        _positive_int(self, "eval_interval", "eval_iters", "log_interval")
        if self.block_size is not None:
            _positive_int(self, "block_size")
        _nonnegative_int(self, "validity_samples", "seed")
        if self.warmup_iters is not None:
            _nonnegative_int(self, "warmup_iters")
        if self.lr_decay_iters is not None:
            _positive_int(self, "lr_decay_iters")
        for name in ("lr", "min_lr", "weight_decay", "eps"):
            value = getattr(self, name)
            if not _is_real(value) or not value >= 0 or not math.isfinite(value):
                raise ValueError(f"{name} ({value!r}) must be a finite number >= 0")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr})")
        if self.warmup_iters is not None and self.warmup_iters > self.decay_iters:
            raise ValueError(
                f"warmup_iters ({self.warmup_iters}) must not exceed lr_decay_iters "
                f"({self.decay_iters}); shorten the warmup or decay later"
            )
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not _is_real(value) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name} ({value!r}) must be in [0, 1)")
        if self.grad_clip is not None and (not _is_real(self.grad_clip) or self.grad_clip < 0):
            raise ValueError(f"grad_clip ({self.grad_clip!r}) must be >= 0 (or None: no clipping)")
        if not _is_real(self.label_smoothing) or not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing ({self.label_smoothing!r}) must be in [0, 1)")
        if self.early_stopping is not None:
            _positive_int(self, "early_stopping")
        _choice(self, "device", DEVICES, prefix_ok=True)
        _choice(self, "dtype", DTYPES)
        _choice(self, "schedule", SCHEDULES)
        if not isinstance(self.out_dir, str) or not self.out_dir:
            raise ValueError(f"out_dir ({self.out_dir!r}) must be a non-empty path")

    @property
    def decay_iters(self) -> int:
        """Where the cosine ends: ``lr_decay_iters``, or ``max_iters`` when unset."""
        return self.max_iters if self.lr_decay_iters is None else self.lr_decay_iters

    @property
    def warmup_steps(self) -> int:
        """The warmup actually used: ``warmup_iters``, or when unset 5 % of the decay
        (at most 100 steps: nanoGPT's 100 of 2000), so a short run still decays."""
        if self.warmup_iters is not None:
            return self.warmup_iters
        return min(100, self.decay_iters // 20)

    def resolve_block_size(self, model_block_size: int | None) -> int:
        """The tokens per training window, decided here and only here: ``block_size`` if
        set, else the model's own ``block_size`` (GPT, RNN), else ``DEFAULT_BLOCK_SIZE``.

        >>> TrainConfig().resolve_block_size(256), TrainConfig().resolve_block_size(None)
        (256, 64)
        >>> TrainConfig(block_size=32).resolve_block_size(256)
        32
        """
        block = self.block_size or model_block_size or DEFAULT_BLOCK_SIZE
        if model_block_size is not None and block > model_block_size:
            raise ValueError(
                f"block_size ({block}) is longer than the model's block_size "
                f"({model_block_size}); train with block_size <= {model_block_size}"
            )
        return block

    # -- serialisation ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from a dict (e.g. a checkpoint's); unknown keys are an error naming them."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _is_real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive_int(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} ({value!r}) must be a positive integer")


def _nonnegative_int(cfg: TrainConfig, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} ({value!r}) must be an integer >= 0")


def _choice(cfg: TrainConfig, name: str, choices: tuple[str, ...], prefix_ok: bool = False) -> None:
    value = getattr(cfg, name)
    # "cuda:1" names a device of a kind we know
    kind = value.split(":", 1)[0] if prefix_ok and isinstance(value, str) else value
    if kind not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {list(choices)}")
