"""Checkpoints: a directory a person can read, written atomically, resumed exactly.

This is the one reader and writer of checkpoints: training writes them, and ``sample``,
``eval``, ``inspect`` and the study read them through ``load_checkpoint``. It knows models
and tokenizers, nothing of training: the trainer state is a JSON dict plus tensors.

A run directory holds the latest checkpoint, the best one, and the run's records::

    out/
      train.toml                     the settings of `scratchllm train` (training.settings)
      data/                          the tokenized corpus, a TokenDataset (data.prepare)
      last/                          the latest checkpoint (resume from here)
        config.json                  model family + hyperparameters + scratchllm version
        model.safetensors            the weights
        tokenizer.json               the tokenizer the data was made with
        trainer_state.json           step, schedule position, data position, RNG states
                                     (python, numpy, the data generator), the TrainConfig,
                                     the optimizer's hyperparameters
        trainer_state.safetensors    optimizer moments and torch RNG states (tensors)
      best/                          the weights with the lowest validation loss so far
      metrics.jsonl                  one JSON object per logged step
      loss.png                       training and validation loss

**Adapter checkpoints** (LoRA / QLoRA fine-tuning) hold the adapter alone, in peft's
layout, and what is needed to rebuild the model it was trained on::

    last/
      adapter_config.json, adapter_model.safetensors    the adapters (models.lora)
      base.json                     the base checkpoint's path and sha256, its vocabulary
                                    size, and its NF4 settings when it was held in 4 bits
      added_tokens.safetensors      rows of tokens the base lacked (a chat template's)
      tokenizer.json, chat_template.json, trainer_state.*

``load_checkpoint`` reads them like any other: the base, grown by the added rows,
quantized if it was, with the adapters applied (``load_adapter_checkpoint``).

**Nothing is unpickled.** Tensors are safetensors, everything else JSON; RNG states are
written as integer lists. Loading a checkpoint cannot run code.

**Atomic.** A checkpoint is first written in full to a temporary sibling directory and
flushed to disk (fsync), then swapped in with two renames::

    last/ -> .last.old/      (1)
    .last.tmp/ -> last/      (2), then .last.old/ is deleted

A crash (even SIGKILL) at any moment leaves a complete checkpoint: before (1) ``last/``
is the old one; between (1) and (2) only ``.last.old/`` exists and the next reader puts
it back (``recover``); after (2) ``last/`` is the new one.

**One writer, many readers.** A writer holds the run directory's lock
(``scratchllm.files.run_lock``). While it is at work, readers change nothing in the
directory: one that finds itself between (1) and (2) reads ``.last.old/`` and, if that
vanishes under it, reads again.

>>> path = save_checkpoint("run/last", model, tokenizer)           # doctest: +SKIP
>>> ckpt = load_checkpoint("run")                                  # doctest: +SKIP
>>> ckpt.model, ckpt.tokenizer, ckpt.path                          # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scratchllm import __version__
from scratchllm.device import resolve_device
from scratchllm.files import lock_holder
from scratchllm.models.base import LanguageModel
from scratchllm.tokenizers.base import Tokenizer

# The run directory's layout (module docstring): what readers of a run look for.
LAST = "last"
BEST = "best"
DATA_DIR = "data"
STATE_JSON = "trainer_state.json"
STATE_TENSORS = "trainer_state.safetensors"
STATE_FORMAT = 1
BASE_FILE = "base.json"  # an adapter checkpoint: where its base is
ADDED_ROWS_FILE = "added_tokens.safetensors"  # an adapter checkpoint: rows the base lacked
# QLoRA keeps the layers indexed by token id dense (their added rows train; GPT's head is
# the embedding table): quantize_model's skip, the same when training and when loading.
QLORA_DENSE = ("lm_head", "direct")


# -- finding checkpoints -----------------------------------------------------------------------


def recover(directory: str | Path) -> Path:
    """Finish a swap a crash interrupted: put ``.NAME.old`` back as ``NAME`` if ``NAME`` is
    missing, and delete stale temporary directories. Returns ``directory``.

    Nothing is touched while another process writes the run (it holds the run's lock): its
    ``.NAME.tmp`` is a save in progress, not debris."""
    directory = Path(directory)
    old, tmp = _old_path(directory), _tmp_path(directory)
    if _writer_elsewhere(directory.parent):
        return directory
    if not directory.exists() and old.is_dir():
        old.replace(directory)
    elif old.exists():
        shutil.rmtree(old, ignore_errors=True)
    if tmp.exists():
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def find_checkpoint(path: str | Path, which: str = LAST) -> Path:
    """The checkpoint directory ``path`` names: ``path`` itself if it holds a model
    (``config.json``), else the run directory's ``last/`` (or ``best/`` with
    ``which="best"``).

    Asking for ``best`` of a checkpoint directory other than a ``best/`` is an error (it
    has no ``best/`` of its own; its run directory has).

    >>> find_checkpoint("out")            # doctest: +SKIP
    PosixPath('out/last')
    """
    if which not in (LAST, BEST):
        raise ValueError(f"which ({which!r}) must be {LAST!r} or {BEST!r}")
    path = given = Path(path)
    if not path.exists() and not _old_path(path).exists():
        raise FileNotFoundError(f"{path}: no such checkpoint or run directory")
    recover(path)
    if not path.exists() and _holds_model(_old_path(path)):
        path = _old_path(path)  # mid-swap while its writer works: the complete old copy
    if _holds_model(path):
        if which == BEST and given.name != BEST:
            run = run_directory(given)
            hint = f"pass the run directory {run} with --best, or " if run != given else ""
            raise ValueError(
                f"--best: {given} is a checkpoint directory, not a run directory, so it has "
                f"no best/ to choose; {hint}drop --best to use {given} itself"
            )
        return path
    sub = recover(path / which)
    if not sub.exists() and _holds_model(_old_path(sub)):
        sub = _old_path(sub)
    if _holds_model(sub):
        return sub
    raise FileNotFoundError(
        f"{path}: no checkpoint here (no config.json in {path} or {sub}); "
        "pass a run directory written by `scratchllm train` or a checkpoint directory"
    )


def _holds_model(directory: Path) -> bool:
    return (directory / "config.json").is_file() or (directory / BASE_FILE).is_file()


def run_directory(checkpoint: str | Path) -> Path:
    """The run directory a checkpoint directory belongs to: the parent of ``last/`` or
    ``best/``, else the directory itself.

    >>> run_directory("runs/x/best"), run_directory("runs/x")
    (PosixPath('runs/x'), PosixPath('runs/x'))
    """
    path = Path(checkpoint)
    return path.parent if path.name in (LAST, BEST) else path


# -- writing --------------------------------------------------------------------------------


def save_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    tokenizer: Tokenizer | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    state: dict[str, Any] | None = None,
    *,
    files: Callable[[Path], None] | None = None,
) -> Path:
    """Write a checkpoint directory atomically (see the module docstring).

    ``model`` must be a ``scratchllm.models.LanguageModel`` (it writes config.json and
    model.safetensors). With ``state`` (a JSON-able dict: step, data position, config,
    ...) the trainer state is written too, together with the optimizer's state and the
    python, numpy and torch RNG states of this process, everything ``resume`` needs.
    ``files(directory)``, when given, writes the model's files instead of ``model.save``
    and ``tokenizer.save`` (a fine-tuning run: the weights and its chat template, or a
    LoRA adapter and the reference to its base: ``save_adapter_checkpoint``); it writes
    into the temporary directory, so its files are swapped in with the rest.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    recover(directory)
    tmp = _tmp_path(directory)
    tmp.mkdir()
    if files is not None:
        files(tmp)
    else:
        model.save(tmp)
        if tokenizer is not None:
            tokenizer.save(tmp)
    if state is not None:
        meta, tensors = _trainer_state(state, optimizer)
        from safetensors.torch import save_file

        save_file(tensors, str(tmp / STATE_TENSORS), metadata={"format": str(STATE_FORMAT)})
        (tmp / STATE_JSON).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    for f in tmp.iterdir():
        _fsync(f)
    _fsync(tmp)
    # The swap: two renames, each atomic; a reader finishes an interrupted one (recover).
    old = _old_path(directory)
    if directory.exists():
        directory.replace(old)
    tmp.replace(directory)
    _fsync(directory.parent)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def _trainer_state(
    state: dict[str, Any], optimizer: torch.optim.Optimizer | None
) -> tuple[dict, dict[str, torch.Tensor]]:
    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state(legacy=False)
    np_state["state"]["key"] = np_state["state"]["key"].tolist()
    py_version, py_internal, py_gauss = random.getstate()
    meta = {
        "format": STATE_FORMAT,
        "scratchllm_version": __version__,
        **state,
        "rng": {
            "python": [py_version, list(py_internal), py_gauss],
            "numpy": np_state,
        },
    }
    if optimizer is not None:
        sd = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for pid, pstate in sd["state"].items():
            for key, value in pstate.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous()
                else:
                    scalars.setdefault(str(pid), {})[key] = value
        meta["optimizer"] = {
            "class": type(optimizer).__name__,
            "param_groups": _jsonable(sd["param_groups"]),
            "scalars": scalars,
        }
    return meta, tensors


