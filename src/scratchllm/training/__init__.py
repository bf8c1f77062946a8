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

# Names are loaded on first use (PEP 562), so the pure parts (``schedule``, ``configs``)
# import without torch: the NumPy engine trains with the same schedule.
_EXPORTS = {
    "Checkpoint": "checkpoint",
    "find_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "resolve_device": "device",
    "masked_cross_entropy": "losses",
    "configure_optimizer": "optimizer",
    "decay_groups": "optimizer",
    "plot_metrics": "plot",
    "read_metrics": "plot",
    "lr_at": "schedule",
    "Trainer": "trainer",
    "TrainingDiverged": "trainer",
    "TrainResult": "trainer",
    "saved_config": "trainer",
    "seed_everything": "trainer",
    "train_step_fn": "trainer",
}


def __getattr__(name: str):  # noqa: ANN202
    if name not in _EXPORTS:
        raise AttributeError(f"module 'scratchllm.training' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"scratchllm.training.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)


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
