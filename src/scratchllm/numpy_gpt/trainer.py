"""``NumpyTrainer``: the PyTorch ``Trainer``'s loop for the NumPy GPT, without torch.

>>> trainer = NumpyTrainer(NumpyGPT(config), "data/shakespeare",
...                        TrainConfig(max_iters=500, out_dir="run"))    # doctest: +SKIP
>>> result = trainer.train()                                         # doctest: +SKIP

It takes the same ``TrainConfig`` and does what ``scratchllm.training.Trainer`` does, in
the same order, so one seed gives the same run on either engine:

- **data**: step k's windows are the next ``batch_size * gradient_accumulation_steps``
  draws of ``np.random.default_rng(seed)`` (``data.get_batch``, the draw of
  ``TokenDataset.get_batch``); micro-batch m takes rows ``[m * B, (m + 1) * B)``;
  validation uses its own generator seeded ``seed + 1_000_003``, the same batches every time;
- **update**: ``lr_at(step)`` (the shared schedule), forward and backward per micro-batch
  (gradients averaged), global-norm clipping, AdamW with decay on matrices only;
- **records**: ``metrics.jsonl`` rows with the same keys every ``log_interval`` steps, a
  tqdm progress bar, ``loss.png``; every ``eval_interval`` steps (and at the end) the
  validation loss, ``out_dir/last`` (resumable) and ``out_dir/best`` checkpoints in the
  same layout (``numpy_gpt.checkpoint``); for a synthetic language, the validity of
  sampled strings;
- **stopping**: early stopping, Ctrl-C (finish the step, save; twice: stop now), and a
  NaN/inf loss raises ``TrainingDiverged`` before the bad update, without saving.

``NumpyTrainer.resume(run_dir, data)`` continues a run exactly: weights, AdamW moments,
schedule position, data position and RNG states. It also resumes a PyTorch run's
checkpoint (the files are the same), except that run's dropout stream.
"""

from __future__ import annotations

import contextlib
import json
import math
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

