"""The one shape every language model has.

``model(idx, targets=None, loss_mask=None) -> (logits, loss)``: token ids
``[B, T]`` in, logits ``[B, T, V]`` out, and the mean cross-entropy over the
positions that count when targets are given. A model also exposes its
``config`` (a dataclass) and ``context_length`` (how many past tokens it can
see), and saves itself as a directory a person can read::

    run/
      config.json        {"family": "gpt", "config": {...}, "scratchllm_version": "0.1.0"}
      model.safetensors  the parameters and buffers (no pickle)

``scratchllm.models.load(directory)`` reads any family back, and
``scratchllm.models.build(name, **config_values)`` makes any family from its name
(``"gpt"``, ``"lstm"``, ...) and config values: both go through the one registry here,
filled by ``@register`` as each family module is imported.

**The loss.** Every family computes its loss with ``lm_loss``, so there is one place
where it is decided: the mean cross-entropy of the positions that count, computed in
the logits' own precision (half precision is upcast to float32; float64 stays float64),
with label smoothing when a trainer asks for it (``label_smoothing(eps)``).

Incremental decoding (KV cache for GPT, carried hidden state for RNNs) is an
optional second path used by ``scratchllm.generation``: a model that supports
it returns a state object from ``new_state`` and advances it with
``forward_step``; the generator falls back to re-running ``forward`` on the
last ``context_length`` tokens for models that do not.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from scratchllm import __version__
from scratchllm.configs.models import make_config, resolve_family
from scratchllm.files import atomic_write, write_json

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

_FAMILIES: dict[str, type[LanguageModel]] = {}


def register(cls: type[LanguageModel]) -> type[LanguageModel]:
    """Class decorator: make a model family loadable by ``load``."""
    _FAMILIES[cls.family] = cls
    return cls


def build(name: str, **config_values: Any) -> LanguageModel:
    """A fresh model of any family: ``name`` is a family or an rnn cell (``"gpt"``,
    ``"mlp"``, ``"ngram"``, ``"rnn"``, ``"gru"``, ``"lstm"``), ``config_values`` the
    fields of its config (``scratchllm.configs``).

    >>> build("gru", vocab_size=5, n_hidden=8).config.cell     # doctest: +SKIP
    'gru'
    """
    family, _ = resolve_family(name)
    if family not in _FAMILIES:
        raise ValueError(f"model family {family!r} is not registered; import scratchllm.models")
    return _FAMILIES[family](make_config(name, **config_values))


# Label smoothing asked for by whoever runs the forward pass (the Trainer), read by
# lm_loss. A context variable rather than a forward argument, so every family's loss
# (and a family's own extra terms, such as the mixture-of-experts balancing loss) gets it
# without each forward signature growing a training-only flag.
_LABEL_SMOOTHING: contextvars.ContextVar[float] = contextvars.ContextVar(
    "label_smoothing", default=0.0
)


@contextlib.contextmanager
def label_smoothing(eps: float) -> Iterator[None]:
    """Within the block, ``lm_loss`` trains against ``(1 - eps) * onehot + eps * uniform``
    (what ``F.cross_entropy(label_smoothing=eps)`` computes, in the same single pass)."""
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"label_smoothing ({eps!r}) must be in [0, 1)")
    token = _LABEL_SMOOTHING.set(float(eps))
    try:
        yield
    finally:
        _LABEL_SMOOTHING.reset(token)


def lm_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    loss_mask: torch.Tensor | None = None,
    ignore_index: int = -1,
) -> torch.Tensor:
    """Mean next-token cross-entropy over the positions that count.

    ``targets`` equal to ``ignore_index`` never count; when ``loss_mask`` (``[B, T]``,
    bool or 0/1) is given, only positions where it is true count (e.g. the answer
    of an addition problem). The loss has the logits' dtype, except that half precision
    (bf16, fp16 under autocast) is computed in float32; inside ``label_smoothing(eps)``
    it is the smoothed cross-entropy.
    """
    B, T, V = logits.shape
    if targets.shape != (B, T):
        raise ValueError(f"targets shape {tuple(targets.shape)} must be (B, T) = {(B, T)}")
    if loss_mask is not None:
        if loss_mask.shape != (B, T):
            raise ValueError(f"loss_mask shape {tuple(loss_mask.shape)} must be (B, T) = {(B, T)}")
        targets = targets.masked_fill(~loss_mask.bool(), ignore_index)
    return F.cross_entropy(
        at_least_float32(logits.reshape(B * T, V)),
        targets.reshape(B * T),
        ignore_index=ignore_index,
        label_smoothing=_LABEL_SMOOTHING.get(),
    )


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 if it is in half precision (bf16 / fp16), else as it is: a loss or
    a softmax needs float32's range, and float64 must not lose its precision."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


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
        write_json(directory / CONFIG_FILE, meta)
        atomic_write(directory / WEIGHTS_FILE, lambda tmp: save_model(self, str(tmp)))
        return directory


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
    """Load a model of any family from a directory written by ``save``: the config is
    checked against the weights file's header before anything is allocated, and weights
    that are not finite are refused (``models.weights_file``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    from scratchllm.models.weights_file import check_finite, check_header

    cls, config = read_config(directory)
    weights = Path(directory) / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: missing model weights")
    check_header(cls, config, weights, Path(directory) / CONFIG_FILE)  # before allocating
    model = cls(config)
    try:
        missing, unexpected = load_model(model, str(weights), strict=False, device=str(device))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ValueError(f"{weights}: cannot read model weights ({e})") from None
    if missing or unexpected:
        raise ValueError(
            f"{weights}: weights do not match the config (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]})"
        )
    check_finite(model, weights)
    return model.to(device).eval()
