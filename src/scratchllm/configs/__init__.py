"""Configuration dataclasses, importable without torch: one per model family,
``TrainConfig`` and ``DataConfig``. ``scratchllm.models`` and ``scratchllm.training``
re-export theirs."""

from scratchllm.configs.data import DataConfig
from scratchllm.configs.models import (
    ACTIVATIONS,
    CELLS,
    CONFIGS,
    FFNS,
    MLP_ACTIVATIONS,
    MODEL_NAMES,
    NORMS,
    POSITIONS,
    GPTConfig,
    MLPConfig,
    NGramConfig,
    RNNConfig,
    config_class,
    config_defaults,
    make_config,
    resolve_family,
)
from scratchllm.configs.train import TrainConfig

__all__ = [
    "ACTIVATIONS",
    "CELLS",
    "CONFIGS",
    "DataConfig",
    "FFNS",
    "MLP_ACTIVATIONS",
    "MODEL_NAMES",
    "NORMS",
    "POSITIONS",
    "GPTConfig",
    "MLPConfig",
    "NGramConfig",
    "RNNConfig",
    "TrainConfig",
    "config_class",
    "config_defaults",
    "make_config",
    "resolve_family",
]
