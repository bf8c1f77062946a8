"""Language models, one module per family, all with one shape (see ``base``).

Importing a family module registers it, so ``load`` can read it back and ``build`` can
make it from its name (this package imports every family).
"""

from scratchllm.models.base import (
    LanguageModel,
    build,
    label_smoothing,
    lm_loss,
    load,
    read_config,
)
from scratchllm.models.gpt import GPT, GPTConfig
from scratchllm.models.mlp import MLPLM, MLPConfig
from scratchllm.models.ngram import NGram, NGramConfig
from scratchllm.models.rnn import RNNLM, RNNConfig

__all__ = [
    "GPT",
    "GPTConfig",
    "LanguageModel",
    "MLPConfig",
    "MLPLM",
    "NGram",
    "NGramConfig",
    "RNNConfig",
    "RNNLM",
    "build",
    "label_smoothing",
    "lm_loss",
    "load",
    "read_config",
]
