"""Language models, one module per family, all with one shape (see ``base``).

Importing a family module registers it, so ``load`` can read it back.
"""

from scratchllm.models.base import LanguageModel, lm_loss, load, read_config

__all__ = ["LanguageModel", "lm_loss", "load", "read_config"]
