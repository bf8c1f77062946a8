"""A policy's figures on a task's held-out prompts, as the RL runs log them.

Greedy accuracy (``accuracy``) and, with ``k > 1``, pass@1 and pass@k of ``k`` samples at
temperature 1 (``pass@1`` is then the mean accuracy of a sample, the quantity GRPO's
reward optimises), on ``n`` prompts of the held-out tenth (``data.sft.in_held_out``)
asked through the model's template: what ``scratchllm eval CKPT --task`` reports.
"""

from __future__ import annotations

from typing import Any

import torch

from scratchllm.data.chat import ChatTemplate
from scratchllm.data.sft import in_held_out
from scratchllm.evaluation.run import task_prompts
from scratchllm.evaluation.task import TaskResult, evaluate_task


def task_results(
    model: torch.nn.Module,
    template: ChatTemplate,
    task: str,
    n: int,
    k: int = 1,
    temperature: float = 1.0,
) -> tuple[TaskResult, TaskResult | None]:
    """``(greedy result, sampled result or None)`` on ``n`` held-out prompts."""
    render, stops = task_prompts(template)
    kw: dict[str, Any] = dict(keep=in_held_out, render=render, stop_ids=stops)
    was = model.training
    model.eval()
    try:
        greedy = evaluate_task(model, template.tokenizer, task, n, **kw)
        sampled = None
        if k > 1:
            sampled = evaluate_task(
                model, template.tokenizer, task, n, temperature=temperature, k=k, **kw
            )
    finally:
        model.train(was)
    return greedy, sampled


def task_figures(
    model: torch.nn.Module, template: ChatTemplate, task: str, n: int, k: int = 1
) -> dict[str, float]:
    """``{"accuracy": greedy, "pass@1": ..., "pass@k": ...}`` (module docstring)."""
    greedy, sampled = task_results(model, template, task, n, k)
    out = {"accuracy": greedy.accuracy}
    if sampled is not None:
        out["pass@1"] = sampled.pass_at_k[1]
        out[f"pass@{k}"] = sampled.pass_at_k[k]
    return out