from scratchllm.configs import TrainConfig
from scratchllm.memory import keep_freed_memory
from scratchllm.numpy_gpt.checkpoint import (
    BEST,
    LAST,
    Checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from scratchllm.numpy_gpt.data import get_batch
from scratchllm.numpy_gpt.model import NumpyGPT
from scratchllm.numpy_gpt.optim import AdamW
from scratchllm.training.plot import plot_metrics, read_metrics
from scratchllm.training.schedule import lr_at

METRICS_FILE = "metrics.jsonl"
PLOT_FILE = "loss.png"
EVAL_SEED_OFFSET = 1_000_003  # the PyTorch Trainer's: validation has its own generator

Callback = Callable[["NumpyTrainer"], None]


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or inf; nothing was saved after the last good checkpoint."""

    def __init__(self, message: str, step: int, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.step = step
        self.checkpoint = checkpoint


@dataclass
class TrainResult:
    """What ``NumpyTrainer.train`` reports (the fields of the PyTorch ``TrainResult``)."""

    status: str  # "completed", "early_stopped" or "interrupted"
    steps: int
    tokens_seen: int
    final_train_loss: float | None
    final_val_loss: float | None
    best_val_loss: float | None
    best_step: int | None
    tokens_per_s: float
    elapsed_s: float
    out_dir: Path
    checkpoint: Path | None
    best_checkpoint: Path | None
    metrics_file: Path | None
    plot_file: Path | None
    last_eval: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def final_perplexity(self) -> float | None:
        v = self.final_val_loss
        return None if v is None else (math.exp(v) if v < 700 else math.inf)


def check_train_config(cfg: TrainConfig) -> list[str]:
    """Refuse what the NumPy engine cannot do; return notes for what it skips."""
    kind = cfg.device.split(":", 1)[0]
    if kind not in ("auto", "cpu"):
        raise ValueError(
            f"device {cfg.device!r}: the NumPy engine runs on the CPU; use device 'cpu' "
            "(or the PyTorch engine for an accelerator)"
        )
    if cfg.compile:
        raise ValueError("compile is a PyTorch option (torch.compile); the NumPy engine has none")
    notes = []
    if cfg.dtype != "float32":
        notes.append(
            f"dtype {cfg.dtype}: NumPy has no bfloat16; training in the model's dtype "
            "(as PyTorch skips autocast on a CPU)"
        )
    return notes


class NumpyTrainer:
    """Train a ``NumpyGPT`` on ``data`` (a ``TokenDataset`` or its directory); see the
    module docstring. ``callbacks`` run as ``callback(trainer)`` after every step
    (``trainer.step``, ``trainer.last_loss``)."""

    def __init__(
        self,
        model: NumpyGPT,
        data: Any,
        config: TrainConfig | None = None,
        tokenizer: Any | None = None,
        language: Any | None = None,
        *,
        callbacks: Sequence[Callback] = (),
        log: Callable[[str], None] | None = None,
    ) -> None:
        from scratchllm.data import TokenDataset

        self.config = cfg = config or TrainConfig()
        self.notes: list[str] = []
        self._log_fn = log
        for note in check_train_config(cfg):
            self._note(note)
        self.model = model
        self.data = data if isinstance(data, TokenDataset) else TokenDataset(data)
        self.tokenizer = tokenizer if tokenizer is not None else self.data.tokenizer()
        self.language = _resolve_language(language, self.data)
        self.callbacks = list(callbacks)
        V = model.vocab_size
        if self.data.vocab_size != V:
            raise ValueError(
                f"the dataset {self.data.directory} has vocab_size {self.data.vocab_size} but "
                f"the model {V}; build the model with vocab_size={self.data.vocab_size}"
            )
        if self.tokenizer.vocab_size != V:
            raise ValueError(
                f"the tokenizer has {self.tokenizer.vocab_size} tokens but the model's "
                f"vocab_size is {V}; use the tokenizer the data was made with"
            )
        self.block_size = cfg.block_size or model.config.block_size
        if self.block_size > model.config.block_size:
            raise ValueError(
                f"block_size ({self.block_size}) is longer than the model's block_size "
                f"({model.config.block_size}); train with block_size <= {model.config.block_size}"
            )
        self.out_dir = Path(cfg.out_dir)
        self.metrics_path = self.out_dir / METRICS_FILE
        self.step = 0
        self.tokens_seen = 0
        self.last_loss: float | None = None
        self.best_val_loss: float | None = None
        self.best_step: int | None = None
        self.evals_since_best = 0
        self._resume_from: Checkpoint | None = None
        self._stop: str | None = None
        self._in_step = False
        self._last_eval: dict[str, Any] = {}
        self._last_train_loss: float | None = None
        self._session_tokens = 0

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        data: Any,
        config: TrainConfig | None = None,
        language: Any | None = None,
        **kwargs: Any,
    ) -> NumpyTrainer:
        """Continue the run saved in ``run_dir/last`` exactly where it stopped. ``config``
        defaults to the saved one (pass a changed copy to override fields)."""
        ckpt = load_checkpoint(run_dir, which=LAST)
        if ckpt.state is None:
            raise FileNotFoundError(
                f"{ckpt.path}: no trainer_state.json, so there is nothing to resume "
                "(the directory holds weights only)"
            )
        if config is None:
            try:
                config = TrainConfig.from_dict(ckpt.state["train_config"])
            except (KeyError, TypeError, ValueError) as e:
                file = ckpt.path / "trainer_state.json"
                raise ValueError(f"{file}: bad saved TrainConfig ({e})") from None
        trainer = cls(ckpt.model, data, config, ckpt.tokenizer, language, **kwargs)
        trainer._resume_from = ckpt
        return trainer

    # -- the run ------------------------------------------------------------------------------

    def train(self) -> TrainResult:
        """Run until ``max_iters`` (or early stopping, Ctrl-C, or divergence)."""
        self._t0 = time.perf_counter()
        self._setup()
        with self._sigint_deferred():
            status = self._loop()
        return self._finish(status)

    def _setup(self) -> None:
        cfg = self.config
        keep_freed_memory()  # the step's arrays are reused, not faulted in afresh
        resuming = self._resume_from is not None
        if not resuming:
            random.seed(cfg.seed)
            np.random.seed(cfg.seed)
            self.model.rng = np.random.default_rng(cfg.seed)  # dropout masks
        self.data_rng = np.random.default_rng(cfg.seed)
        self.optimizer = AdamW(
            self.model,
            lr=cfg.lr,
            betas=(cfg.beta1, cfg.beta2),
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
            grad_clip=cfg.grad_clip,
        )
        if resuming:
            self._restore(self._resume_from)
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
        if "optimizer" not in state:
            raise ValueError(f"{ckpt.path}: no optimizer state saved (not a resumable checkpoint)")
        self.optimizer.load_state(ckpt.tensors, where=str(ckpt.path / "trainer_state.safetensors"))
        ckpt.restore_rng(self.model.rng)
        if state.get("engine") != "numpy":
            self._note(
                f"resuming a PyTorch run from {ckpt.path}: its dropout stream does not carry "
                "over (everything else does)"
            )
        if state.get("world_size", 1) != 1:
            self._note(
                f"resuming a {state['world_size']}-process run in one: the batches per step change"
            )
        self._note(f"resumed from {ckpt.path} at step {self.step}")

    def _loop(self) -> str:
        cfg = self.config
        B, T, A = cfg.batch_size, self.block_size, cfg.gradient_accumulation_steps
        self._tokens_per_step = B * T * A
        self._bar = self._progress_bar()
        self.model.train()
        status = "completed"
        acc_loss, acc_steps, t_log, norm = 0.0, 0, time.perf_counter(), None
        try:
            while self.step < cfg.max_iters:
                self._in_step = True
                self._lr = lr = lr_at(self.step, cfg)
                x_all, y_all, m_all = get_batch(self.data, "train", B * A, T, self.data_rng)
                grads, step_loss = None, 0.0
                for micro in range(A):
                    rows = slice(micro * B, (micro + 1) * B)
                    m = None if m_all is None else m_all[rows]
                    _, loss, g = self.model.forward_backward(
                        x_all[rows], y_all[rows], m, label_smoothing=cfg.label_smoothing
                    )
                    if A > 1:  # the mean over micro-batches, as (loss / A).backward() sums
                        for v in g.values():
                            v *= 1.0 / A
                        grads = g if grads is None else {k: grads[k] + g[k] for k in g}
                    else:
                        grads = g
                    step_loss += loss
                step_loss /= A
                if not math.isfinite(step_loss):
                    self._diverged(step_loss)
                norm = self.optimizer.step(grads, lr)
                acc_loss += step_loss
                acc_steps += 1
                self.last_loss = step_loss
                self.step += 1
                self.tokens_seen += self._tokens_per_step
                self._session_tokens += self._tokens_per_step
                self._in_step = False
                for callback in self.callbacks:
                    callback(self)
                if self._bar is not None:
                    self._bar.update(1)

                eval_now = self.step % cfg.eval_interval == 0 or self.step == cfg.max_iters
                stopping = self._stop is not None
                if not (eval_now or stopping or self.step % cfg.log_interval == 0):
                    continue
                now = time.perf_counter()
                row = self._log_row(acc_loss / acc_steps, acc_steps, now - t_log, norm)
                acc_loss, acc_steps, t_log = 0.0, 0, now
                if eval_now:
                    row.update(self.evaluate())
                    t_log = time.perf_counter()  # evaluation time is not training time
                    self._save_checkpoints(row["val_loss"])
                    if (
                        cfg.early_stopping is not None
                        and self.evals_since_best >= cfg.early_stopping
                        and self.step < cfg.max_iters
                    ):
                        status = "early_stopped"
                        self._note(
                            f"early stopping at step {self.step}: no new best validation loss "
                            f"in {cfg.early_stopping} evaluations (best {self.best_val_loss:.4f} "
                            f"at step {self.best_step})"
                        )
                self._write_metrics(row)
                if stopping:
                    if not eval_now:
                        self._save_checkpoints(None)
                    status = "interrupted"
                if status != "completed":
                    break
        except KeyboardInterrupt:
            if self._in_step:  # torn mid-step: do not save it
                self._note(f"interrupted during step {self.step + 1}; not saved")
            else:
                if acc_steps:
                    now = time.perf_counter()
                    self._write_metrics(
                        self._log_row(acc_loss / acc_steps, acc_steps, now - t_log, norm)
                    )
                self._save_checkpoints(None)
            status = "interrupted"
        finally:
            if self._bar is not None:
                self._bar.close()
            self.model.eval()
        if status == "interrupted":
            self._note(f"interrupted at step {self.step}; resume to continue")
        return status

    def _log_row(self, loss: float, steps: int, seconds: float, norm: float | None) -> dict:
        tps = steps * self._tokens_per_step / max(seconds, 1e-9)
        row: dict[str, Any] = {
            "step": self.step,
            "loss": loss,
            "lr": self._lr,
            "tokens_per_s": tps,
            "tokens": self.tokens_seen,
            "elapsed_s": round(time.perf_counter() - self._t0, 3),
        }
        if self.config.grad_clip:
            row["grad_norm"] = norm
        self._last_train_loss = loss
        if self._bar is not None:
            self._bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self._lr:.2e}", tok_s=f"{tps:,.0f}")
        return row

    # -- evaluation -----------------------------------------------------------------------------

    def evaluate(self) -> dict[str, Any]:
        """Validation loss and perplexity on ``eval_iters`` fixed batches, and for a
        language the validity of sampled strings."""
        val_loss = self.mean_loss("val")
        out: dict[str, Any] = {
            "val_loss": val_loss,
            "val_perplexity": math.exp(val_loss) if val_loss < 700 else math.inf,
        }
        if self.language is not None and self.config.validity_samples:
            out["valid"], out["unique"] = self._validity()
        self._last_eval = out
        return out

    def mean_loss(self, split: str) -> float:
        """Mean loss over ``eval_iters`` batches from a fixed generator (the same every call)."""
        cfg = self.config
        rng = np.random.default_rng(cfg.seed + EVAL_SEED_OFFSET)
        was_training = self.model.training
        self.model.eval()
        total = 0.0
        for _ in range(cfg.eval_iters):
            x, y, m = get_batch(self.data, split, cfg.batch_size, self.block_size, rng)
            total += self.model(x, y, m)[1]
        self.model.train(was_training)
        return total / cfg.eval_iters

    def _validity(self) -> tuple[float, float]:
        """The fraction of sampled strings the language accepts, and of distinct ones."""
        from scratchllm.numpy_gpt.generate import generate

        end = self.language.END
        n = self.config.validity_samples
        end_ids = self.tokenizer.encode(end)
        longest = len(self.tokenizer.encode(self.language.sample(random.Random(self.config.seed))))
        new = max(64, 4 * longest)
        eos = end_ids[0] if len(end_ids) == 1 else None
        out = generate(
            self.model, [end_ids] * n, new, temperature=1.0, eos_token_id=eos,
            seed=self.config.seed,
        )  # fmt: skip
        samples = []
        for row in out[:, len(end_ids) :].tolist():
            text = self.tokenizer.decode(row)
            cut = text.find(end)
            samples.append(text if cut < 0 else text[: cut + 1])
        valid = sum(self.language.verify(s).valid for s in samples) / n
        return valid, len(set(samples)) / n

    # -- files ----------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "lr": lr_at(min(self.step, max(self.config.max_iters - 1, 0)), self.config),
            "best_val_loss": self.best_val_loss,
            "best_step": self.best_step,
            "evals_since_best": self.evals_since_best,
            "data_rng": self.data_rng.bit_generator.state,
            "world_size": 1,
            "block_size": self.block_size,
            "train_config": self.config.to_dict(),
            "language": None if self.language is None else self.language.spec,
        }

    def _save_checkpoints(self, val_loss: float | None) -> None:
        if val_loss is not None:
            if self.best_val_loss is None or val_loss < self.best_val_loss:
                self.best_val_loss, self.best_step = val_loss, self.step
                self.evals_since_best = 0
                save_checkpoint(self.out_dir / BEST, self.model, self.tokenizer)
            else:
                self.evals_since_best += 1
        save_checkpoint(
            self.out_dir / LAST, self.model, self.tokenizer, self.optimizer, self._state()
        )

    def _write_metrics(self, row: dict[str, Any]) -> None:
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in row.items()
        }  # JSON has no NaN/inf
        with self.metrics_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(clean) + "\n")

    def _diverged(self, loss: float) -> None:
        cfg = self.config
        self._write_metrics({"step": self.step + 1, "loss": None, "lr": self._lr, "diverged": True})
        last = self.out_dir / LAST
        saved, where = None, "no checkpoint was saved before it"
        if (last / "trainer_state.json").is_file():
            saved, where = last, f"the last good checkpoint is {last}"
            with contextlib.suppress(ValueError, OSError, KeyError):
                saved_step = json.loads((last / "trainer_state.json").read_text())["step"]
                where = f"the last good checkpoint is {last} (step {saved_step})"
        self._write_plot()
        raise TrainingDiverged(
            f"the training loss became {loss} at step {self.step + 1}; stopped before that "
            f"update, without saving: {where}. Lower the learning rate (lr={cfg.lr:g}) or "
            f"clip gradients (grad_clip={cfg.grad_clip})",
            step=self.step,
            checkpoint=saved,
        )

    def _write_plot(self) -> Path | None:
        if not self.metrics_path.is_file():
            return None
        rows = read_metrics(self.metrics_path)
        if not rows:
            return None
        title = f"NumpyGPT · {self.step} steps"
        return plot_metrics(rows, self.out_dir / PLOT_FILE, title=title)

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

    def _note(self, message: str) -> None:
        self.notes.append(message)
        if self._log_fn is not None:
            self._log_fn(message)
        else:
            from tqdm import tqdm

            tqdm.write(message, file=sys.stderr)

    def _progress_bar(self):  # noqa: ANN202
        if not self.config.progress:
            return None
        from tqdm import tqdm

        return tqdm(
            total=self.config.max_iters,
            initial=self.step,
            desc="train (numpy)",
            unit="step",
            dynamic_ncols=True,
            file=sys.stderr,
        )

    @contextlib.contextmanager
    def _sigint_deferred(self):  # noqa: ANN202
        """The first Ctrl-C stops the loop after this step (and saves); a second one now."""
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


def _resolve_language(language: Any, data: Any) -> Any:
    from scratchllm.data.languages import FAMILIES, get

    if language is None:
        source = str(getattr(data.meta, "source", ""))
        if source.split(":", 1)[0] in FAMILIES:
            with contextlib.suppress(ValueError, TypeError):
                return get(source)
        return None
    return get(language) if isinstance(language, str) else language


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics logged after the checkpoint being resumed (they will be redone)."""
    if not path.is_file():
        return
    rows = [r for r in read_metrics(path) if r.get("step", 0) <= step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)
