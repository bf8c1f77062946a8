"""What every preference and RL run shares: its settings, its policy, its reference.

- **Settings** (``run_settings``): the method's table (``rl_settings``) in the layers of
  ``training.settings``; ``finetune.toml`` in the run directory; on ``--resume`` what the
  run trained from (its start, data, template, adapters) cannot change.
- **The policy** (``start_policy``): the ``--from`` checkpoint, its template (sft's
  ``choose_template``; a chat template's missing tokens grow the model, ``start``), and
  LoRA / QLoRA when asked (``adapters``: the base frozen, checkpoints hold the adapter and
  a reference to the base). On resume it is built the same way and the weights of
  ``last/`` are loaded into it, so the optimizer's state fits the same parameters.
- **The reference** (``frozen``): a copy of the starting model (before any adapter),
  with ``requires_grad`` off and in eval mode, that no optimizer ever sees; DPO's
  ``--reference`` may name another checkpoint.

**Dropout is off** in every model here (``eval()`` throughout): PPO's and GRPO's ratio
``pi / pi_old`` must be exactly 1 on a rollout's first update, and DPO's loss must be
``ln 2`` at the start; TRL disables dropout in these trainers for the same reason.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from scratchllm.checkpoint import LAST, BaseReference, load_checkpoint
from scratchllm.data.chat import ChatTemplate
from scratchllm.finetuning import adapters
from scratchllm.finetuning.settings import SETTINGS_FILE, lora_config, nf4_config
from scratchllm.finetuning.start import (
    choose_template,
    describe,
    is_family,
    load_source,
    start_from_checkpoint,
)
from scratchllm.models.base import LanguageModel
from scratchllm.training.device import resolve_device
from scratchllm.training.run import check_out_dir
from scratchllm.training.settings import Option, resolve_settings, saved_settings, write_settings

LORA_KEYS = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets", "rslora", "quantize")


def run_settings(
    out: Path,
    values: dict[str, Any],
    options: tuple[Option, ...],
    verb: str,
    *,
    config: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    fixed: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The run's resolved settings (module docstring); ``fixed`` keys cannot change on resume."""
    check_out_dir(out, resume, force)
    saved = saved_settings(out, SETTINGS_FILE, options, verb) if resume else None
    keys = {o.key for o in options}
    if saved is not None:
        locked = ("base", "data", "template", *LORA_KEYS, *fixed)
        changed = [k for k in locked if k in keys and k in values and values[k] != saved.get(k)]
        if changed:
            by_key = {o.key: o for o in options}
            flags = ", ".join(by_key[k].flag for k in changed)
            raise ValueError(
                f"--resume: {flags} cannot change (the run in {out} used "
                f"{', '.join(repr(saved.get(k)) for k in changed)}); start a new run instead"
            )
    settings = resolve_settings(values, config=config, saved=saved, options=options)
    if settings.get("min_lr") is None:
        settings["min_lr"] = settings["lr"] / 10  # nanoGPT's, whatever --lr is
    for key, flag in (("base", "--from"), ("data", "--data")):
        if not settings.get(key):
            raise ValueError(f"{verb} needs {flag}")
    if is_family(settings["base"]):
        raise ValueError(
            f"{verb} starts from a trained model: --from must be a checkpoint (a run directory "
            f"such as one `scratchllm finetune sft` wrote), not the family {settings['base']!r}"
        )
    lora_flags = "lora_r" in keys
    if lora_flags and nf4_config(settings) is not None and lora_config(settings) is None:
        raise ValueError("--quantize nf4 holds a frozen base: it needs --lora-r")
    return settings


def save_settings(out: Path, settings: dict[str, Any], options: tuple[Option, ...], verb: str):
    out.mkdir(parents=True, exist_ok=True)
    return write_settings(out / SETTINGS_FILE, settings, options, verb)


@dataclass
class Policy:
    """The model a run trains, and what its checkpoints need."""

    model: LanguageModel  # with adapters when LoRA is on
    template: ChatTemplate  # its tokenizer is the model's
    checkpoint: Path  # the --from checkpoint directory
    start: LanguageModel  # the starting model before adapters (a reference is its copy)
    rows: adapters.AddedRows | None = None  # LoRA: the chat tokens' rows that train
    base: BaseReference | None = None  # LoRA: what the adapter checkpoints point to
    lines: list[str] = field(default_factory=list)

    @property
    def tokenizer(self):  # noqa: ANN201
        return self.template.tokenizer

    def files(self) -> Callable[[Path], None]:
        """What each checkpoint writes: weights (or the adapter), tokenizer, template."""
        return adapters.checkpoint_files(self.model, self.tokenizer, self.template, self.base)

    def after_update(self) -> Callable[[], None] | None:
        return self.rows


def start_policy(
    settings: dict[str, Any],
    *,
    task_like: bool,
    out: Path | None = None,
    resume: bool = False,
    lora: bool = True,
) -> Policy:
    """The policy of a run (module docstring). ``task_like``: the data is a language task
    (the ``auto`` template is then plain for a model without its own)."""
    source = load_source(settings["base"])
    template = choose_template(settings["template"], source.tokenizer, source.template, task_like)
    start = start_from_checkpoint(source, template)
    lines = list(start.lines)
    model = start.model
    original = copy.deepcopy(model)
    rows, base = None, None
    lcfg = lora_config(settings) if lora else None
    if lcfg is not None:
        nf4 = nf4_config(settings)
        torch.manual_seed(settings["seed"])  # the adapters' initial A, the same every run
        model, rows = adapters.prepare_lora(model, lcfg, nf4, start.base_vocab)
        base = BaseReference.of(source.path, dataclasses.asdict(nf4) if nf4 else None)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        lines.append(
            f"training  LoRA r={lcfg.r} on {','.join(lcfg.targets)}: {trainable:,} parameters "
            "trainable"
        )
    if resume:
        assert out is not None
        trained = load_checkpoint(out / LAST).model
        missing = model.load_state_dict(trained.state_dict(), strict=False)
        if missing.missing_keys or missing.unexpected_keys:
            raise ValueError(
                f"--resume: {out / LAST} does not hold the weights of this run's model "
                f"(missing {missing.missing_keys[:3]}, unexpected {missing.unexpected_keys[:3]})"
            )
    device = resolve_device(settings.get("device") or "auto")
    model.to(device).eval()
    return Policy(model, template, source.path, original.to(device), rows, base, lines)


def frozen(model: LanguageModel) -> LanguageModel:
    """``model`` as a fixed reference: no gradients, eval mode (dropout off)."""
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def load_reference(path: str | Path, template: ChatTemplate, device: torch.device):  # noqa: ANN201
    """Another checkpoint as the reference: it must read the policy's template tokens."""
    source = load_source(path, what="--reference")
    model = start_from_checkpoint(source, template).model
    return frozen(
        model.to(device)
    ), f"reference {source.path}: {describe(model, template.tokenizer)}"
