"""The settings of a fine-tuning run: ``train``'s table, plus what fine-tuning adds.

Every training flag of ``scratchllm train`` (``training.settings.OPTIONS``, its "train"
group) works the same on ``scratchllm finetune METHOD``, and so do its model flags (they
size a fresh model, ``--from gpt``) and its tokenizer flags (for a fresh model's
tokenizer). Fine-tuning adds where it starts (``--from``), its data, how examples become
rows (``configs.finetune.SFTConfig``), LoRA/QLoRA (``configs.lora``) and each method's own
(``DistillConfig``). The layers (defaults, ``--config FILE.toml``, the flags; on
``--resume`` the run's ``finetune.toml`` first) are ``training.settings``' own, given this
table.

A method is a table: ``SFT_OPTIONS`` and ``DISTILL_OPTIONS`` here; a new method composes
``COMMON`` with its options the same way.

>>> s = resolve_settings({"base": "runs/pre", "data": "x.jsonl", "lora_r": 8}, options=SFT_OPTIONS)
>>> s["lora_alpha"], s["template"], s["max_iters"]
(16.0, 'auto', 2000)
"""

from __future__ import annotations

import dataclasses
from typing import Any

from scratchllm.configs.finetune import DIVERGENCES, TEMPLATES, DistillConfig, SFTConfig
from scratchllm.configs.lora import LoRAConfig, NF4Config
from scratchllm.training.settings import (
    BY_KEY,
    OPTIONS,
    Option,
    check_settings,
    resolve_settings,
)

SETTINGS_FILE = "finetune.toml"  # in the run directory: the resolved settings
QUANTIZE = ("nf4",)

_SFT = {f.name: f.default for f in dataclasses.fields(SFTConfig)}
_DISTILL = {f.name: f.default for f in dataclasses.fields(DistillConfig)}
_LORA = {f.name: f.default for f in dataclasses.fields(LoRAConfig)}
_NF4 = {f.name: f.default for f in dataclasses.fields(NF4Config)}


def _o(group: str, key: str, type_: type, help_: str, default: Any = None, **kw: Any) -> Option:
    return Option(key, type_, help_, group, default, **kw)


