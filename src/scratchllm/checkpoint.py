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

**Nothing is unpickled.** Tensors are safetensors, everything else JSON; RNG states are
written as integer lists. Loading a checkpoint cannot run code.

**Atomic.** A checkpoint is first written in full to a temporary sibling directory and
flushed to disk (fsync), then swapped in with two renames::

    last/ -> .last.old/      (1)
    .last.tmp/ -> last/      (2), then .last.old/ is deleted

A crash (even SIGKILL) at any moment leaves a complete checkpoint: before (1) ``last/``
is the old one; between (1) and (2) only ``.last.old/`` exists and every reader puts it
back (``recover``); after (2) ``last/`` is the new one.

>>> path = save_checkpoint("run/last", model, tokenizer)           # doctest: +SKIP
>>> ckpt = load_checkpoint("run")                                  # doctest: +SKIP
>>> ckpt.model, ckpt.tokenizer, ckpt.path                          # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scratchllm import __version__
from scratchllm.models.base import LanguageModel
from scratchllm.tokenizers.base import Tokenizer

# The run directory's layout (module docstring): what readers of a run look for.
LAST = "last"
BEST = "best"
DATA_DIR = "data"
STATE_JSON = "trainer_state.json"
STATE_TENSORS = "trainer_state.safetensors"
STATE_FORMAT = 1


# -- finding checkpoints -----------------------------------------------------------------------


def recover(directory: str | Path) -> Path:
    """Finish a swap a crash interrupted: put ``.NAME.old`` back as ``NAME`` if ``NAME`` is
    missing, and delete stale temporary directories. Returns ``directory``."""
    directory = Path(directory)
    old, tmp = _old_path(directory), _tmp_path(directory)
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

    >>> find_checkpoint("out")            # doctest: +SKIP
    PosixPath('out/last')
    """
    if which not in (LAST, BEST):
        raise ValueError(f"which ({which!r}) must be {LAST!r} or {BEST!r}")
    path = Path(path)
    if not path.exists() and not _old_path(path).exists():
        raise FileNotFoundError(f"{path}: no such checkpoint or run directory")
    recover(path)
    if (path / "config.json").is_file():
        return path
    sub = recover(path / which)
    if (sub / "config.json").is_file():
        return sub
    raise FileNotFoundError(
        f"{path}: no checkpoint here (no config.json in {path} or {sub}); "
        "pass a run directory written by `scratchllm train` or a checkpoint directory"
    )


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
) -> Path:
    """Write a checkpoint directory atomically (see the module docstring).

    ``model`` must be a ``scratchllm.models.LanguageModel`` (it writes config.json and
    model.safetensors). With ``state`` (a JSON-able dict: step, data position, config,
    ...) the trainer state is written too, together with the optimizer's state and the
    python, numpy and torch RNG states of this process, everything ``resume`` needs.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    recover(directory)
    tmp = _tmp_path(directory)
    tmp.mkdir()
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
        if torch_state and "rng.torch" in self.tensors:  # (a NumPy engine run saves none)
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
    truncated or corrupt one, or a tokenizer whose vocabulary does not match the model
    (``ValueError``).
    """
    from scratchllm.models import load as load_model
    from scratchllm.tokenizers import TOKENIZER_FILE
    from scratchllm.tokenizers import load as load_tokenizer

    directory = find_checkpoint(path, which)
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
    if "rng.torch" not in tensors and state.get("engine") != "numpy":  # NumPy runs have none
        raise ValueError(f"{tfile}: no torch RNG state in it; the file is not a trainer state")
    return state, tensors


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
