"""``Trainer``: one training loop for every model family.

>>> trainer = Trainer(model, data, TrainConfig(max_iters=500, out_dir="run"))  # doctest: +SKIP
>>> result = trainer.train()                                                  # doctest: +SKIP
>>> result.best_val_loss, result.checkpoint                                   # doctest: +SKIP
(1.52, PosixPath('run/last'))

Each optimizer step draws the step's windows from the data generator and runs
``step.TrainStep`` on them (learning rate, forward and backward per micro-batch, clipping,
AdamW). Every ``log_interval`` steps one host sync reads the mean loss and whether any
loss was NaN/inf; every ``eval_interval`` steps (and at the end) the model is evaluated
(the validation loss, then each of ``evaluators``) and the run checkpointed to
``out_dir/last`` (and ``out_dir/best`` on a new best validation loss).

**Data order.** Step k's windows are the next ``batch_size * gradient_accumulation_steps *
world_size`` draws of ``np.random.default_rng(seed)`` (one ``get_batch`` call): micro-batch
m of rank r takes rows ``[(m * world_size + r) * batch_size, ...+ batch_size)``. So
accumulation and data parallelism see exactly the windows of one big batch, and the
generator's state is the data position a checkpoint saves.

**Data** is any batch source: a ``TokenDataset`` (windows of a token stream) or any object
with the same ``get_batch(split, n, block_size, rng)`` and ``vocab_size``, such as
``data.example_dataset.ExampleDataset`` (whole fine-tuning examples, padded or packed). A
batch is ``(x, y, mask)`` or, for packed rows, ``(x, y, mask, documents)``.

**Evaluators** are ``evaluator(model, tokenizer) -> dict`` functions whose entries join the
evaluation's row (rank 0 runs them). By default, for a synthetic language (given, or
recognised from the dataset's source) it is ``ValidityEvaluator``: the share of sampled
strings the language accepts.

**Counting models** (no trainable parameters, a ``fit`` method: the n-gram) are fitted
on the whole training split in one pass, evaluated and saved: one "step".

**Stopping.** Ctrl-C (SIGINT) finishes the current step, saves a checkpoint, writes the
plot and returns with ``status="interrupted"``; a second Ctrl-C stops at once without
saving. A NaN or inf loss raises ``TrainingDiverged`` without saving anything after it;
its message names the checkpoints on disk with their validation losses.

**The run directory has one writer.** ``train`` holds ``out_dir``'s lock
(``scratchllm.files.run_lock``) from start to end, so a second trainer on the same
directory is refused while readers go on reading it. Both splits are checked against the
window before step 1, and an evaluation's metrics row is on disk before its checkpoint
is swapped in, so a kill between the two loses nothing a resume cannot redo.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scratchllm.checkpoint import (
    BEST,
    LAST,
    STATE_JSON,
    Checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from scratchllm.configs.data import DEFAULT_VAL_FRACTION
from scratchllm.configs.train import TrainConfig
from scratchllm.data.corpus import language_of
from scratchllm.data.dataset import TokenDataset
from scratchllm.data.languages import Language
from scratchllm.data.languages import get as get_language
from scratchllm.evaluation.validity import ValidityEvaluator
from scratchllm.files import finite, run_lock, write_text
from scratchllm.memory import keep_freed_memory
from scratchllm.metrics import perplexity
from scratchllm.models.base import LanguageModel
from scratchllm.tokenizers.base import Tokenizer
from scratchllm.training import distributed as dist_utils
from scratchllm.training.device import autocast, autocast_dtype, resolve_device
from scratchllm.training.optimizer import configure_optimizer
from scratchllm.training.plot import plot_metrics, read_metrics
from scratchllm.training.schedule import lr_at, schedule_change
from scratchllm.training.step import (
    LossFn,
    MicroBatch,
    TrainStep,
    counted_tokens,
    forward_loss,
)
from scratchllm.training.step import train_step_fn as train_step_fn  # its first home

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"
_EVAL_SEED_OFFSET = 1_000_003  # validation batches come from their own fixed generator

Callback = Callable[["Trainer"], None]
Evaluator = Callable[[LanguageModel, Tokenizer], dict[str, Any]]
# Writes a checkpoint's model files into a (temporary) directory: checkpoint.save_checkpoint's
# ``files``. None: the model's and the tokenizer's own save.
CheckpointFiles = Callable[[Path], None]


class TrainingDiverged(FloatingPointError, ValueError):
    """The loss became NaN or inf; nothing was saved after it. (A ValueError too: the
    settings diverge, and the command line shows its message as one line.)"""

    def __init__(self, message: str, step: int, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.step = step
        self.checkpoint = checkpoint


@dataclass
class TrainResult:
    """What ``Trainer.train`` reports."""

    status: str  # "completed", "early_stopped" or "interrupted"
    steps: int  # optimizer steps taken in total (including before a resume)
    tokens_seen: int  # training tokens consumed in total
    final_train_loss: float | None  # mean loss over the last logging interval
    final_val_loss: float | None  # at the last evaluation
    best_val_loss: float | None
    best_step: int | None
    tokens_per_s: float  # training throughput of this session (all processes together)
    elapsed_s: float  # wall time of this session
    out_dir: Path
    checkpoint: Path | None  # out_dir/last, where resuming starts
    best_checkpoint: Path | None  # out_dir/best
    metrics_file: Path | None
    plot_file: Path | None
    last_eval: dict[str, Any] = field(default_factory=dict)  # val_loss, perplexity, valid...
    notes: list[str] = field(default_factory=list)  # e.g. "autocast skipped on CPU"

    @property
    def final_perplexity(self) -> float | None:
        v = self.final_val_loss
        return None if v is None else perplexity(v)


class Trainer:
    """Train ``model`` on ``data`` (a ``TokenDataset`` or its directory) under ``config``.

    ``tokenizer`` defaults to the one saved with the dataset; it is written into every
    checkpoint. ``language`` (a ``Language`` or a spec such as ``"dyck:depth=3"``)
    is recorded in the checkpoint; by default it is recognised from the dataset's source.
    ``evaluators`` run at each evaluation (module docstring); None means the default.
    ``callbacks`` are called as ``callback(trainer)`` after every optimizer step (read
    ``trainer.step`` and ``trainer.last_loss``, a device tensor: ``.item()`` syncs).
    ``loss_fn`` replaces the model's own training loss (``step.LossFn``, e.g. distillation;
    the validation loss stays the model's). ``checkpoint_files`` writes the model's files of
    every checkpoint (e.g. an adapter alone, or the weights and a chat template).
    """

    def __init__(
        self,
        model: LanguageModel,
        data: TokenDataset | Any | str | Path,
        config: TrainConfig | None = None,
        tokenizer: Tokenizer | None = None,
        language: Language | str | None = None,
        *,
        evaluators: Sequence[Evaluator] | None = None,
        callbacks: Sequence[Callback] = (),
        log: Callable[[str], None] | None = None,
        loss_fn: LossFn | None = None,
        checkpoint_files: CheckpointFiles | None = None,
    ) -> None:
        self.config = cfg = config or TrainConfig()
        self.model = model
        self.data = TokenDataset(data) if isinstance(data, str | Path) else data
        self.tokenizer = tokenizer if tokenizer is not None else self.data.tokenizer()
        self.language = _resolve_language(language, self.data)
        self.evaluators = list(evaluators) if evaluators is not None else self._default_evals()
        self.callbacks = list(callbacks)
        self.loss_fn = loss_fn
        self.checkpoint_files = checkpoint_files
        self._log_fn = log
        _check_vocab(model, self.data, self.tokenizer)
        model_block = getattr(getattr(model, "config", None), "block_size", None)
        self.block_size = cfg.resolve_block_size(model_block)
        check_splits(self.data, self.block_size)  # now, not at the first evaluation
        self.counting = _is_counting(model)
        self.out_dir = Path(cfg.out_dir)
        self.metrics_path = self.out_dir / METRICS_FILE
        # -- the run's progress (saved in every checkpoint) --
        self.step = 0
        self.tokens_seen = 0
        self.best_val_loss: float | None = None
        self.best_step: int | None = None
        self.evals_since_best = 0
        self.data_rng = np.random.default_rng(cfg.seed)
        # -- set up by train() --
        self.dist = dist_utils.DistInfo()
        self.device = torch.device("cpu")
        self.amp_dtype: torch.dtype | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.fwd_model: torch.nn.Module = model  # compiled (or not): what evaluation runs
        self.train_model: torch.nn.Module = model  # DDP-wrapped (or not): what training runs
        self._step_fn: TrainStep | None = None
        # -- this session --
        self.last_loss: torch.Tensor | None = None  # the last step's loss, on the device
        self.notes: list[str] = []
        self._tokens_per_step = 0
        self._session_tokens = 0
        self._last_train_loss: float | None = None
        self._last_eval: dict[str, Any] = {}
        self._lr = 0.0
        self._acc: _Accumulator | None = None
        self._bar: Any = None
        self._t0 = time.perf_counter()
        self._resume_from: Checkpoint | None = None
        self._resume_note: str | None = None  # what a resume changes in the schedule
        self._stop: str | None = None  # set by the SIGINT handler
        self._in_step = False

    def _default_evals(self) -> list[Evaluator]:
        n = self.config.validity_samples
        if self.language is None or not n:
            return []
        return [ValidityEvaluator(self.language, n, seed=self.config.seed)]

    # -- resuming ---------------------------------------------------------------------------

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        data: TokenDataset | Any | str | Path,
        config: TrainConfig | None = None,
        language: Language | str | None = None,
        *,
        prepare: Callable[[LanguageModel], LanguageModel] | None = None,
        **kwargs: Any,
    ) -> Trainer:
        """A trainer that continues the run saved in ``run_dir`` (its ``last/`` checkpoint)
        exactly where it stopped: weights, optimizer, schedule, data position and RNGs.

        ``config`` defaults to the saved one (``saved_config``); pass a changed copy to
        override fields, e.g. ``saved_config(d).replace(max_iters=4000)``. The run keeps
        writing to ``config.out_dir``. ``prepare(model) -> model`` runs on the loaded model
        before the optimizer is built (e.g. to say again which parameters train).
        """
        ckpt = load_checkpoint(run_dir, which=LAST)
        if prepare is not None:
            ckpt.model = prepare(ckpt.model)
        if ckpt.state is None:
            raise FileNotFoundError(
                f"{ckpt.path}: no trainer_state.json, so there is nothing to resume "
                "(the directory holds weights only)"
            )
        saved = _config_from_state(ckpt)
        config = saved if config is None else config
        if config.max_iters < ckpt.step:
            raise ValueError(
                f"the run in {run_dir} is at step {ckpt.step}; max_iters = {config.max_iters} "
                f"would end before it: resume with --max-iters {ckpt.step} or more, or start "
                "a new run"
            )
        trainer = cls(ckpt.model, data, config, ckpt.tokenizer, language, **kwargs)
        trainer._resume_from = ckpt
        trainer._resume_note = schedule_change(saved, config, ckpt.step)
        return trainer

    # -- the run --------------------------------------------------------------------------------

    def train(self) -> TrainResult:
        """Run until ``max_iters`` (or early stopping, Ctrl-C, or divergence)."""
        cfg = self.config
        self.dist = dist_utils.detect()
        local_rank = self.dist.local_rank if self.dist.enabled else None
        self.device = resolve_device(cfg.device, local_rank)
        started = dist_utils.init(self.dist, self.device)
        self._t0 = time.perf_counter()
        lock = run_lock(self.out_dir) if self.dist.is_main else contextlib.nullcontext()
        try:
            with lock:
                if getattr(lock, "note", None):
                    self._note(lock.note)
                self._setup()
                with self._sigint_deferred():
                    status = self._fit_counts() if self.counting else self._loop()
                return self._finish(status)
        finally:
            dist_utils.shutdown(started)

    def _setup(self) -> None:
        cfg, rank = self.config, self.dist.rank
        self.model.to(self.device)
        if self.device.type == "cpu":
            keep_freed_memory()  # the step's tensors reuse freed blocks, not fresh pages
        resuming = self._resume_from is not None
        if not resuming:
            seed_everything(cfg.seed, rank)
        self.data_rng = np.random.default_rng(cfg.seed)
        self.amp_dtype, note = autocast_dtype(cfg.dtype, self.device)
        if note:
            self._note(note)
        if not self.counting:
            self.optimizer = configure_optimizer(self.model, cfg, self.device.type)
            if cfg.compile:
                self.fwd_model = self.train_model = torch.compile(self.model)
            if self.dist.enabled:
                from torch.nn.parallel import DistributedDataParallel as DDP

                ids = [self.device.index] if self.device.type == "cuda" else None
                self.train_model = DDP(self.fwd_model, device_ids=ids)
            self._step_fn = TrainStep(
                self.model,
                self.train_model,
                self.optimizer,
                cfg,
                self.device,
                self.amp_dtype,
                ddp=self.dist.enabled,
                loss_fn=self.loss_fn,
            )
        if resuming:
            self._restore(self._resume_from)
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if resuming:
                _truncate_metrics(self.metrics_path, self.step)
            else:
                if (self.out_dir / LAST).exists():
                    self._note(f"{self.out_dir} holds an earlier run; starting a new one over it")
                self.metrics_path.write_text("", encoding="utf-8")

    def _restore(self, ckpt: Checkpoint) -> None:
        state = ckpt.state
        self.step = int(state["step"])
        self.tokens_seen = int(state.get("tokens_seen", 0))
        self.best_val_loss = state.get("best_val_loss")
        self.best_step = state.get("best_step")
        self.evals_since_best = int(state.get("evals_since_best", 0))
        self.data_rng.bit_generator.state = state["data_rng"]
        if self.optimizer is not None:
            ckpt.restore_optimizer(self.optimizer)
        # Other ranks' dropout streams were not saved; rank 0's is restored exactly.
        ckpt.restore_rng(torch_state=self.dist.is_main)
        if not self.dist.is_main:
            torch.manual_seed(self.config.seed + self.dist.rank + 7919 * self.step)
        saved_world = state.get("world_size", 1)
        if saved_world != self.dist.world_size:
            self._note(
                f"resuming a {saved_world}-process run with {self.dist.world_size}: "
                "the batches per step change"
            )
        self._note(f"resumed from {ckpt.path} at step {self.step}")
        if self._resume_note:
            self._note(self._resume_note)

    def _loop(self) -> str:
        cfg = self.config
        self._tokens_per_step = cfg.batch_size * self.block_size * self._draws_per_step()
        self._acc = _Accumulator(self.device)
        self._bar = self._progress_bar()
        self.model.train()
        status = "completed"
        try:
            while status == "completed" and self.step < cfg.max_iters:
                self._one_step()
                status = self._after_step()
        except KeyboardInterrupt:
            status = self._interrupted()
        finally:
            if self._bar is not None:
                self._bar.close()
        if status == "interrupted":
            self._note(f"interrupted at step {self.step}; resume to continue")
        return status

    def _draws_per_step(self) -> int:
        """Micro-batches of all processes in one step: ``gradient_accumulation * world``."""
        return self.config.gradient_accumulation_steps * self.dist.world_size

    def _one_step(self) -> None:
        """Draw the step's windows, take this rank's micro-batches, run the update."""
        B, T, W = self.config.batch_size, self.block_size, self.dist.world_size
        A = self.config.gradient_accumulation_steps
        self._in_step = True
        self._lr = lr_at(self.step, self.config)
        batch = self.data.get_batch("train", B * A * W, T, self.data_rng)
        micro: list[MicroBatch] = []
        for a in range(A):
            lo = (a * W + self.dist.rank) * B
            micro.append(
                tuple(None if t is None else self._to_device(t[lo : lo + B]) for t in batch)
            )
        loss, norm = self._step_fn.run(self.step, micro)
        if norm is not None:
            self._acc.grad_norm = norm
        self._acc.add(loss)  # on the device: no host sync until the next log step
        self.last_loss = loss
        self.step += 1
        self.tokens_seen += self._tokens_per_step
        self._session_tokens += self._tokens_per_step
        self._in_step = False

    def _after_step(self) -> str:
        """Callbacks, then (when due) log, evaluate and checkpoint; the run's status."""
        cfg = self.config
        for callback in self.callbacks:
            callback(self)
        if self._bar is not None:
            self._bar.update(1)
        eval_now = self.step % cfg.eval_interval == 0 or self.step == cfg.max_iters
        stop_now = self._stop is not None and not self.dist.enabled
        if not (eval_now or stop_now or self.step % cfg.log_interval == 0):
            return "completed"
        row, stopping = self._log_row()
        status = "completed"
        if eval_now:
            row.update(self.evaluate())
            self._acc.t_log = time.perf_counter()  # evaluation time is not training time
            if not math.isfinite(row["val_loss"]):  # the weights went bad: save none of them
                row["diverged"] = True
                self._write_metrics(row)
                self._diverged(0, 0, what="validation loss")
            # The row first, on disk, then the checkpoint: killed in between, a resume from
            # the older checkpoint drops the row and redoes it; never a checkpoint without it.
            self._write_metrics(row, sync=True)
            self._save_checkpoints(row["val_loss"])
            if self._early_stop_due():
                status = "early_stopped"
        else:
            self._write_metrics(row)
        if stopping:
            if not eval_now:
                self._sync_metrics()
                self._save_checkpoints(None)
            status = "interrupted"
        return status

    def _early_stop_due(self) -> bool:
        cfg = self.config
        due = (
            cfg.early_stopping is not None
            and self.evals_since_best >= cfg.early_stopping
            and self.step < cfg.max_iters
        )
        if due:
            self._note(
                f"early stopping at step {self.step}: no new best validation loss in "
                f"{cfg.early_stopping} evaluations (best {self.best_val_loss:.4f} at step "
                f"{self.best_step})"
            )
        return due

    def _interrupted(self) -> str:
        """A KeyboardInterrupt (a second Ctrl-C, or one raised by a callback)."""
        if self._in_step:  # torn between micro-batches or mid-update: do not save it
            self._note(f"interrupted during step {self.step + 1}; not saved")
        else:  # raised at a step boundary (a callback): the state is whole, save it
            if self._acc.steps:
                self._write_metrics(self._log_row(reduce=False)[0], sync=True)
            self._save_checkpoints(None)
        return "interrupted"

    def _log_row(self, reduce: bool = True) -> tuple[dict[str, Any], bool]:
        """The one host sync of a log step: read (and, across processes, average) the loss
        accumulated since the last log; stop with ``TrainingDiverged`` on NaN/inf.
        Returns the metrics row and whether any process asked to stop (Ctrl-C)."""
        acc, W = self._acc, self.dist.world_size
        stop_flag = torch.tensor(float(self._stop is not None), device=self.device)
        packed = torch.stack([acc.loss_sum, acc.n_bad, acc.grad_norm.float(), stop_flag])
        if reduce:
            packed = dist_utils.all_reduce_sum(packed, self.dist)
        else:
            W = 1
        total, bad, gnorm, stops = packed.tolist()
        now = time.perf_counter()
        train_loss = total / (acc.steps * W)
        tps = acc.steps * self._tokens_per_step / max(now - acc.t_log, 1e-9)
        row = {
            "step": self.step,
            "loss": train_loss if not bad else None,
            "lr": self._lr,
            "tokens_per_s": tps,
            "tokens": self.tokens_seen,
            "elapsed_s": round(now - self._t0, 3),
        }
        if self.config.grad_clip:
            row["grad_norm"] = gnorm / W
        if bad:
            row["diverged"] = True
            self._write_metrics(row)
            self._diverged(int(bad), acc.steps)
        self._last_train_loss = train_loss
        acc.reset(now)
        if self._bar is not None:
            self._bar.set_postfix(
                loss=f"{train_loss:.4f}", lr=f"{self._lr:.2e}", tok_s=f"{tps:,.0f}"
            )
        return row, stops > 0

    def _fit_counts(self) -> str:
        """The counting model's "training": one pass over the training split."""
        if self.step != 0:
            self._note(f"{type(self.model).__name__} was already fitted at step {self.step}")
            return "completed"
        t = time.perf_counter()
        tokens = self.data.split_tokens("train")
        self.model.fit(tokens)
        self.step, self.tokens_seen = 1, len(tokens)
        self._session_tokens = len(tokens)
        fit_s = time.perf_counter() - t
        row = {
            "step": 1,
            "loss": self._mean_loss("train"),
            "lr": 0.0,
            "tokens_per_s": len(tokens) / max(fit_s, 1e-9),
            "tokens": len(tokens),
            "elapsed_s": round(time.perf_counter() - self._t0, 3),
        }
        self._last_train_loss = row["loss"]
        row.update(self.evaluate())
        self._write_metrics(row, sync=True)  # the row before the checkpoint (see _after_step)
        self._save_checkpoints(row["val_loss"])
        return "completed"

    # -- evaluation ---------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Validation loss and perplexity on ``eval_iters`` fixed batches (the same ones every
        time; each process scores its rows), then every evaluator's entries (rank 0)."""
        val_loss = self._mean_loss("val")
        out: dict[str, Any] = {"val_loss": val_loss, "val_perplexity": perplexity(val_loss)}
        if self.dist.is_main:
            for evaluator in self.evaluators:
                out.update(evaluator(self.model, self.tokenizer))
        self.model.train()
        self._last_eval = out
        return out

    def _mean_loss(self, split: str) -> float:
        """Mean loss over ``eval_iters`` batches from a fixed generator (the same every call):
        each batch weighted by its counted tokens when it has a mask (as in training)."""
        cfg, info = self.config, self.dist
        B, W = cfg.batch_size, info.world_size
        rng = np.random.default_rng(cfg.seed + _EVAL_SEED_OFFSET)
        self.model.eval()
        total = torch.zeros(2, device=self.device)  # (sum of weighted losses, weights)
        with torch.no_grad(), autocast(self.device, self.amp_dtype):
            for _ in range(cfg.eval_iters):
                # The same windows as one process with the combined batch; each takes its rows.
                batch = self.data.get_batch(split, B * W, self.block_size, rng)
                rows = slice(info.rank * B, (info.rank + 1) * B)
                mb = tuple(None if t is None else t[rows].to(self.device) for t in batch)
                loss = forward_loss(self.fwd_model, mb)
                one = torch.ones((), device=self.device)
                n = one if mb[2] is None else counted_tokens(mb).float()
                total += torch.stack([loss.float() * n, n])
        total = dist_utils.all_reduce_sum(total, info)
        self.model.train()
        s, n = total.tolist()
        return s / n

    # -- files --------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "lr": lr_at(min(self.step, max(self.config.max_iters - 1, 0)), self.config),
            "best_val_loss": self.best_val_loss,
            "best_step": self.best_step,
            "evals_since_best": self.evals_since_best,
            "data_rng": self.data_rng.bit_generator.state,
            "world_size": self.dist.world_size,
            "block_size": self.block_size,
            "train_config": self.config.to_dict(),
            # Recorded so that eval / inspect know the rule the model was trained on.
            "language": None if self.language is None else self.language.spec,
        }

    def _save_checkpoints(self, val_loss: float | None) -> None:
        """Update best (on a new best val_loss) and last; rank 0 writes."""
        if val_loss is not None:
            if self.best_val_loss is None or val_loss < self.best_val_loss:
                self.best_val_loss, self.best_step = val_loss, self.step
                self.evals_since_best = 0
                if self.dist.is_main:
                    # Weights only: best/ is for sampling; last/ records best_step.
                    save_checkpoint(
                        self.out_dir / BEST,
                        self.model,
                        self.tokenizer,
                        files=self.checkpoint_files,
                    )
            else:
                self.evals_since_best += 1
        if self.dist.is_main:
            save_checkpoint(
                self.out_dir / LAST,
                self.model,
                self.tokenizer,
                self.optimizer,
                self._state(),
                files=self.checkpoint_files,
            )
        dist_utils.barrier(self.dist)

    def _write_metrics(self, row: dict[str, Any], sync: bool = False) -> None:
        """Append ``row``; with ``sync`` flush it to disk (before a checkpoint is saved)."""
        if not self.dist.is_main:
            return
        with self.metrics_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(finite(row)) + "\n")
            if sync:
                f.flush()
                os.fsync(f.fileno())

    def _sync_metrics(self) -> None:
        if self.dist.is_main and self.metrics_path.is_file():
            with self.metrics_path.open("a", encoding="utf-8") as f:
                os.fsync(f.fileno())

    def _write_plot(self) -> Path | None:
        if not self.dist.is_main or not self.metrics_path.is_file():
            return None
        rows = read_metrics(self.metrics_path)
        if not rows:
            return None
        title = f"{type(self.model).__name__} · {self.step} steps"
        return plot_metrics(rows, self.out_dir / PLOT_FILE, title=title)

    # -- ending ---------------------------------------------------------------------------------

    def _diverged(self, n_bad: int, steps: int, what: str = "training loss") -> None:
        """Stop with ``TrainingDiverged``: ``n_bad`` of the last ``steps`` training losses
        were not finite (or, with ``steps`` 0, the validation loss just measured)."""
        first = self.step - steps + 1
        where = f"{n_bad} of steps {first}..{self.step}" if steps else f"at step {self.step}"
        self._write_plot()
        raise TrainingDiverged(
            f"the {what} became NaN or inf ({where}); stopped, and nothing after it was "
            f"saved. {self._saved_checkpoints()} {divergence_advice(self.config)}",
            step=self.step,
            checkpoint=self.out_dir / BEST if self.best_step is not None else None,
        )

    def _saved_checkpoints(self) -> str:
        """What is on disk after a divergence, each checkpoint with its validation loss
        (and whether that beats guessing uniformly: a run can go bad before NaN)."""
        last, best = self.out_dir / LAST, self.out_dir / BEST
        if not (last / STATE_JSON).is_file() or self.best_val_loss is None:
            return "No checkpoint had been saved."
        uniform = math.log(self.data.vocab_size)
        worse = self.best_val_loss > uniform
        judged = "worse than" if worse else "better than"
        text = (
            f"Best checkpoint: {best} (step {self.best_step}, validation loss "
            f"{self.best_val_loss:,.{4 if self.best_val_loss < 1e3 else 0}f}, {judged} a "
            f"uniform guess's {uniform:.4f})"
        )
        saved_step = None
        with contextlib.suppress(ValueError, OSError, KeyError):
            saved_step = json.loads((last / STATE_JSON).read_text(encoding="utf-8"))["step"]
        if saved_step is not None and saved_step != self.best_step:
            text += f"; the latest, {last}, is at step {saved_step}"
        return text + "."

    def _finish(self, status: str) -> TrainResult:
        plot = self._write_plot()
        elapsed = time.perf_counter() - self._t0
        last, best = self.out_dir / LAST, self.out_dir / BEST
        ev = self._last_eval
        return TrainResult(
            status=status,
            steps=self.step,
            tokens_seen=self.tokens_seen,
            final_train_loss=self._last_train_loss,
            final_val_loss=ev.get("val_loss"),
            best_val_loss=self.best_val_loss,
            best_step=self.best_step,
            tokens_per_s=self._session_tokens / max(elapsed, 1e-9),
            elapsed_s=elapsed,
            out_dir=self.out_dir,
            checkpoint=last if last.is_dir() else None,
            best_checkpoint=best if best.is_dir() else None,
            metrics_file=self.metrics_path if self.metrics_path.is_file() else None,
            plot_file=plot,
            last_eval=dict(ev),
            notes=list(self.notes),
        )

    # -- small things ---------------------------------------------------------------------------

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cpu":
            return t
        if self.device.type == "cuda":  # pinned memory: the copy overlaps the compute
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def _note(self, message: str) -> None:
        self.notes.append(message)
        if not self.dist.is_main:
            return
        if self._log_fn is not None:
            self._log_fn(message)
        else:
            from tqdm import tqdm

            tqdm.write(message, file=sys.stderr)

    def _progress_bar(self):  # noqa: ANN202
        if not (self.config.progress and self.dist.is_main):
            return None
        from tqdm import tqdm

        return tqdm(
            total=self.config.max_iters,
            initial=self.step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
            file=sys.stderr,
        )

    @contextlib.contextmanager
    def _sigint_deferred(self):  # noqa: ANN202
        """While training, the first Ctrl-C asks the loop to stop at the end of the step (and
        save); a second one interrupts at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):  # noqa: ANN001
            if self._stop is not None:
                raise KeyboardInterrupt
            self._stop = "interrupt"
            self._note("Ctrl-C: stopping after this step and saving (Ctrl-C again to abort)")

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


# -- helpers ------------------------------------------------------------------------------------


class _Accumulator:
    """What the loop sums on the device between two log steps (read with one sync)."""

    def __init__(self, device: torch.device) -> None:
        self.loss_sum = torch.zeros((), device=device)  # summed step losses
        self.n_bad = torch.zeros((), device=device)  # steps whose loss was NaN or inf
        self.grad_norm = torch.zeros((), device=device)  # of the last step, before clipping
        self.steps = 0
        self.t_log = time.perf_counter()

    def add(self, step_loss: torch.Tensor) -> None:
        self.loss_sum += step_loss
        self.n_bad += (~torch.isfinite(step_loss)).float()
        self.steps += 1

    def reset(self, now: float) -> None:
        self.loss_sum.zero_()
        self.n_bad.zero_()
        self.steps, self.t_log = 0, now


def saved_config(run_dir: str | Path) -> TrainConfig:
    """The ``TrainConfig`` a run directory (or checkpoint) was trained with."""
    return _config_from_state(load_checkpoint(run_dir, which=LAST, require_tokenizer=False))


def _config_from_state(ckpt: Checkpoint) -> TrainConfig:
    try:
        return TrainConfig.from_dict(ckpt.state["train_config"])
    except (KeyError, TypeError, ValueError) as e:
        file = ckpt.path / STATE_JSON
        raise ValueError(f"{file}: bad saved TrainConfig ({e})") from None


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed python, numpy and torch; each process gets its own dropout stream."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed + rank)


def _check_vocab(model: torch.nn.Module, data: TokenDataset, tokenizer: Tokenizer) -> None:
    V = getattr(model, "vocab_size", None)
    if V is not None and data.vocab_size != V:
        raise ValueError(
            f"the dataset {getattr(data, 'directory', '')} has vocab_size {data.vocab_size} but "
            f"the model {V}; build the model with vocab_size={data.vocab_size}"
        )
    if V is not None and tokenizer.vocab_size != V:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model's "
            f"vocab_size is {V}; use the tokenizer the data was made with"
        )


def check_splits(data: TokenDataset, block_size: int) -> None:
    """Both splits must hold a window of ``block_size`` tokens plus its next one: training
    draws from the first, every evaluation (best/, early stopping) from the second. An error
    names the sizes and the setting that fixes it."""
    m = getattr(data, "meta", None)
    if m is None:  # a batch source that is no TokenDataset checks itself
        return
    need = block_size + 1
    if m.n_val < need and m.val_fraction == 0:
        raise ValueError(
            f"val_fraction 0 leaves {data.directory} no validation split, but the trainer "
            "evaluates every eval_interval steps (the validation loss picks best/ and drives "
            f"early stopping); use a val_fraction above 0 (--val-fraction; default "
            f"{DEFAULT_VAL_FRACTION})"
        )
    for split, n in (("train", m.n_train), ("validation", m.n_val)):
        if n >= need:
            continue
        fixes = []
        if split == "validation":
            frac = math.ceil(need / max(m.n_tokens, 1) * 1000) / 1000
            if frac < 1:
                fixes.append(f"raise val_fraction to about {frac:g} (--val-fraction)")
        elif m.val_fraction > 0:
            fixes.append("lower val_fraction (--val-fraction)")
        if n >= 2:
            fixes.append(f"lower block_size to {n - 1} (--block-size)")
        fixes.append("use more text (--data, or --samples for a language)")
        raise ValueError(
            f"the {split} split of {data.directory} has {n:,} tokens (val_fraction "
            f"{m.val_fraction:g} of {m.n_tokens:,}), but a window of block_size {block_size} "
            f"needs {need:,}: {', or '.join(fixes)}"
        )


def divergence_advice(cfg: TrainConfig) -> str:
    """What to change after a NaN loss, for these settings (no advice to clip when
    clipping is on, nor to warm up when the warmup is long)."""
    lower = f"lower the learning rate (lr {cfg.lr:g}: try {cfg.lr / 10:g}"
    lower += ", and min_lr with it)" if cfg.min_lr > cfg.lr / 10 else ")"
    tips = [lower]
    warmup = min(100, cfg.max_iters // 10)
    if cfg.warmup_steps < warmup:
        tips.append(f"warm up longer (warmup_iters {cfg.warmup_steps}: try {warmup})")
    if not cfg.grad_clip:
        tips.append("clip gradients (grad_clip is off: try 1.0)")
    if cfg.dtype != "float32":
        tips.append(f"train in float32 (dtype is {cfg.dtype})")
    return "To fix it: " + "; ".join(tips) + "."


def _is_counting(model: torch.nn.Module) -> bool:
    trainable = any(p.requires_grad for p in model.parameters())
    return not trainable and callable(getattr(model, "fit", None))


def _resolve_language(language: Language | str | None, data: TokenDataset) -> Language | None:
    """The language given (an object or a spec), else the one the dataset's source names
    (``language_of``; a source that is no valid spec names none)."""
    if isinstance(language, str):
        return get_language(language)
    if language is not None:
        return language
    with contextlib.suppress(ValueError, TypeError):
        return language_of(str(getattr(getattr(data, "meta", None), "source", "")))
    return None


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics logged after the checkpoint being resumed (they will be redone)."""
    if not path.is_file():
        return
    rows = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