# fmt: off
START = (
    _o("finetune", "base", str, "where fine-tuning starts: a run or checkpoint directory, or a "
       "model family (gpt, lstm, ...) for a fresh model sized by the model flags",
       metavar="CKPT|FAMILY", flag_name="--from"),
)
DATA = (
    _o("data", "data", str, "fine-tuning examples: a .jsonl file (OpenAI messages, Alpaca or "
       "prompt/completion), 'stdlib-instructions', or a language task such as "
       "addition:digits=3; or a corpus (a text file, stdlib-docs, a language without "
       "answers such as markov:order=3), trained on every token", metavar="SOURCE"),
    _o("data", "samples", int, "how many examples: a language generates them (default "
       "10,000), a file or stdlib-instructions gives its first N (default all)", metavar="N"),
    BY_KEY["data_seed"],
    BY_KEY["val_fraction"],
    BY_KEY["tokenizer"],
    BY_KEY["vocab_size"],
)
ROWS = (
    _o("finetune", "template", str, "auto: the starting model's chat template, else plain for "
       "a language task and chat otherwise; chat: role and end-of-turn tokens (added to the "
       "tokenizer and the model if missing); plain: prompt and answer concatenated",
       _SFT["template"], choices=TEMPLATES),
    _o("finetune", "train_on_prompt", bool, "loss on every token, the prompt and role tokens "
       "too (default: only the replies and their end tokens)", _SFT["train_on_prompt"]),
    _o("finetune", "pack", bool, "pack several short examples into each row of block_size "
       "tokens, attending only within their own (gpt only)", _SFT["pack"]),
)
LORA = (
    _o("lora", "lora_r", int, "LoRA rank: train adapters of rank R on a frozen base "
       "(default: full fine-tuning)", metavar="R"),
    _o("lora", "lora_alpha", float, "LoRA scale numerator: the update is (alpha / r) B A",
       float(_LORA["alpha"]), metavar="A"),
    _o("lora", "lora_dropout", float, "dropout on the adapters' input", _LORA["dropout"],
       metavar="P"),
    _o("lora", "lora_targets", str, "comma-separated module-name suffixes to adapt",
       ",".join(_LORA["targets"]), metavar="NAMES"),
    _o("lora", "rslora", bool, "rank-stabilised scale alpha / sqrt(r)", _LORA["rslora"]),
    _o("lora", "quantize", str, "QLoRA: hold the frozen base in 4-bit NormalFloat",
       choices=QUANTIZE),
    _o("lora", "double_quant", bool, "QLoRA: quantize the NF4 scales too (8-bit floats)",
       _NF4["double_quant"]),
    _o("lora", "merge", bool, "after training, also write OUT/merged: the adapters folded "
       "into the base, a plain checkpoint", False),
)
DISTILL = (
    _o("distill", "teacher", str, "the teacher: a run or checkpoint directory (the student "
       "must use its tokenizer)", metavar="CKPT"),
    _o("distill", "alpha", float, "weight of the hard-label cross-entropy; 1 - alpha weighs "
       "the divergence to the teacher", _DISTILL["alpha"], metavar="A"),
    _o("distill", "temperature", float, "T: both distributions softened by it in the "
       "divergence, which is multiplied by T^2", _DISTILL["temperature"], metavar="T"),
    _o("distill", "divergence", str, "D(teacher || student)", _DISTILL["divergence"],
       choices=DIVERGENCES),
    _o("distill", "beta", float, "jsd: the teacher's weight in the mixture", _DISTILL["beta"],
       metavar="B"),
)
# fmt: on
# A fresh model's size; None (the family's default) unless given, so a run from a checkpoint
# records none of them. "model" itself is set from --from.
MODEL = tuple(dataclasses.replace(o, default=None) for o in OPTIONS if o.group == "model")
TRAIN = tuple(o for o in OPTIONS if o.group == "train")
COMMON = START + DATA + MODEL + TRAIN + ROWS + LORA
SFT_OPTIONS = COMMON
DISTILL_OPTIONS = COMMON + DISTILL
HIDDEN = ("model",)  # in the table (and finetune.toml), but set by --from, not a flag


def sft_config(settings: dict[str, Any]) -> SFTConfig:
    return SFTConfig(**{k: settings[k] for k in _SFT})


def distill_config(settings: dict[str, Any]) -> DistillConfig:
    return DistillConfig(**{k: settings[k] for k in _DISTILL})


def lora_config(settings: dict[str, Any]) -> LoRAConfig | None:
    """The ``LoRAConfig`` the settings ask for, or None for full fine-tuning. LoRA-only
    settings given without ``lora_r`` are an error (they would do nothing)."""
    if settings.get("lora_r") is None:
        adapter_only = ("lora_alpha", "lora_dropout", "lora_targets", "rslora", "merge")
        alone = [
            o.flag
            for o in LORA
            if o.key in adapter_only and settings.get(o.key) not in (None, o.default)
        ]
        if alone:
            raise ValueError(f"{', '.join(alone)} need --lora-r (LoRA's rank)")
        return None
    return LoRAConfig(
        r=settings["lora_r"],
        alpha=settings["lora_alpha"],
        dropout=settings["lora_dropout"],
        targets=settings["lora_targets"],
        rslora=settings["rslora"],
    )


def nf4_config(settings: dict[str, Any]) -> NF4Config | None:
    if settings.get("quantize") is None:
        if settings.get("double_quant"):
            raise ValueError("--double-quant needs --quantize nf4")
        return None
    return NF4Config(double_quant=bool(settings["double_quant"]))


__all__ = [
    "COMMON",
    "DISTILL_OPTIONS",
    "SETTINGS_FILE",
    "SFT_OPTIONS",
    "check_settings",
    "distill_config",
    "lora_config",
    "nf4_config",
    "resolve_settings",
    "sft_config",
]
