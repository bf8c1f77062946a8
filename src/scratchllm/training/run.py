"""A training run from settings: what ``scratchllm train`` (and ``demo``) does.

``train_run(out, values)`` resolves the settings (``training.settings``: defaults, a
preset, a TOML file, ``values``; on resume the run's saved ones first), prepares the data
into ``out/data`` (``data.prepare``), builds the model (``models.build``) or restores it
from ``out/last``, and trains it with the ``Trainer``. The run directory it leaves::

    out/train.toml      the resolved settings (``--config out/train.toml`` repeats the run)
    out/data/           the tokenized corpus (a TokenDataset) and its tokenizer
    out/last/, best/    checkpoints written by the Trainer (resume from last/)
    out/metrics.jsonl   one JSON object per logged step; out/loss.png the loss curve
    out/.lock           while it runs: the one writer (``scratchllm.files.run_lock``)

A run directory has one writer: ``train_from_settings`` holds its lock from the first
file it writes to the last. On resume, what would make the run another run is refused:
the data (``--data``, ``--samples``, ``--data-seed``, ``--val-fraction``), the tokenizer and
the model; a changed schedule is allowed and said (``Trainer.resume``).

>>> run = train_run("runs/cats", {"data": "cats.txt", "max_iters": 200})   # doctest: +SKIP
>>> run.result.best_val_loss, run.result.checkpoint                        # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scratchllm import models
from scratchllm.checkpoint import DATA_DIR, LAST, load_checkpoint
from scratchllm.configs.train import TrainConfig
from scratchllm.data.prepare import PreparedData, prepare_data
from scratchllm.device import resolve_device
from scratchllm.files import run_lock
from scratchllm.models.base import LanguageModel
from scratchllm.tokenizers.factory import vocab_shortfall
from scratchllm.training import distributed
from scratchllm.training.settings import (
    BY_KEY,
    SETTINGS_FILE,
    data_config,
    model_config,
    resolve_settings,
    saved_settings,
    train_config,
    write_settings,
)
from scratchllm.training.trainer import Trainer, TrainResult

# Settings a resume may not change: they make the data (the tokenizer and the model are
# checked separately, against the checkpoint).
RESUME_FIXED_DATA = ("data", "samples", "data_seed", "val_fraction")


@dataclass
class Run:
    """What a run did: the settings, the data, the model and the result."""

    settings: dict[str, Any]
    out: Path
    data: PreparedData
    model: LanguageModel
    result: TrainResult
    train_config: TrainConfig
    trainer_counting: bool = False  # a counting model (fitted, not trained in steps)


def train_run(
    out: str | Path,
    values: dict[str, Any] | None = None,
    *,
    preset: str | None = None,
    config: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    say: Callable[[str], None] = print,
) -> Run:
    """Train into the run directory ``out`` with the settings ``values`` (keys as the
    flags of ``scratchllm train``, snake_case) over ``preset`` and the TOML file ``config``.

    ``resume`` continues the run in ``out`` with its saved settings (``values`` override
    them; the tokenizer cannot change). ``force`` starts a new run over one already there.
    ``say`` receives the lines the command prints while it prepares.
    """
    out = Path(out)
    values = dict(values or {})
    saved = saved_settings(out) if resume else None
    settings = resolve_settings(values, preset=preset, config=config, saved=saved)
    if saved is not None:  # (a changed model setting is caught against the checkpoint)
        for key in ("tokenizer", "vocab_size", *RESUME_FIXED_DATA):
            was = saved.get(key, BY_KEY[key].default)
            if settings[key] == was:
                continue
            if key in ("tokenizer", "vocab_size"):
                why = "the checkpoint's tokenizer is used"
            else:
                why = (
                    "a resumed run continues on its own data. Drop the setting, or train on "
                    "other data in a new run (another --out)"
                )
            raise ValueError(
                f"--resume: --{key.replace('_', '-')} cannot change (the run in {out} used "
                f"{was!r}, now {settings[key]!r}); {why}"
            )
    return train_from_settings(settings, out, resume=resume, force=force, say=say)


def train_from_settings(
    settings: dict[str, Any],
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    say: Callable[[str], None] = print,
) -> Run:
    """Prepare the data, build (or restore) the model and train it into ``out``, with
    ``settings`` already resolved (``resolve_settings``)."""
    out = Path(out)
    resolve_device(settings["device"])  # a missing device is one line, before any work
    rank = distributed.detect().rank
    with run_lock(out) if rank == 0 else contextlib.nullcontext() as lock:
        if lock is not None and lock.note:
            say(f"note      {lock.note}")
        return _train_locked(settings, out, resume, force, say, rank)


def _train_locked(
    settings: dict[str, Any],
    out: Path,
    resume: bool,
    force: bool,
    say: Callable[[str], None],
    rank: int,
) -> Run:
    check_out_dir(out, resume, force)
    ckpt_tokenizer = load_checkpoint(out, require_tokenizer=True).tokenizer if resume else None
    t0 = time.perf_counter()
    had_data = (out / DATA_DIR / "meta.json").is_file()
    data = prepare_data(data_config(settings), out / DATA_DIR, ckpt_tokenizer, rank=rank)
    if resume and had_data and data.n_chars is not None:
        say(
            f"note      {settings['data']} changed since the run prepared it; its tokens are "
            "made again, so the resumed run does not see the batches an unbroken run would"
        )
    tok, ds = data.tokenizer, data.dataset
    mcfg = model_config(settings, tok.vocab_size)
    tcfg = train_config(settings, out, hasattr(mcfg, "block_size"))
    m = ds.meta
    corpus = f"{data.n_chars:,} characters -> " if data.n_chars else ""
    say(
        f"data      {settings['data']}: {corpus}{m.n_tokens:,} tokens "
        f"({m.n_train:,} train, {m.n_val:,} validation) in {time.perf_counter() - t0:.1f} s"
    )
    short = vocab_shortfall(tok, settings.get("vocab_size"))
    say(f"tokenizer {tok.kind}, {tok.vocab_size:,} tokens" + (f" ({short})" if short else ""))
    if resume:
        trainer = Trainer.resume(out, ds, tcfg, data.language, log=say)
        if trainer.model.config != mcfg:
            raise ValueError(_arch_change(trainer.model.config, mcfg, out))
        model = trainer.model
    else:
        torch.manual_seed(tcfg.seed)  # the initial weights, before the Trainer reseeds
        model = models.build(settings["model"], **dataclasses.asdict(mcfg))
        trainer = Trainer(model, ds, tcfg, tok, data.language, log=say)
    name = type(model).__name__
    if trainer.counting:
        say(f"model     {name} ({_describe(mcfg)}): counts, no training steps")
    else:
        say(f"model     {name} ({_describe(mcfg)}), {model.num_parameters():,} parameters")
        tokens = tcfg.batch_size * tcfg.gradient_accumulation_steps * trainer.block_size
        say(
            f"training  {tcfg.max_iters:,} steps x {tokens:,} tokens, lr {tcfg.lr:g} "
            f"(warmup {tcfg.warmup_steps}, {tcfg.schedule} to {tcfg.min_lr:g}), "
            f"device {tcfg.device}"
        )
    out.mkdir(parents=True, exist_ok=True)
    write_settings(out / SETTINGS_FILE, settings)
    result = trainer.train()
    return Run(settings, out, data, model, result, tcfg, trainer.counting)


def next_commands(run: Run) -> list[tuple[str, str]]:
    """What to do after a run, as ``(command, what it does)``; honest about the schedule:
    an interrupted run resumes as it was, a finished one goes further at its final
    learning rate (a larger max_iters alone would stretch the cosine and raise the rate)."""
    r, out, s = run.result, run.out, run.settings
    cmds = []
    if run.data.language is not None:  # samples start from the separator; measure them
        cmds.append((f"scratchllm sample {out} --prompt '' --num-samples 5", "samples"))
        cmds.append((f"scratchllm eval {out} --data {shlex.quote(s['data'])}", "measure them"))
    else:
        cmds.append((f"scratchllm sample {out} --prompt 'The '", "a sample"))
    if r.status == "interrupted":
        cmds.append((f"scratchllm train --out {out} --resume", "finish the run as planned"))
    elif r.status == "early_stopped":
        cmds.append(
            (f"scratchllm sample {out} --best", f"the best weights (step {r.best_step}): the "
             "validation loss stopped improving")
        )  # fmt: skip
    elif not run.trainer_counting:
        more = f"scratchllm train --out {out} --resume --max-iters {2 * r.steps}"
        cfg = run.train_config
        if cfg.schedule == "cosine" and cfg.lr_decay_iters is None:
            more += f" --lr-decay-iters {cfg.decay_iters}"
            what = f"{r.steps:,} more steps at the final learning rate ({cfg.min_lr:g})"
        else:
            what = f"{r.steps:,} more steps on the same schedule"
        cmds.append((more, what))
    return cmds


def check_out_dir(out: Path, resume: bool, force: bool) -> None:
    """Refuse ``--resume`` without a run in ``out``, and a new run over one without ``force``
    (also what ``scratchllm finetune`` checks)."""
    has_run = (out / LAST).exists() or (out / f".{LAST}.old").exists()
    if resume and not has_run:
        raise FileNotFoundError(
            f"--resume: {out} holds no run to continue (no {out / LAST}); "
            "start one without --resume"
        )
    if not resume and has_run and not force:
        raise FileExistsError(
            f"{out} already holds a run; continue it with --resume, start over in it with "
            "--force, or choose another --out"
        )


def _arch_change(saved: Any, new: Any, out: Path) -> str:
    a, b = dataclasses.asdict(saved), dataclasses.asdict(new)
    diff = [f"{k}: {a[k]!r} -> {b.get(k)!r}" for k in a if a[k] != b.get(k)]
    return (
        f"--resume: the model in {out} cannot change ({'; '.join(diff)}); drop those flags, "
        "or start a new run with --out elsewhere"
    )


def _describe(cfg: Any) -> str:
    keys = ("cell", "n", "n_layer", "n_head", "n_embd", "n_hidden", "block_size", "pos", "norm")
    d = dataclasses.asdict(cfg)
    return ", ".join(f"{k}={d[k]}" for k in keys if k in d)
