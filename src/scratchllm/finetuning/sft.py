"""Supervised fine-tuning: learn the replies of example conversations.

``sft_run(out, values)`` is ``finetune_run`` with the model's own loss: the cross-entropy
of the tokens the template's mask marks (each reply and its end-of-turn token; every token
with ``train_on_prompt``), padding never counted, and every micro-batch weighted by its
counted tokens, so an optimizer step minimises::

    loss = (sum over the step's counted tokens t of -log p(y_t | x_<=t)) / (counted tokens)

the mean over tokens, not a mean of per-batch means (``training.step``). The rest (the
starting model, the template, LoRA / QLoRA, packing, resume) is the common run's.

>>> run = sft_run("runs/chat", {"base": "runs/demo", "data": "data.jsonl"})  # doctest: +SKIP
>>> run.result.best_val_loss, run.template.end                         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from scratchllm.finetuning.run import SFT, FinetuneRun, finetune_run
from scratchllm.training.trainer import Evaluator


def sft_run(
    out: str | Path,
    values: dict[str, Any],
    *,
    config: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    say: Callable[[str], None] = print,
    evaluators: list[Evaluator] | None = None,
) -> FinetuneRun:
    """Fine-tune ``values["base"]`` on ``values["data"]`` into the run directory ``out``;
    the settings are ``finetuning.settings.SFT_OPTIONS``' keys (the flags, snake_case)."""
    return finetune_run(
        out,
        values,
        method=SFT,
        config=config,
        resume=resume,
        force=force,
        say=say,
        evaluators=evaluators,
    )
