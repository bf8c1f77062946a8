"""A training run on the NumPy engine: what ``scratchllm train --engine numpy`` does.

The same run as ``scratchllm.training.run``'s, with ``NumpyTrainer`` in the Trainer's
place: the same settings and ``train.toml``, the same ``out/data`` (``data.prepare``), the
same run directory, and no torch imported on the way::

    >>> run = train_run("runs/np", {"data": "cats.txt", "max_iters": 200})   # doctest: +SKIP
    >>> run.result.best_val_loss, run.result.checkpoint                      # doctest: +SKIP

``init_from`` starts the model from a checkpoint of either engine (the files are the
same), so one set of weights trains on both and the two ``metrics.jsonl`` can be held
side by side. What only PyTorch has is refused with the flag's name: another model family,
``pos rope``, ``norm rmsnorm``, ``ffn moe``, ``compile``, ``bf16``, an accelerator device
and torchrun.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scratchllm.numpy_gpt.checkpoint import load_checkpoint
from scratchllm.numpy_gpt.model import SUPPORTED, NumpyGPT
from scratchllm.numpy_gpt.trainer import NumpyTrainer
from scratchllm.training.run import (
    Run,
    arch_change,
    locked,
    resolve_run_settings,
    say_model,
    start_run,
    word2vec_embeddings,
)
from scratchllm.training.settings import SETTINGS_FILE, model_config, train_config, write_settings

ENGINE = "numpy"


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
    """``scratchllm.training.run.train_run`` on the NumPy engine (``values`` need not say
    ``engine = "numpy"``: this function is that engine)."""
    values = {**(values or {}), "engine": ENGINE}
    settings = resolve_run_settings(out, values, preset=preset, config=config, resume=resume)
    return train_from_settings(settings, out, resume=resume, force=force, say=say)


def check_settings(settings: dict[str, Any]) -> None:
    """Refuse, naming the flag, every setting the NumPy engine does not implement."""
    if settings.get("engine") != ENGINE:
        raise ValueError(
            f"engine {settings.get('engine')!r}: this is the NumPy engine's run; use "
            "scratchllm.training.run for the PyTorch one"
        )
    fix = "drop it or train with --engine torch"
    if settings["model"] != "gpt":
        model = settings["model"]
        raise ValueError(f"--model {model}: --engine numpy trains GPT models only; {fix}")
    for key, choices in SUPPORTED.items():
        value = settings.get(key)
        if value is not None and value not in choices:
            raise ValueError(
                f"--{key} {value}: the NumPy GPT implements --{key} {' or '.join(choices)}; {fix}"
            )
    if settings.get("compile"):
        raise ValueError(f"--compile: torch.compile is PyTorch's; the NumPy engine has none; {fix}")
    if settings.get("bf16"):
        raise ValueError(f"--bf16: NumPy has no bfloat16 (this engine trains in float32); {fix}")
    device = str(settings.get("device") or "auto")
    if device.split(":", 1)[0] not in ("auto", "cpu"):
        raise ValueError(f"--device {device}: the NumPy engine runs on the CPU; use --device cpu")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError(
            "torchrun: the NumPy engine trains in one process; launch it without torchrun "
            "(or train with --engine torch for data-parallel training)"
        )


def train_from_settings(
    settings: dict[str, Any],
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    say: Callable[[str], None] = print,
) -> Run:
    """Prepare the data, build (or restore, or start from ``init_from``) the NumPy GPT and
    train it into ``out`` with ``NumpyTrainer``; ``settings`` come resolved
    (``training.run.resolve_run_settings``)."""
    out = Path(out)
    check_settings(settings)
    with locked(out, say):  # one writer per run directory, as with PyTorch
        return _train_locked(settings, out, resume, force, say)


def _train_locked(
    settings: dict[str, Any],
    out: Path,
    resume: bool,
    force: bool,
    say: Callable[[str], None],
) -> Run:
    settings, init, vectors, data = start_run(settings, out, resume, force, say, load_checkpoint)
    tok, ds = data.tokenizer, data.dataset
    mcfg = model_config(settings, tok.vocab_size)
    tcfg = train_config(settings, out, has_model_block=True)
    if resume:
        trainer = NumpyTrainer.resume(out, ds, tcfg, data.language, log=say)
        if trainer.model.config != mcfg:
            raise ValueError(arch_change(trainer.model.config, mcfg, out))
    else:
        params = None if init is None else init.model.params  # names and shapes as mcfg's
        model = NumpyGPT(mcfg, params, seed=tcfg.seed)
        if vectors is not None:
            wte = model.params["transformer.wte.weight"]  # a tied head is this array
            wte[...] = word2vec_embeddings(vectors, settings, tok, wte, say)
        trainer = NumpyTrainer(model, ds, tcfg, tok, data.language, log=say)
    model = trainer.model
    n_params = model.num_parameters()
    say_model(say, type(model).__name__, mcfg, n_params, settings, tcfg, trainer.block_size)
    out.mkdir(parents=True, exist_ok=True)
    write_settings(out / SETTINGS_FILE, settings)
    result = trainer.train()
    return Run(settings, out, data, model, result, tcfg)  # type: ignore[arg-type]
