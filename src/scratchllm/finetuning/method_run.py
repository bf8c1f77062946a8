"""What a finished reward / DPO / PPO / GRPO run returns, and what the command prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scratchllm.finetuning.loop import LoopResult
from scratchllm.finetuning.settings import SETTINGS_FILE


@dataclass
class MethodRun:
    settings: dict[str, Any]
    out: Path
    result: LoopResult
    lines: list[str] = field(default_factory=list)  # what the run said before training
    extra: dict[str, Any] = field(default_factory=dict)  # the method's own (e.g. the reference)
    merged: Path | None = None  # with --merge: the adapters folded into a plain checkpoint


def finish(
    settings: dict[str, Any], out: Path, result: LoopResult, lines: list[str], **extra: Any
) -> MethodRun:
    """The run's result; with LoRA and ``--merge``, ``out/merged`` written (sft's)."""
    merged = None
    if settings.get("merge") and settings.get("lora_r") and result.checkpoint is not None:
        from scratchllm.finetuning.adapters import merge_checkpoint

        merged = merge_checkpoint(result.checkpoint, out / "merged")
    return MethodRun(settings, out, result, lines, extra, merged)


def summary_lines(run: MethodRun, verb: str) -> list[str]:
    """The figures of the last evaluation, the files, and what to do next."""
    r, out = run.result, run.out
    done = "done" if r.status == "completed" else r.status
    lines = [f"\n{done}: {r.steps:,} steps in {r.elapsed_s:.0f} s"]
    for key, value in r.last_eval.items():
        if isinstance(value, float):
            lines.append(f"  {key:<24} {value:.4f}")
    lines.append("files")
    for label, path in (
        ("checkpoint", r.checkpoint),
        ("best", r.best_checkpoint),
        ("metrics", r.metrics_file),
        ("settings", out / SETTINGS_FILE),
        ("merged", run.merged),
    ):
        if path is not None:
            lines.append(f"  {label:<16} {path}")
    lines.append("next")
    task = run.settings.get("task") or (run.settings["data"] if verb in ("ppo", "grpo") else None)
    if verb != "reward":
        if task:
            lines.append(f"  scratchllm eval {out} --task {task}")
        lines.append(f"  scratchllm sample {out}")
    lines.append(f"  scratchllm finetune {verb} --out {out} --resume --max-iters {2 * r.steps}")
    return lines
