"""LoRA / QLoRA in a fine-tuning run: what trains, what a checkpoint writes, merging.

``prepare_lora(model, lora, nf4, base_vocab)`` turns a starting model into the one that
trains: the base quantized to NF4 (QLoRA), frozen, adapters on the targets
(``models.lora.apply_lora``). Tokens the base did not have (a chat template's, added by
``grow_vocab``) have rows no adapter can learn, so those rows train too, and only those:
``AddedRows`` zeroes the gradient of every older row (so neither AdamW's moments nor the
gradient norm see them) and puts the old rows back after each step (decoupled weight
decay would otherwise shrink an untied head). This is peft's ``trainable_token_indices``.

A checkpoint of such a run holds the adapters, the added rows and the reference to the
base (``checkpoint.save_adapter_checkpoint``); ``merge_checkpoint`` folds the adapters into
the base and writes a plain checkpoint any verb reads.

>>> model = prepare_lora(model, LoRAConfig(r=8), None, base_vocab=100)    # doctest: +SKIP
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from scratchllm.checkpoint import (
    QLORA_DENSE,
    BaseReference,
    load_checkpoint,
    save_adapter_checkpoint,
    save_checkpoint,
)
from scratchllm.configs.lora import LoRAConfig, NF4Config
from scratchllm.data.chat import TEMPLATE_FILE, ChatTemplate
from scratchllm.models.base import LanguageModel
from scratchllm.models.lora import apply_lora, lora_layers, merge_and_unload
from scratchllm.models.nf4 import quantize_model
from scratchllm.models.vocab import vocab_parameters
from scratchllm.tokenizers.base import Tokenizer


class AddedRows:
    """Train rows ``[old, V)`` of the vocabulary parameters, keep rows ``[0, old)`` frozen.

    Call the object after every optimizer step (a ``Trainer`` callback) to restore the old
    rows; the gradient hooks are registered on construction.
    """

    def __init__(self, model: LanguageModel, old: int) -> None:
        self.old = old
        self.params = list(vocab_parameters(model).values())
        self.frozen = [p.detach()[:old].clone() for p in self.params]
        for p in self.params:
            p.requires_grad_(True)
            p.register_hook(self._mask_grad)

    def _mask_grad(self, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[: self.old] = 0
        return grad

    @torch.no_grad()
    def __call__(self, trainer: object = None) -> None:
        for p, rows in zip(self.params, self.frozen):
            p[: self.old].copy_(rows.to(p.device))

    @property
    def count(self) -> int:
        """Trainable numbers in the added rows."""
        return sum((p.shape[0] - self.old) * p[0].numel() for p in self.params)


def prepare_lora(
    model: LanguageModel, lora: LoRAConfig, nf4: NF4Config | None, base_vocab: int
) -> tuple[LanguageModel, AddedRows | None]:
    """The model to train with LoRA (QLoRA with ``nf4``): see the module docstring.
    Returns it with the ``AddedRows`` that train (None when the vocabulary did not grow)."""
    if nf4 is not None:
        quantize_model(model, nf4, skip=QLORA_DENSE)
    apply_lora(model, lora)
    rows = AddedRows(model, base_vocab) if model.config.vocab_size > base_vocab else None
    return model, rows


def trainable_rows(model: LanguageModel, base_vocab: int) -> AddedRows | None:
    """On resume: the model read from an adapter checkpoint has adapters already; make the
    added rows train again (the same parameters as before, so the optimizer state fits)."""
    if model.config.vocab_size <= base_vocab:
        return None
    return AddedRows(model, base_vocab)


def checkpoint_files(
    model: LanguageModel,
    tokenizer: Tokenizer,
    template: ChatTemplate | None,
    base: BaseReference | None,
) -> Callable[[Path], None]:
    """What every checkpoint of a fine-tuning run writes (``save_checkpoint``'s ``files``):
    the weights (or, with ``base``, the adapter and its base reference), the tokenizer, and
    the chat template when there is one."""

    def write(directory: Path) -> None:
        if base is None:
            model.save(directory)
        else:
            save_adapter_checkpoint(directory, model, base)
        if template is not None:
            template.save(directory)  # chat_template.json and its tokenizer.json
        else:
            tokenizer.save(directory)

    return write


def merge_checkpoint(checkpoint: str | Path, out: str | Path, best: bool = False) -> Path:
    """Fold the adapters of an adapter checkpoint (a run directory's ``last/``, or ``best/``)
    into its base: a plain checkpoint in ``out`` (config.json, model.safetensors, the
    tokenizer and chat template). A 4-bit base is dequantized first, so the merged model is
    the dense model the adapted one computes."""
    ckpt = load_checkpoint(checkpoint, which="best" if best else "last")
    if not lora_layers(ckpt.model):
        raise ValueError(f"{ckpt.path} holds no LoRA adapters: it is a plain checkpoint already")
    model = merge_and_unload(ckpt.model)
    out = save_checkpoint(out, model, ckpt.tokenizer)
    if (ckpt.path / TEMPLATE_FILE).is_file():
        shutil.copyfile(ckpt.path / TEMPLATE_FILE, out / TEMPLATE_FILE)
    return out