# -- reading --------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model, its tokenizer and (if saved) the trainer state."""

    path: Path
    model: LanguageModel
    tokenizer: Tokenizer | None
    state: dict[str, Any] | None = None  # trainer_state.json, or None for weights only
    tensors: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def step(self) -> int:
        return int(self.state["step"]) if self.state else 0

    def restore_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Load the saved optimizer state into ``optimizer`` (built for the same model)."""
        saved = (self.state or {}).get("optimizer")
        file = self.path / STATE_JSON
        if saved is None:
            raise ValueError(f"{file}: no optimizer state saved (not a resumable checkpoint)")
        groups = saved["param_groups"]
        if len(groups) != len(optimizer.param_groups) or any(
            len(g["params"]) != len(h["params"]) for g, h in zip(groups, optimizer.param_groups)
        ):
            raise ValueError(
                f"{file}: the saved optimizer has parameter groups of sizes "
                f"{[len(g['params']) for g in groups]}, the model's "
                f"{[len(g['params']) for g in optimizer.param_groups]}; "
                "resume with the model configuration the run was started with"
            )
        for g in groups:
            if "betas" in g:
                g["betas"] = tuple(g["betas"])
        state: dict[int, dict[str, Any]] = {}
        for key, value in self.tensors.items():
            if key.startswith("optim."):
                _, pid, name = key.split(".", 2)
                state.setdefault(int(pid), {})[name] = value
        for pid, values in saved.get("scalars", {}).items():
            state.setdefault(int(pid), {}).update(values)
        try:
            optimizer.load_state_dict({"state": state, "param_groups": groups})
        except (ValueError, KeyError, RuntimeError) as e:
            file = self.path / STATE_TENSORS
            raise ValueError(f"{file}: optimizer state does not fit ({e})") from None

    def restore_rng(self, torch_state: bool = True) -> None:
        """Put the python, numpy and (with ``torch_state``) torch RNGs back as saved."""
        rng = (self.state or {}).get("rng")
        if rng is None:
            raise ValueError(f"{self.path / STATE_JSON}: no RNG state saved")
        version, internal, gauss = rng["python"]
        random.setstate((version, tuple(internal), gauss))
        np_state = dict(rng["numpy"])
        np_state["state"] = dict(np_state["state"], key=np.asarray(np_state["state"]["key"]))
        np.random.set_state(np_state)
        if torch_state:
            if "rng.torch" not in self.tensors:
                raise ValueError(
                    f"{self.path / STATE_TENSORS}: no torch RNG state (rng.torch) saved; "
                    "was the checkpoint written by the NumPy engine?"
                )
            torch.set_rng_state(self.tensors["rng.torch"])
            cuda = [self.tensors[k] for k in sorted(self.tensors) if k.startswith("rng.cuda.")]
            if cuda and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


def load_checkpoint(
    path: str | Path,
    device: str | torch.device = "cpu",
    which: str = LAST,
    require_tokenizer: bool = True,
) -> Checkpoint:
    """Read a checkpoint (or a run directory's ``last/`` / ``best/``).

    Every problem is an error naming the file: a missing one (``FileNotFoundError``), a
    truncated or corrupt one, weights that are not finite or do not fit the config, or a
    tokenizer whose vocabulary does not match the model (``ValueError``). ``device`` is
    checked first (``resolve_device``). A checkpoint swapped in by its run's writer while
    it was being read is read again.
    """
    device = resolve_device(device)
    for attempt in range(_READ_ATTEMPTS):
        try:
            return _load(path, device, which, require_tokenizer)
        except (OSError, ValueError):
            p = Path(path)
            if attempt == _READ_ATTEMPTS - 1 or not _writer_elsewhere(p, p.parent):
                raise
            time.sleep(0.1 * (attempt + 1))  # its writer is swapping it: read the new one
    raise AssertionError("unreachable")


_READ_ATTEMPTS = 4


def _writer_elsewhere(*directories: Path) -> bool:
    """Whether another live process holds the lock of one of these run directories."""
    for d in directories:
        holder = lock_holder(d)
        if holder is not None and holder.get("pid") != os.getpid():
            return True
    return False


def _load(
    path: str | Path, device: torch.device, which: str, require_tokenizer: bool
) -> Checkpoint:
    from scratchllm.models import load as load_model
    from scratchllm.tokenizers import TOKENIZER_FILE
    from scratchllm.tokenizers import load as load_tokenizer

    directory = find_checkpoint(path, which)
    if (directory / BASE_FILE).is_file():
        model = load_adapter_checkpoint(directory, device)
    else:
        model = load_model(directory, device=device)
    tokenizer = None
    tok_file = directory / TOKENIZER_FILE
    if tok_file.is_file():
        tokenizer = load_tokenizer(tok_file)
        if tokenizer.vocab_size != model.vocab_size:
            n, m = tokenizer.vocab_size, model.vocab_size
            raise ValueError(
                f"{tok_file}: the tokenizer has {n} tokens but the model in {directory} has "
                f"vocab_size {m} ({TOKENIZER_FILE} has {n} tokens, config.json says {m}); it "
                "is not the tokenizer the model was trained with: save that one beside it"
            )
    elif require_tokenizer:
        raise FileNotFoundError(
            f"{tok_file}: missing; a checkpoint needs the tokenizer its model was trained with"
        )
    state, tensors = None, {}
    if (directory / STATE_JSON).exists() or (directory / STATE_TENSORS).exists():
        state, tensors = read_trainer_state(directory)
    return Checkpoint(directory, model, tokenizer, state, tensors)


def read_trainer_state(directory: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(trainer_state.json as a dict, trainer_state.safetensors as tensors)``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    file = directory / STATE_JSON
    if not file.is_file():
        raise FileNotFoundError(f"{file}: missing (the checkpoint has no trainer state)")
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{file}: corrupt or truncated trainer state ({e})") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise ValueError(f"{file}: not a scratchllm trainer state (no integer 'step')")
    if state.get("format") != STATE_FORMAT:
        raise ValueError(
            f"{file}: trainer state format {state.get('format')!r}; this scratchllm reads "
            f"{STATE_FORMAT}"
        )
    tfile = directory / STATE_TENSORS
    if not tfile.is_file():
        raise FileNotFoundError(f"{tfile}: missing (optimizer and RNG tensors)")
    try:
        tensors = load_file(str(tfile))
    except (SafetensorError, OSError, RuntimeError, ValueError) as e:
        raise ValueError(f"{tfile}: corrupt or truncated ({e})") from None
    return state, tensors  # (no rng.torch in a NumPy engine's state: it has no torch RNG)


# -- adapter checkpoints ----------------------------------------------------------------------


@dataclass(frozen=True)
class BaseReference:
    """What an adapter checkpoint needs to rebuild the model its adapters were trained on."""

    path: str  # the base checkpoint directory (config.json, model.safetensors), absolute
    sha256: str  # of its model.safetensors: a base changed since is refused
    vocab_size: int  # the base's; tokens after it have their rows in ADDED_ROWS_FILE
    quantization: dict[str, Any] | None = None  # NF4Config fields: the base held in 4 bits

    @classmethod
    def of(
        cls, checkpoint: str | Path, quantization: dict[str, Any] | None = None
    ) -> BaseReference:
        """The reference to the (plain) checkpoint directory ``checkpoint``."""
        from scratchllm.models.base import read_config

        directory = Path(checkpoint).resolve()
        if (directory / BASE_FILE).is_file():
            raise ValueError(
                f"{directory} is itself an adapter checkpoint; merge it first "
                "(scratchllm finetune merge) and train adapters on the merged model"
            )
        _, config = read_config(directory)
        digest = _sha256(directory / "model.safetensors")
        return cls(str(directory), digest, int(config.vocab_size), quantization)


def save_adapter_checkpoint(directory: str | Path, model: torch.nn.Module, base: BaseReference):
    """Write ``model``'s adapters (``models.lora.save_adapter``), ``base.json`` and the rows
    of the tokens its vocabulary has beyond the base's into ``directory``."""
    from safetensors.torch import save_file

    from scratchllm.files import write_json
    from scratchllm.models.lora import save_adapter
    from scratchllm.models.vocab import vocab_parameters

    directory = Path(directory)
    save_adapter(model, directory)
    if model.config.vocab_size > base.vocab_size:
        rows = {
            name: p.detach()[base.vocab_size : model.config.vocab_size].contiguous().cpu()
            for name, p in vocab_parameters(model).items()
        }
        save_file(rows, str(directory / ADDED_ROWS_FILE))
    meta = {
        "format": "scratchllm-adapter-base",
        "base": base.path,
        "sha256": base.sha256,
        "vocab_size": base.vocab_size,
        "quantization": base.quantization,
        "family": model.family,
    }
    write_json(directory / BASE_FILE, meta)
    return directory


def read_base_reference(directory: str | Path) -> BaseReference:
    """The ``BaseReference`` of an adapter checkpoint (its ``base.json``)."""
    file = Path(directory) / BASE_FILE
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
        ref = BaseReference(
            meta["base"], meta["sha256"], int(meta["vocab_size"]), meta.get("quantization")
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{file}: not a readable adapter base reference ({e})") from None
    return ref


def load_adapter_checkpoint(directory: str | Path, device: str | torch.device = "cpu"):
    """The model of an adapter checkpoint: its base (checked against the sha256 it was
    trained on), grown by the added tokens' rows, held in NF4 if it was, adapters applied."""
    from safetensors.torch import load_file

    from scratchllm.models import load as load_model
    from scratchllm.models.lora import load_adapter
    from scratchllm.models.nf4 import NF4Config, quantize_model
    from scratchllm.models.vocab import grow_vocab, vocab_parameters

    directory = Path(directory)
    ref = read_base_reference(directory)
    base = Path(ref.path)
    weights = base / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(
            f"{directory / BASE_FILE}: its base checkpoint {base} is gone; the adapter in "
            f"{directory} needs it (put it back, or merge the adapter where the base exists)"
        )
    if _sha256(weights) != ref.sha256:
        raise ValueError(
            f"{directory}: the base checkpoint {base} has changed since the adapter was "
            "trained on it (its model.safetensors has another sha256); the adapter only fits "
            "the weights it was trained with"
        )
    model = load_model(base, device=device)
    rows_file = directory / ADDED_ROWS_FILE
    if rows_file.is_file():
        rows = load_file(str(rows_file))
        k = next(iter(rows.values())).shape[0]
        grow_vocab(model, ref.vocab_size + k)  # as training grew it; the rows are overwritten
        params = vocab_parameters(model)
        if set(rows) != set(params):
            raise ValueError(f"{rows_file}: holds {sorted(rows)}, the base needs {sorted(params)}")
        with torch.no_grad():
            for name, value in rows.items():
                params[name][ref.vocab_size :].copy_(value)
    if ref.quantization is not None:
        quantize_model(model, NF4Config(**ref.quantization), skip=QLORA_DENSE)
    return load_adapter(model, directory).to(device).eval()


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- helpers --------------------------------------------------------------------------------


def _tmp_path(directory: Path) -> Path:
    return directory.with_name(f".{directory.name}.tmp")


def _old_path(directory: Path) -> Path:
    return directory.with_name(f".{directory.name}.old")


def _fsync(path: Path) -> None:
    """Flush a file (or a directory's entries) to disk; a no-op where unsupported."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:  # e.g. directories cannot be opened on Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return value
