"""A training run from settings: what ``scratchllm train`` (and ``demo``) does.

``train_run(out, values)`` resolves the settings (``resolve_run_settings``: defaults, a
preset, a TOML file, ``values``; on resume the run's saved ones first), prepares the data
into ``out/data`` (``data.prepare``), builds the model (``models.build``), restores it
from ``out/last`` or starts it from another checkpoint's weights (``init_from``), and
trains it with the ``Trainer``. The run directory it leaves::

    out/train.toml      the resolved settings (``--config out/train.toml`` repeats the run)
    out/data/           the tokenized corpus (a TokenDataset) and its tokenizer
    out/last/, best/    checkpoints written by the Trainer (resume from last/)
    out/metrics.jsonl   one JSON object per logged step; out/loss.png the loss curve
    out/.lock           while it runs: the one writer (``scratchllm.files.run_lock``)

A run directory has one writer: ``train_from_settings`` holds its lock from the first
file it writes to the last. On resume, what would make the run another run is refused:
the data (``--data``, ``--samples``, ``--data-seed``, ``--val-fraction``), the tokenizer, the
engine and the model; a changed schedule is allowed and said (``Trainer.resume``).

>>> run = train_run("runs/cats", {"data": "cats.txt", "max_iters": 200})   # doctest: +SKIP
>>> run.result.best_val_loss, run.result.checkpoint                        # doctest: +SKIP

This is the PyTorch engine's run. The NumPy engine's (``engine = "numpy"``) is
``scratchllm.numpy_gpt.run``, a layer above: it shares the settings, the data preparation
and the helpers at the end of this module, none of which imports torch (torch is imported
where a model is built).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scratchllm.data.prepare import PreparedData, prepare_data
from scratchllm.training.settings import (
    BY_KEY,
    MODEL_KEYS,
    SETTINGS_FILE,
    data_config,
    family_has,
    model_config,
    resolve_settings,
    saved_settings,
    train_config,
    write_settings,
)

if TYPE_CHECKING:
    from scratchllm.configs import TrainConfig
    from scratchllm.models.base import LanguageModel
    from scratchllm.training.trainer import TrainResult
    from scratchllm.word2vec import SavedWord2Vec

# The run directory's layout, as scratchllm.checkpoint names it (that module imports torch).
LAST, DATA_DIR = "last", "data"

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
    train_config: TrainConfig | None = None  # the Trainer's (next_commands reads it)
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
    them; the tokenizer and the engine cannot change). ``force`` starts a new run over one
    already there. ``say`` receives the lines the command prints while it prepares.
    """
    settings = resolve_run_settings(out, values, preset=preset, config=config, resume=resume)
    return train_from_settings(settings, out, resume=resume, force=force, say=say)


