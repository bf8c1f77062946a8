"""Training: one ``Trainer`` for every model family, and checkpoints you can trust.

>>> from scratchllm.data import TokenDataset                          # doctest: +SKIP
>>> from scratchllm.models import GPT, GPTConfig
>>> from scratchllm.training import TrainConfig, Trainer
>>> data = TokenDataset("data/shakespeare")                           # doctest: +SKIP
>>> model = GPT(GPTConfig(vocab_size=data.vocab_size, n_layer=4, n_head=4, n_embd=128,
...                       block_size=64))                             # doctest: +SKIP
>>> result = Trainer(model, data, TrainConfig(max_iters=2000, out_dir="run")).train()
>>> result.best_val_loss                                              # doctest: +SKIP

- ``config``: ``TrainConfig`` (nanoGPT's names) and ``resolve_device``.
- ``schedule``: ``lr_at(step, cfg)``, warmup then cosine decay to ``min_lr``.
- ``optimizer``: AdamW with weight decay on weight matrices only.
- ``losses``: masked cross-entropy with label smoothing.
- ``trainer``: ``Trainer.train() -> TrainResult``; evaluation, best checkpoint, early
  stopping, NaN guard, Ctrl-C, ``metrics.jsonl`` and ``loss.png``.
- ``checkpoint``: atomic checkpoint directories and exact resume.
- ``distributed``: the torchrun / DistributedDataParallel plumbing.
- ``plot``: the loss curve from ``metrics.jsonl``.
"""

from scratchllm.configs.train import TrainConfig
from scratchllm.training.checkpoint import (
    Checkpoint,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from scratchllm.training.device import resolve_device
from scratchllm.training.losses import masked_cross_entropy
from scratchllm.training.optimizer import configure_optimizer, decay_groups
from scratchllm.training.plot import plot_metrics, read_metrics
from scratchllm.training.schedule import lr_at
from scratchllm.training.trainer import (
    Trainer,
    TrainingDiverged,
    TrainResult,
    saved_config,
    seed_everything,
    train_step_fn,
)

__all__ = [
    "Checkpoint",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "configure_optimizer",
    "decay_groups",
    "find_checkpoint",
    "load_checkpoint",
    "lr_at",
    "masked_cross_entropy",
    "plot_metrics",
    "read_metrics",
    "resolve_device",
    "save_checkpoint",
    "saved_config",
    "seed_everything",
    "train_step_fn",
]
