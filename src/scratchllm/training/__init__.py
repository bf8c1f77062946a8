"""Training: one ``Trainer`` for every model family, and checkpoints you can trust.

>>> from scratchllm.data import TokenDataset                          # doctest: +SKIP
>>> from scratchllm.models import GPT, GPTConfig
>>> from scratchllm.training import TrainConfig, Trainer
>>> data = TokenDataset("data/shakespeare")                           # doctest: +SKIP
>>> model = GPT(GPTConfig(vocab_size=data.vocab_size, n_layer=4, n_head=4, n_embd=128,
...                       block_size=64))                             # doctest: +SKIP
>>> result = Trainer(model, data, TrainConfig(max_iters=2000, out_dir="run")).train()
>>> result.best_val_loss                                              # doctest: +SKIP

- ``settings``: the settings of a run (defaults < saved < preset < TOML file < flags),
  read and written as ``train.toml``; torch-free, so ``--help`` needs no torch.
- ``run``: ``train_from_settings``, what ``scratchllm train`` and ``demo`` run: prepare
  the data (``data.prepare``), build or restore the model, train into a run directory.
- ``trainer``: ``Trainer.train() -> TrainResult``; evaluation (with evaluator hooks), best
  checkpoint, early stopping, NaN guard, Ctrl-C, ``metrics.jsonl`` and ``loss.png``.
- ``step``: the one optimizer step (``TrainStep``), also as ``train_step_fn``.
- ``schedule``: ``lr_at(step, cfg)``, warmup then cosine decay to ``min_lr``.
- ``optimizer``: AdamW with weight decay on weight matrices only.
- ``losses``: masked cross-entropy with label smoothing.
- ``device``: ``resolve_device``, the autocast dtype and context.
- ``distributed``: the torchrun / DistributedDataParallel plumbing.
- ``plot``: the loss curve from ``metrics.jsonl``.

Checkpoints (``save_checkpoint``, ``load_checkpoint``) live in ``scratchllm.checkpoint``
and are re-exported here.
"""

from scratchllm.configs.train import TrainConfig

# Names are loaded on first use (PEP 562), so the pure parts (``schedule``, ``settings``,
# ``configs``) import without torch: the NumPy engine trains with the same schedule.
_EXPORTS = {
    "Checkpoint": "scratchllm.checkpoint",
    "find_checkpoint": "scratchllm.checkpoint",
    "load_checkpoint": "scratchllm.checkpoint",
    "save_checkpoint": "scratchllm.checkpoint",
    "resolve_device": "scratchllm.training.device",
    "masked_cross_entropy": "scratchllm.training.losses",
    "configure_optimizer": "scratchllm.training.optimizer",
    "decay_groups": "scratchllm.training.optimizer",
    "plot_metrics": "scratchllm.training.plot",
    "read_metrics": "scratchllm.training.plot",
    "lr_at": "scratchllm.training.schedule",
    "train_from_settings": "scratchllm.training.run",
    "Trainer": "scratchllm.training.trainer",
    "TrainingDiverged": "scratchllm.training.trainer",
    "TrainResult": "scratchllm.training.trainer",
    "saved_config": "scratchllm.training.trainer",
    "seed_everything": "scratchllm.training.trainer",
    "TrainStep": "scratchllm.training.step",
    "train_step_fn": "scratchllm.training.step",
}


def __getattr__(name: str):  # noqa: ANN202
    if name not in _EXPORTS:
        raise AttributeError(f"module 'scratchllm.training' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Checkpoint",
    "TrainConfig",
    "TrainResult",
    "TrainStep",
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
    "train_from_settings",
    "train_step_fn",
]