def resolve_run_settings(
    out: str | Path,
    values: dict[str, Any] | None = None,
    *,
    preset: str | None = None,
    config: str | Path | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """The settings of a run (``resolve_settings``; with ``resume`` over the run's saved
    ones), refusing what cannot change on resume and a tokenizer given with ``init_from``.
    Torch-free: ``settings["engine"]`` says which ``train_from_settings`` runs them."""
    out = Path(out)
    values = dict(values or {})
    saved = saved_settings(out) if resume else None
    if saved is not None:  # (a changed model setting is caught against the checkpoint)
        for key in ("tokenizer", "vocab_size", "engine"):
            if key in values and values[key] != saved.get(key, BY_KEY[key].default):
                fix = {
                    "engine": "; to go on in the other engine, start a new run from this "
                    f"one's weights: --init-from {out} --engine {values[key]} --out NEW_DIR",
                }.get(key, "; the checkpoint's tokenizer is used")
                raise ValueError(
                    f"--resume: --{key.replace('_', '-')} cannot change (the run in {out} used "
                    f"{saved.get(key, BY_KEY[key].default)!r}){fix}"
                )
    settings = resolve_settings(values, preset=preset, config=config, saved=saved)
    if saved is not None:
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
    if settings.get("init_embeddings") and not resume:
        where = f"--init-embeddings {settings['init_embeddings']}"
        if settings.get("init_from"):
            raise ValueError(
                f"{where}: --init-from already gives the model its embeddings; use one of them"
            )
        if settings["model"] != "gpt":
            model = settings["model"]
            raise ValueError(f"{where}: sets a GPT's token embeddings, not --model {model}'s")
        if settings["tokenizer"] in ("char", "bpe"):
            raise ValueError(
                f"{where}: word2vec vectors are one per word; train with --tokenizer word "
                f"(not --tokenizer {settings['tokenizer']})"
            )
    if settings.get("init_from") and not resume:
        for key in ("tokenizer", "vocab_size"):
            if key in values:
                raise ValueError(
                    f"--init-from {settings['init_from']}: the checkpoint's tokenizer is used "
                    f"(its weights fit no other); drop --{key.replace('_', '-')}"
                )
    return settings


def train_from_settings(
    settings: dict[str, Any],
    out: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    say: Callable[[str], None] = print,
) -> Run:
    """Prepare the data, build (or restore, or start from ``init_from``) the model and
    train it into ``out`` with the PyTorch ``Trainer``, with ``settings`` already
    resolved (``resolve_run_settings``)."""
    from scratchllm.device import resolve_device
    from scratchllm.training import distributed

    out = Path(out)
    if settings.get("engine", "torch") != "torch":
        raise ValueError(
            f"engine {settings['engine']!r}: this is the PyTorch engine's run; the NumPy "
            "engine's is scratchllm.numpy_gpt.run.train_from_settings (or train_run)"
        )
    resolve_device(settings["device"])  # a missing device is one line, before any work
    rank = distributed.detect().rank
    with locked(out, say, rank):
        return _train_locked(settings, out, resume, force, say, rank)


def _train_locked(
    settings: dict[str, Any],
    out: Path,
    resume: bool,
    force: bool,
    say: Callable[[str], None],
    rank: int,
) -> Run:
    import torch

    from scratchllm import models
    from scratchllm.checkpoint import load_checkpoint
    from scratchllm.training.trainer import Trainer

    settings, init, vectors, data = start_run(
        settings, out, resume, force, say, load_checkpoint, rank=rank
    )
    tok, ds = data.tokenizer, data.dataset
    mcfg = model_config(settings, tok.vocab_size)
    tcfg = train_config(settings, out, hasattr(mcfg, "block_size"))
    if resume:
        trainer = Trainer.resume(out, ds, tcfg, data.language, log=say)
        if trainer.model.config != mcfg:
            raise ValueError(arch_change(trainer.model.config, mcfg, out))
        model = trainer.model
    else:
        torch.manual_seed(tcfg.seed)  # the initial weights, before the Trainer reseeds
        model = models.build(settings["model"], **dataclasses.asdict(mcfg))
        if init is not None:
            model.load_state_dict(init.model.state_dict())
        if vectors is not None:
            wte = model.transformer.wte.weight
            table = word2vec_embeddings(vectors, settings, tok, wte.detach().cpu().numpy(), say)
            with torch.no_grad():
                wte.copy_(torch.from_numpy(table))
        trainer = Trainer(model, ds, tcfg, tok, data.language, log=say)
    name = type(model).__name__
    if trainer.counting:
        say(f"model     {name} ({_describe(mcfg)}): counts, no training steps")
    else:
        say_model(say, name, mcfg, model.num_parameters(), settings, tcfg, trainer.block_size)
    out.mkdir(parents=True, exist_ok=True)
    write_settings(out / SETTINGS_FILE, settings)
    result = trainer.train()
    return Run(settings, out, data, model, result, tcfg, trainer.counting)


def locked(out: Path, say: Callable[[str], None], rank: int = 0):  # noqa: ANN201
    """The run directory's writer lock (``files.run_lock``) for rank 0 (other ranks write
    nothing), saying the note a stale lock taken over leaves."""
    from scratchllm.files import run_lock

    if rank != 0:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def hold():  # noqa: ANN202
        with run_lock(out) as lock:
            if lock.note:
                say(f"note      {lock.note}")
            yield lock

    return hold()


def next_commands(run: Run) -> list[tuple[str, str]]:
    """What to do after a run, as ``(command, what it does)``; honest about the schedule:
    an interrupted run resumes as it was, a finished one goes further at its final
    learning rate (a larger max_iters alone would stretch the cosine and raise the rate)."""
    r, out, s = run.result, run.out, run.settings
    engine = " --engine numpy" if s.get("engine") == "numpy" else ""
    cmds = []
    if run.data.language is not None:  # samples start from the separator; measure them
        cmds.append((f"scratchllm sample {out}{engine} --prompt '' --num-samples 5", "samples"))
        cmds.append((f"scratchllm eval {out} --data {shlex.quote(s['data'])}", "measure them"))
    else:
        cmds.append((f"scratchllm sample {out}{engine} --prompt 'The '", "a sample"))
    if r.status == "interrupted":
        cmds.append((f"scratchllm train --out {out} --resume", "finish the run as planned"))
    elif r.status == "early_stopped":
        cmds.append(
            (f"scratchllm sample {out}{engine} --best", f"the best weights (step "
             f"{r.best_step}): the validation loss stopped improving")
        )  # fmt: skip
    elif not run.trainer_counting and run.train_config is not None:
        more = f"scratchllm train --out {out} --resume --max-iters {2 * r.steps}"
        cfg = run.train_config
        if cfg.schedule == "cosine" and cfg.lr_decay_iters is None:
            more += f" --lr-decay-iters {cfg.decay_iters}"
            what = f"{r.steps:,} more steps at the final learning rate ({cfg.min_lr:g})"
        else:
            what = f"{r.steps:,} more steps on the same schedule"
        cmds.append((more, what))
    return cmds


# -- the pieces both engines share (torch-free) ---------------------------------------------------


def start_run(
    settings: dict[str, Any],
    out: Path,
    resume: bool,
    force: bool,
    say: Callable[[str], None],
    load: Callable[..., Any],
    rank: int = 0,
) -> tuple[dict[str, Any], Any | None, SavedWord2Vec | None, PreparedData]:
    """What a run does before it builds its model, with either engine's checkpoint reader
    ``load``: check ``out``, read ``init_from`` (its settings folded in), take the tokenizer
    of the run being resumed or of ``init_from``, read the word2vec vectors (refused before
    anything is written) and prepare the data. Returns ``(settings, init, vectors, data)``."""
    check_out_dir(out, resume, force)
    init = None
    if settings.get("init_from") and not resume:
        init = load(settings["init_from"], require_tokenizer=True)
        settings = init_settings(settings, init.model.config, init.path)
    if resume:
        tokenizer = load(out, require_tokenizer=True).tokenizer
    else:
        tokenizer = init.tokenizer if init is not None else None
    vectors = init_vectors(settings, resume)
    data = prepare_run_data(settings, out, tokenizer, say, rank=rank, resume=resume)
    return settings, init, vectors, data


def prepare_run_data(
    settings: dict[str, Any],
    out: Path,
    tokenizer: Any | None,
    say: Callable[[str], None],
    rank: int = 0,
    resume: bool = False,
) -> PreparedData:
    """``prepare_data`` into ``out/data`` (with ``tokenizer`` when given: a resumed run's
    or ``init_from``'s), and the lines that say what it made."""
    from scratchllm.tokenizers.factory import vocab_shortfall

    t0 = time.perf_counter()
    had_data = (out / DATA_DIR / "meta.json").is_file()
    data = prepare_data(data_config(settings), out / DATA_DIR, tokenizer, rank=rank)
    if resume and had_data and data.n_chars is not None:
        say(
            f"note      {settings['data']} changed since the run prepared it; its tokens are "
            "made again, so the resumed run does not see the batches an unbroken run would"
        )
    m, tok = data.dataset.meta, data.tokenizer
    corpus = f"{data.n_chars:,} characters -> " if data.n_chars else ""
    say(
        f"data      {settings['data']}: {corpus}{m.n_tokens:,} tokens "
        f"({m.n_train:,} train, {m.n_val:,} validation) in {time.perf_counter() - t0:.1f} s"
    )
    short = vocab_shortfall(tok, settings.get("vocab_size"))
    say(f"tokenizer {tok.kind}, {tok.vocab_size:,} tokens" + (f" ({short})" if short else ""))
    return data


def say_model(
    say: Callable[[str], None],
    name: str,
    mcfg: Any,
    n_params: int,
    settings: dict[str, Any],
    tcfg: TrainConfig,
    block_size: int,
) -> None:
    """The model and training lines a run prints before its first step."""
    start = f", from {settings['init_from']}" if settings.get("init_from") else ""
    say(f"model     {name} ({_describe(mcfg)}), {n_params:,} parameters{start}")
    tokens = tcfg.batch_size * tcfg.gradient_accumulation_steps * block_size
    engine = settings.get("engine", "torch")
    say(
        f"training  {tcfg.max_iters:,} steps x {tokens:,} tokens, lr {tcfg.lr:g} "
        f"(warmup {tcfg.warmup_steps}, {tcfg.schedule} to {tcfg.min_lr:g}), "
        f"device {'cpu (NumPy)' if engine == 'numpy' else tcfg.device}"
    )


def init_vectors(settings: dict[str, Any], resume: bool) -> SavedWord2Vec | None:
    """The word2vec vectors a new run's token embeddings start from
    (``settings["init_embeddings"]``), or None; a resumed run has its own weights."""
    if resume or not settings.get("init_embeddings"):
        return None
    from scratchllm.word2vec import load

    return load(settings["init_embeddings"])


def word2vec_embeddings(
    vectors: SavedWord2Vec,
    settings: dict[str, Any],
    tokenizer: Any,
    table: np.ndarray,
    say: Callable[[str], None],
) -> np.ndarray:
    """The token-embedding matrix ``[V, C]`` of a new GPT started from ``vectors``
    (``word2vec.token_embeddings``: each word token gets its word's vector, centred,
    projected to ``C`` and scaled to ``table``'s spread; the other rows stay ``table``'s),
    and a line saying how many tokens got one."""
    from scratchllm.word2vec import token_embeddings

    directory = settings["init_embeddings"]
    if tokenizer.kind != "word":  # a tokenizer directory of another kind
        raise ValueError(
            f"--init-embeddings {directory}: word2vec vectors are one per word; train with "
            f"--tokenizer word (this run's tokenizer is {tokenizer.kind})"
        )
    made = token_embeddings(vectors.vectors, tokenizer, table, seed=settings["seed"])
    d = vectors.vectors.vectors.shape[1]
    how = {"none": "as they are", "pca": "PCA", "orthonormal": "an orthonormal map"}
    say(
        f"embedding {int(made.found.sum()):,} of {tokenizer.vocab_size:,} tokens from "
        f"{directory} ({d} -> {table.shape[1]} wide, {how[made.projection]})"
    )
    return made.matrix


# Settings that may differ from an init_from checkpoint's: they change no weight's shape.
INIT_MAY_CHANGE = ("dropout", "fast")


def init_settings(settings: dict[str, Any], config: Any, path: str | Path) -> dict[str, Any]:
    """``settings`` with the model and tokenizer of the checkpoint at ``path`` (whose model
    config is ``config``): a model setting left at its default becomes the checkpoint's;
    one set to another value is an error naming it (those in ``INIT_MAY_CHANGE`` excepted).
    The tokenizer becomes the checkpoint directory, whose tokenizer.json the data is
    prepared with (so ``train.toml`` repeats the run)."""
    from scratchllm.configs.models import CONFIGS

    values = dataclasses.asdict(config)
    family = next(f for f, cls in CONFIGS.items() if isinstance(config, cls))
    name = values["cell"] if family == "rnn" else family
    where = f"--init-from {settings['init_from']}"
    out = dict(settings)
    if out["model"] not in (name, BY_KEY["model"].default):
        given = out["model"]
        raise ValueError(f"{where}: the checkpoint holds a {name} model, not --model {given}")
    out["model"] = name
    wrong = []
    for key in MODEL_KEYS:
        if key not in values or not family_has(name, key):
            continue
        given, default, saved = out.get(key), BY_KEY[key].default, values[key]
        if given is None or given in (default, saved):
            out[key] = saved
        elif key not in INIT_MAY_CHANGE:
            wrong.append(f"--{key.replace('_', '-')} {given} (it has {saved})")
    if wrong:
        raise ValueError(
            f"{where}: the model is the checkpoint's, but {'; '.join(wrong)}; drop those "
            "flags, or train a new model without --init-from"
        )
    out["tokenizer"], out["vocab_size"] = str(path), None
    return out


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


def arch_change(saved: Any, new: Any, out: Path) -> str:
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
