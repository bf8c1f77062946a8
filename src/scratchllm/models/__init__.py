"""Language models, one module per family, all with one shape (see ``base``).

Importing a family module registers it, so ``load`` can read it back.
"""

from scratchllm.models.base import LanguageModel, lm_loss, load, read_config
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
    "lm_loss",
    "load",
    "read_config",
]
