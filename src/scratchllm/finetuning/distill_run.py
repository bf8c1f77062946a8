"""Knowledge distillation as a run: a student learns a frozen teacher's distributions.

``distill_run(out, values)`` is ``finetune_run`` with a teacher (``--teacher CKPT``) and
the loss of ``finetuning.distill`` on the same rows and token mask as supervised
fine-tuning::

    loss = alpha * CE(labels, student) + (1 - alpha) * T^2 * D(teacher_T || student_T)

averaged over the counted tokens of the step (``DistillLoss``, per micro-batch; the step
weighs micro-batches by their counted tokens). The student (``--from``) may be smaller and
of another family; it must read the teacher's tokenizer, which a fresh student
(``--from gpt``) takes, and the teacher's template (a student checkpoint lacking the
template's tokens grows them). The validation loss the run reports is the student's own
cross-entropy on the hard labels.

>>> run = distill_run("runs/small", {"teacher": "runs/big", "base": "gpt", "n_layer": 2,
...                                  "data": "markov:order=3"})              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from scratchllm.configs.finetune import DistillConfig
from scratchllm.finetuning.distill import distillation_loss
from scratchllm.finetuning.run import FinetuneRun, Method, finetune_run
from scratchllm.finetuning.settings import DISTILL_OPTIONS, distill_config
from scratchllm.finetuning.start import Source, load_source
from scratchllm.models.base import LanguageModel
from scratchllm.training.step import MicroBatch
from scratchllm.training.trainer import Evaluator


class DistillLoss:
    """The training loss of a distillation step (``step.LossFn``): the student's logits on a
    micro-batch against the frozen teacher's on the same rows."""

    def __init__(self, teacher: LanguageModel, config: DistillConfig) -> None:
        self.teacher = teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.config = config

    def __call__(self, model: torch.nn.Module, batch: MicroBatch) -> torch.Tensor:
        x, y, m, *rest = batch
        kw = {"documents": rest[0]} if rest and rest[0] is not None else {}
        logits, _ = model(x, **kw)  # (B, T, V)
        with torch.no_grad():
            teacher_logits, _ = self.teacher.to(x.device)(x, **kw)
        c = self.config
        return distillation_loss(
            logits, teacher_logits, y, m, c.alpha, c.temperature, c.divergence, c.beta
        ).loss


def _teacher(settings: dict[str, Any]) -> Source:
    if not settings.get("teacher"):
        raise ValueError("finetune distill needs --teacher CKPT (the model to learn from)")
    return load_source(settings["teacher"], what="--teacher")


def _loss(settings: dict[str, Any], teacher: Source | None) -> DistillLoss:
    return DistillLoss(teacher.model, distill_config(settings))


DISTILL = Method("distill", DISTILL_OPTIONS, teacher=_teacher, loss=_loss)


def distill_run(
    out: str | Path,
    values: dict[str, Any],
    *,
    config: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    say: Callable[[str], None] = print,
    evaluators: list[Evaluator] | None = None,
) -> FinetuneRun:
    """Distill ``values["teacher"]`` into the student ``values["base"]`` (a checkpoint or a
    model family), into the run directory ``out``; the other settings as ``finetune_run``."""
    return finetune_run(
        out,
        values,
        method=DISTILL,
        config=config,
        resume=resume,
        force=force,
        say=say,
        evaluators=evaluators,
    )
