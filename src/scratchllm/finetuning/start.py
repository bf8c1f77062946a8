"""Where a fine-tuning run starts: a model, its tokenizer, and the template of its rows.

``--from`` names a checkpoint (a run directory or a checkpoint directory) or a model
family for a fresh model (sized by the model flags; its tokenizer trained on the data,
or, for a distillation student, the teacher's).

**The template** (``--template``): ``auto`` takes the checkpoint's own
``chat_template.json`` when it has one, else ``plain`` for a language task and ``chat``
for everything else. A ``chat`` template whose tokens the tokenizer lacks adds them
(``ChatTemplate.create``) and grows the model's vocabulary to fit (``grow_vocab``: new
rows start at the mean of the old ones), which the run says.

>>> start = load_start({"base": "runs/pre", "template": "chat", ...}, examples)  # doctest: +SKIP
>>> start.lines[0]                                                               # doctest: +SKIP
'start     runs/pre/last: GPT, 810,368 parameters, char tokenizer of 100 tokens'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from scratchllm import models
from scratchllm.checkpoint import load_checkpoint
from scratchllm.configs.models import MODEL_NAMES
from scratchllm.data.chat import TEMPLATE_FILE, ChatTemplate
from scratchllm.data.prepare import make_tokenizer
from scratchllm.models.base import LanguageModel
from scratchllm.models.vocab import grow_vocab
from scratchllm.tokenizers.base import Tokenizer
from scratchllm.tokenizers.factory import tokenizer_sha256
from scratchllm.training.settings import BY_KEY, MODEL_KEYS, model_config


@dataclass
class Source:
    """A model read from a checkpoint, with its tokenizer and (if it has one) template."""

    model: LanguageModel
    tokenizer: Tokenizer
    template: ChatTemplate | None
    path: Path  # the checkpoint directory


@dataclass
class Start:
    """The model a run trains, before any adapters."""

    model: LanguageModel | None  # None on resume: the Trainer reads it from the checkpoint
    tokenizer: Tokenizer  # the model's: with the template's tokens
    template: ChatTemplate | None  # None: trained on a corpus
    checkpoint: Path | None  # the checkpoint it came from; None for a fresh model
    base_vocab: int  # the vocabulary before the template added tokens
    lines: list[str] = field(default_factory=list)  # what the run says about it
    config: Any = None  # the model's config (by default model.config)
    family: str = ""  # the model's family (by default model.family)

    def __post_init__(self) -> None:
        if self.model is not None:
            self.config, self.family = self.model.config, self.model.family


def is_family(base: str) -> bool:
    """Whether ``--from`` names a model family (a fresh model) rather than a checkpoint."""
    return base in MODEL_NAMES and not Path(base).exists()


def load_source(path: str | Path, what: str = "--from") -> Source:
    """The checkpoint at ``path`` (a run's ``last/``), its tokenizer and template."""
    ckpt = load_checkpoint(path)
    template = ChatTemplate.load(ckpt.path) if (ckpt.path / TEMPLATE_FILE).is_file() else None
    if _is_counting(ckpt.model):
        raise ValueError(
            f"{what} {path}: a counting n-gram has no parameters to fine-tune; start from a "
            "GPT, RNN or MLP checkpoint, or a fresh model (--from gpt)"
        )
    return Source(ckpt.model, ckpt.tokenizer, template, ckpt.path)


def choose_template(
    kind: str, tokenizer: Tokenizer, own: ChatTemplate | None, language_task: bool
) -> ChatTemplate:
    """The template ``--template kind`` means for a model with ``tokenizer`` and its
    ``own`` template (see the module docstring)."""
    if kind == "auto":
        if own is not None:
            return own
        kind = "plain" if language_task else "chat"
    if kind == "plain":
        return ChatTemplate.plain(tokenizer)
    if own is not None and own.special_tokens:
        return own
    return ChatTemplate.create(tokenizer)


def describe(model: LanguageModel, tokenizer: Tokenizer) -> str:
    return (
        f"{type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"{tokenizer.kind} tokenizer of {tokenizer.vocab_size:,} tokens"
    )


def check_model_flags(settings: dict[str, Any], base: str) -> None:
    """Model flags size a fresh model only; with a checkpoint they would be ignored."""
    given = [BY_KEY[k].flag for k in MODEL_KEYS if settings.get(k) is not None]
    if given:
        raise ValueError(
            f"{', '.join(given)}: model settings size a fresh model (--from gpt, ...); the "
            f"model of the checkpoint {base} is used as it is"
        )


def start_from_checkpoint(
    source: Source,
    template: ChatTemplate | None,
    *,
    student: bool = False,
    tokenizer: Tokenizer | None = None,
) -> Start:
    """The checkpoint's model for ``template`` (or, without one, for ``tokenizer``): grown
    when the template adds tokens to the checkpoint's tokenizer. Any other tokenizer is an
    error (``student``: a distillation student, which must read the teacher's)."""
    model, old = source.model, source.tokenizer.vocab_size
    lines = [f"start     {source.path}: {describe(model, source.tokenizer)}"]
    want = template.tokenizer if template is not None else (tokenizer or source.tokenizer)
    grown = source.tokenizer
    if template is not None and template.special_tokens:
        grown = grown.with_special_tokens(template.special_tokens)
    if not same_tokenizer(grown, want):
        if student:
            raise ValueError(
                f"--from {source.path}: the student's tokenizer ({old} tokens) is not the "
                f"teacher's ({want.vocab_size} tokens); distillation compares the two "
                "next-token distributions token by token, so the student must read the "
                "teacher's tokenizer: start a fresh student (--from gpt) to give it that one"
            )
        raise ValueError(
            f"{source.path}: its tokenizer ({old} tokens) is not the one the template "
            f"belongs to ({want.vocab_size} tokens)"
        )
    if want.vocab_size > old:
        added = [t for t, i in want.special_tokens.items() if i >= old]
        grow_vocab(model, want)
        lines.append(
            f"vocab     the tokenizer lacked the chat tokens {' '.join(added)}: added as ids "
            f"{old}..{want.vocab_size - 1}, and the model's vocabulary grown {old} -> "
            f"{want.vocab_size} (new rows start at the mean of the old ones)"
        )
    return Start(model, want, template, source.path, old, lines)


def fresh_start(
    settings: dict[str, Any],
    family: str,
    tokenizer: Tokenizer,
    template: ChatTemplate | None,
    seed: int,
) -> Start:
    """A new model of ``family`` sized by the settings, for ``tokenizer`` (the template's)."""
    tok = template.tokenizer if template is not None else tokenizer
    config = model_config({**settings, "model": family}, tok.vocab_size)
    torch.manual_seed(seed)  # the initial weights, before the Trainer reseeds
    model = models.build(family, **dataclasses.asdict(config))
    if _is_counting(model):
        raise ValueError("--from ngram: a counting n-gram is fitted, not fine-tuned; use train")
    line = f"start     a fresh {describe(model, tok)}"
    return Start(model, tok, template, None, tok.vocab_size, [line])


def fresh_tokenizer(settings: dict[str, Any], text: str) -> Tokenizer:
    """A fresh model's tokenizer: ``--tokenizer`` (char, word, bpe) trained on ``text``, or
    a saved one."""
    return make_tokenizer(settings["tokenizer"], settings["vocab_size"], text)


def same_tokenizer(a: Tokenizer, b: Tokenizer) -> bool:
    return tokenizer_sha256(a) == tokenizer_sha256(b)


def _is_counting(model: torch.nn.Module) -> bool:
    return not any(p.requires_grad for p in model.parameters()) and hasattr(model, "fit")
