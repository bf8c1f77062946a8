"""The optimisation loop of the preference and RL methods (reward, dpo, ppo, grpo).

The ``Trainer`` (``training.trainer``) draws windows or examples and takes one optimizer
step per batch. These methods differ in what one **step** is, so each is a ``Learner``
that does its own step and calls ``update()`` for every optimizer step it takes:

- reward model, DPO: a step is one batch of pairs and one update;
- GRPO: a step samples a rollout (G completions of each of its prompts) and takes
  ``num_iterations`` updates on it (the ratio clip matters from the second on);
- PPO: a step samples a rollout and takes ``ppo_epochs x num_minibatches`` updates.

The loop owns what all share, with the ``Trainer``'s settings and names: AdamW with decay on
matrices only (``training.optimizer``), the learning rate of each step (``lr_at``: warmup,
cosine or constant; constant within a step), gradient clipping, ``metrics.jsonl`` (a row
every ``log_interval`` steps and at every evaluation), evaluation and checkpoints every
``eval_interval`` steps and at the end (``last/`` with the trainer state, ``best/`` when the
learner's score improves), ``loss.png``, and a Ctrl-C that stops at the end of the step.

**Exact resume.** A checkpoint is written only between steps, and everything random in a
step comes from generators seeded by ``(seed, step)`` (prompts, samples, minibatch order)
or from the torch RNG, which the trainer state saves with the optimizer. So a run stopped
after step s and resumed gives the weights an uninterrupted run has (tested).
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from scratchllm.checkpoint import BEST, LAST, STATE_JSON, Checkpoint, read_trainer_state
from scratchllm.checkpoint import save_checkpoint as _save
from scratchllm.configs.train import TrainConfig
from scratchllm.files import finite
from scratchllm.training.optimizer import configure_optimizer
from scratchllm.training.plot import plot_metrics, read_metrics
from scratchllm.training.run import locked
from scratchllm.training.schedule import lr_at
from scratchllm.training.trainer import TrainingDiverged

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"


class Learner(Protocol):
    """What a method gives the loop."""

    name: str  # the method, for messages and the trainer state

    def trainable(self) -> nn.Module:
        """The module whose trainable parameters the optimizer updates."""

    def train_step(self, step: int, update: Callable[[], float | None]) -> dict[str, float]:
        """One step (0-based): forward, backward, and ``update()`` after each backward
        that completes an optimizer step. Returns what to log (``loss`` first)."""

    def evaluate(self, step: int) -> dict[str, float]:
        """Held-out figures, logged at each evaluation."""

    def score(self, evaluation: dict[str, float]) -> float | None:
        """Higher is better: which checkpoint is ``best/`` (None: no best)."""

    def save(self, directory: Path) -> None:
        """Write the model files of a checkpoint into ``directory``."""


@dataclass
class LoopResult:
    status: str  # "completed" or "interrupted"
    steps: int
    elapsed_s: float
    last_log: dict[str, float]
    last_eval: dict[str, float]
    best_step: int | None
    checkpoint: Path | None
    best_checkpoint: Path | None
    metrics_file: Path
    history: list[dict[str, Any]] = field(default_factory=list)  # this session's rows


def run_loop(
    learner: Learner,
    cfg: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    say: Callable[[str], None] = print,
    after_update: Callable[[], None] | None = None,
) -> LoopResult:
    """Train ``learner`` for ``cfg.max_iters`` steps into the run directory ``out``, holding
    its writer lock (``files.run_lock``) as ``scratchllm train`` does."""
    out = Path(out)
    with locked(out, say):
        return _run_locked(learner, cfg, out, resume, say, after_update)


def _run_locked(
    learner: Learner,
    cfg: TrainConfig,
    out: Path,
    resume: bool,
    say: Callable[[str], None],
    after_update: Callable[[], None] | None,
) -> LoopResult:
    out.mkdir(parents=True, exist_ok=True)
    module = learner.trainable()
    device = next(module.parameters()).device
    optimizer = configure_optimizer(module, cfg, device.type)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    metrics = out / METRICS_FILE
    step, best_score, best_step = 0, None, None
    if resume:
        state, tensors = read_trainer_state(out / LAST)
        ckpt = Checkpoint(out / LAST, None, None, state, tensors)  # type: ignore[arg-type]
        ckpt.restore_optimizer(optimizer)
        ckpt.restore_rng()
        step = int(state["step"])
        best_score, best_step = state.get("best_score"), state.get("best_step")
        _truncate(metrics, step)
        say(f"resumed from {out / LAST} at step {step}")
    else:
        metrics.write_text("", encoding="utf-8")

    def update() -> float | None:
        norm = None
        if cfg.grad_clip:
            norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if after_update is not None:
            after_update()
        return norm

    def state() -> dict[str, Any]:
        return {
            "step": step,
            "method": learner.name,
            "train_config": cfg.to_dict(),
            "best_score": best_score,
            "best_step": best_step,
        }

    def checkpoint(evaluation: dict[str, float]) -> None:
        nonlocal best_score, best_step
        score = learner.score(evaluation)
        if score is not None and (best_score is None or score > best_score):
            best_score, best_step = score, step
            _save(out / BEST, module, files=learner.save)
        _save(out / LAST, module, None, optimizer, state(), files=learner.save)

    history: list[dict[str, Any]] = []
    last_log: dict[str, float] = {}
    last_eval: dict[str, float] = {}
    t0 = time.perf_counter()
    t_log, steps_since_log = t0, 0
    status = "completed"
    optimizer.zero_grad(set_to_none=True)
    with _sigint_deferred(say) as stop:
        while step < cfg.max_iters:
            lr = lr_at(step, cfg)
            for g in optimizer.param_groups:
                g["lr"] = lr
            logs = learner.train_step(step, update)
            step += 1
            steps_since_log += 1
            if not all(math.isfinite(v) for v in logs.values() if isinstance(v, float)):
                bad = [k for k, v in logs.items() if isinstance(v, float) and not math.isfinite(v)]
                raise TrainingDiverged(
                    f"{learner.name}: {', '.join(bad)} became NaN or inf at step {step}; "
                    f"lower the learning rate (lr={cfg.lr:g}) or clip gradients "
                    f"(grad_clip={cfg.grad_clip})",
                    step=step,
                    checkpoint=out / LAST if (out / LAST / STATE_JSON).is_file() else None,
                )
            eval_now = step % cfg.eval_interval == 0 or step == cfg.max_iters or stop.asked
            if not (eval_now or step % cfg.log_interval == 0):
                continue
            now = time.perf_counter()
            row: dict[str, Any] = {"step": step, "lr": lr, **logs}
            row["s_per_step"] = (now - t_log) / max(steps_since_log, 1)
            last_log = dict(logs)
            if eval_now:
                last_eval = learner.evaluate(step)
                row.update(last_eval)
                checkpoint(last_eval)
            t_log, steps_since_log = time.perf_counter(), 0
            with metrics.open("a", encoding="utf-8") as f:
                f.write(json.dumps(finite(row)) + "\n")
            history.append(row)
            say(_line(row, cfg.max_iters))
            if stop.asked:
                status = "interrupted"
                say(f"interrupted at step {step}; --resume continues exactly from here")
                break
    rows = read_metrics(metrics)
    if rows:
        plot_metrics(rows, out / PLOT_FILE, title=f"{learner.name} · {step} steps")
    return LoopResult(
        status=status,
        steps=step,
        elapsed_s=time.perf_counter() - t0,
        last_log=last_log,
        last_eval=last_eval,
        best_step=best_step,
        checkpoint=out / LAST if (out / LAST).is_dir() else None,
        best_checkpoint=out / BEST if (out / BEST).is_dir() else None,
        metrics_file=metrics,
        history=history,
    )


def _line(row: dict[str, Any], total: int) -> str:
    skip = {"step", "lr", "s_per_step"}
    parts = [f"step {row['step']:>5}/{total}"]
    parts += [f"{k} {v:.4g}" for k, v in row.items() if k not in skip and isinstance(v, float)]
    parts += [f"{k} {v}" for k, v in row.items() if k not in skip and isinstance(v, int)]
    parts.append(f"({row['s_per_step']:.2f} s/step)")
    return "  ".join(parts)


def _truncate(path: Path, step: int) -> None:
    """Drop rows logged after ``step`` (a run that went on past its last checkpoint)."""
    if not path.is_file():
        return
    keep = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    path.write_text("".join(json.dumps(r) + "\n" for r in keep), encoding="utf-8")


class _Stop:
    asked = False


@contextlib.contextmanager
def _sigint_deferred(say: Callable[[str], None]):  # noqa: ANN202
    """The first Ctrl-C stops the loop after the current step (saving it); a second aborts."""
    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):  # noqa: ANN001
        if stop.asked:
            raise KeyboardInterrupt
        stop.asked = True
        say("Ctrl-C: stopping after this step and saving (Ctrl-C again to abort)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
