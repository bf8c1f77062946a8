"""The one shape every language model has.

``model(idx, targets=None, loss_mask=None) -> (logits, loss)``: token ids
``[B, T]`` in, logits ``[B, T, V]`` out, and the mean cross-entropy over the
positions that count when targets are given. A model also exposes its
``config`` (a dataclass) and ``context_length`` (how many past tokens it can
see), and saves itself as a directory a person can read::

    run/
      config.json        {"family": "gpt", "config": {...}, "scratchllm_version": "0.1.0"}
      model.safetensors  the parameters and buffers (no pickle)

``scratchllm.models.load(directory)`` reads any family back.

Incremental decoding (KV cache for GPT, carried hidden state for RNNs) is an
optional second path used by ``scratchllm.generation``: a model that supports
it returns a state object from ``new_state`` and advances it with
``forward_step``; the generator falls back to re-running ``forward`` on the
last ``context_length`` tokens for models that do not.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from scratchllm import __version__

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

_FAMILIES: dict[str, type[LanguageModel]] = {}


def register(cls: type[LanguageModel]) -> type[LanguageModel]:
    """Class decorator: make a model family loadable by ``load``."""
    _FAMILIES[cls.family] = cls
    return cls


def lm_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    loss_mask: torch.Tensor | None = None,
    ignore_index: int = -1,
) -> torch.Tensor:
    """Mean next-token cross-entropy over the positions that count.

    ``targets`` equal to ``ignore_index`` never count; when ``loss_mask`` (``[B, T]``,
    bool or 0/1) is given, only positions where it is true count (e.g. the answer
    of an addition problem).
    """
    B, T, V = logits.shape
    if targets.shape != (B, T):
        raise ValueError(f"targets shape {tuple(targets.shape)} must be (B, T) = {(B, T)}")
    if loss_mask is not None:
        if loss_mask.shape != (B, T):
            raise ValueError(f"loss_mask shape {tuple(loss_mask.shape)} must be (B, T) = {(B, T)}")
        targets = targets.masked_fill(~loss_mask.bool(), ignore_index)
    return F.cross_entropy(
        logits.reshape(B * T, V).float(), targets.reshape(B * T), ignore_index=ignore_index
    )


class LanguageModel(nn.Module):
    """Base class of every model family (counting n-gram, MLP, RNN, GPT)."""

    family: ClassVar[str]  # the name written to config.json, e.g. "gpt"
    config_class: ClassVar[type]  # the family's config dataclass

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    @property
    def context_length(self) -> int:
        """How many past tokens the model can condition on."""
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        loss_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def num_parameters(self) -> int:
        """Trainable parameters, each shared tensor counted once."""
        seen = {id(p): p.numel() for p in self.parameters() if p.requires_grad}
        return sum(seen.values())

    # -- incremental decoding (optional) -------------------------------------------------

    def new_state(self, batch_size: int, max_length: int) -> Any | None:
        """A fresh decoding state for ``batch_size`` sequences of up to ``max_length``
        tokens, or None if this family has no incremental path."""
        return None

    def forward_step(
        self, idx: torch.Tensor, state: Any, pad_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Feed the next tokens ``idx [B, T_new]`` into ``state`` (updated in place) and
        return their logits ``[B, T_new, V]``. ``pad_mask [B, T_new]`` is False where a
        position is left padding that must not influence later tokens."""
        raise NotImplementedError(f"{type(self).__name__} has no incremental decoding")

    # -- persistence ------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory``."""
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "family": self.family,
            "config": dataclasses.asdict(self.config),
            "scratchllm_version": __version__,
        }
        _atomic_write_text(directory / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
        tmp = directory / (WEIGHTS_FILE + ".tmp")
        save_model(self, str(tmp))
        tmp.replace(directory / WEIGHTS_FILE)
        return directory


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def read_config(directory: str | Path) -> tuple[type[LanguageModel], Any]:
    """The family class and config dataclass saved in a model directory."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no model config here (is {directory} a model directory?)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        family, fields = meta["family"], meta["config"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a scratchllm model config ({e})") from None
    if family not in _FAMILIES:
        raise ValueError(f"{path}: unknown model family {family!r}; known: {sorted(_FAMILIES)}")
    cls = _FAMILIES[family]
    try:
        config = cls.config_class(**fields)
    except TypeError as e:
        raise ValueError(f"{path}: config does not fit {cls.config_class.__name__}: {e}") from None
    return cls, config


def load(directory: str | Path, device: str | torch.device = "cpu") -> LanguageModel:
    """Load a model of any family from a directory written by ``save``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    cls, config = read_config(directory)
    model = cls(config)
    weights = Path(directory) / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: missing model weights")
    try:
        missing, unexpected = load_model(model, str(weights), strict=False, device=str(device))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ValueError(f"{weights}: cannot read model weights ({e})") from None
    if missing or unexpected:
        raise ValueError(
            f"{weights}: weights do not match the config (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]})"
        )
    return model.to(device).eval()
