"""Configuration dataclasses, importable without torch: one per model family and
``TrainConfig``. ``scratchllm.models`` and ``scratchllm.training`` re-export them."""

from scratchllm.configs.models import (
    ACTIVATIONS,
    CELLS,
    CONFIGS,
    FFNS,
    MLP_ACTIVATIONS,
    NORMS,
    POSITIONS,
    GPTConfig,
    MLPConfig,
    NGramConfig,
    RNNConfig,
)
from scratchllm.configs.train import TrainConfig

__all__ = [
    "ACTIVATIONS",
    "CELLS",
    "CONFIGS",
    "FFNS",
    "MLP_ACTIVATIONS",
    "NORMS",
    "POSITIONS",
    "GPTConfig",
    "MLPConfig",
    "NGramConfig",
    "RNNConfig",
    "TrainConfig",
]
