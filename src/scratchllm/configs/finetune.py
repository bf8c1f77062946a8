"""The fine-tuning methods' configuration dataclasses, torch-free.

``SFTConfig`` says how examples become training rows (every fine-tuning method reads
them the same way); ``DistillConfig`` adds the teacher's part of the loss. The flags of
``scratchllm finetune`` read their defaults from these fields (``finetuning.settings``).

>>> SFTConfig().template, DistillConfig(divergence="jsd", beta=0.9).beta
('auto', 0.9)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TEMPLATES = ("auto", "chat", "plain")
DIVERGENCES = ("forward_kl", "reverse_kl", "jsd")  # finetuning.distill's


@dataclass
class SFTConfig:
    # "auto": the starting checkpoint's own chat template if it has one, else "plain" for a
    # language task (its own prompt + answer + END format) and "chat" for everything else;
    # "chat": role and end-of-turn tokens (added to the tokenizer if missing); "plain": none.
    template: str = "auto"
    train_on_prompt: bool = False  # loss on every token, the prompt too (default: replies only)
    pack: bool = False  # several short examples per row, attending only within their own

    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            raise ValueError(f"template {self.template!r}: choose one of {list(TEMPLATES)}")


@dataclass
class DistillConfig:
    """``loss = alpha * CE(labels) + (1 - alpha) * T^2 * D(teacher_T || student_T)``."""

    alpha: float = 0.5  # weight of the hard-label cross-entropy (1: plain fine-tuning)
    temperature: float = 1.0  # T: both distributions softened by it in the divergence
    divergence: str = "forward_kl"  # forward_kl, reverse_kl or jsd (generalized, beta)
    beta: float = 0.5  # jsd only: the teacher's weight in the mixture M

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha ({self.alpha!r}) must be in [0, 1]")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature ({self.temperature!r}) must be > 0")
        if self.divergence not in DIVERGENCES:
            raise ValueError(f"divergence {self.divergence!r}: choose one of {list(DIVERGENCES)}")
        if self.divergence == "jsd" and not 0.0 < self.beta < 1.0:
            raise ValueError(
                f"jsd beta ({self.beta!r}) must be in (0, 1); its endpoints are the "
                "forward_kl (beta 0) and reverse_kl (beta 1) divergences"
            )
