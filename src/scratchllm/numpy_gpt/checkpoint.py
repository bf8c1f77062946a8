"""Checkpoints of the NumPy engine: the PyTorch Trainer's directory layout, without torch.

::

    out/
      last/                          the latest checkpoint (resume from here)
        config.json                  model family + GPTConfig + scratchllm version
        model.safetensors            the weights (PyTorch GPT names: either engine loads them)
        tokenizer.json               the tokenizer the data was made with
        trainer_state.json           step, data position, RNG states, TrainConfig, optimizer
                                     hyperparameters (``"engine": "numpy"``)
        trainer_state.safetensors    AdamW moments, named as PyTorch's (optim.{i}.exp_avg, ...)
      best/                          the weights with the lowest validation loss so far
      metrics.jsonl, loss.png

**Atomic**, as ``scratchllm.training.checkpoint``: the checkpoint is written in full to
``.last.tmp/`` and flushed (fsync), then swapped in with two renames (``last/ ->
.last.old/``, ``.last.tmp/ -> last/``); a reader finishes an interrupted swap
(``recover``), so a crash at any moment leaves one complete checkpoint.

Nothing is unpickled: tensors are safetensors, everything else JSON.
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

from scratchllm import __version__
from scratchllm.numpy_gpt.io import load_model, save_model
from scratchllm.numpy_gpt.model import NumpyGPT

LAST = "last"
BEST = "best"
STATE_JSON = "trainer_state.json"
STATE_TENSORS = "trainer_state.safetensors"
STATE_FORMAT = 1
TOKENIZER_FILE = "tokenizer.json"


def _tmp_path(directory: Path) -> Path:
    return directory.with_name(f".{directory.name}.tmp")


def _old_path(directory: Path) -> Path:
    return directory.with_name(f".{directory.name}.old")


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
    """``path`` itself if it holds a model (``config.json``), else its ``last/`` (or
    ``best/``) checkpoint."""
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


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state(dropout_rng: np.random.Generator | None) -> dict[str, Any]:
    """The python, global numpy and dropout generator states, as JSON."""
    np_state = np.random.get_state(legacy=False)
    np_state["state"]["key"] = np_state["state"]["key"].tolist()
    version, internal, gauss = random.getstate()
    out: dict[str, Any] = {"python": [version, list(internal), gauss], "numpy": np_state}
    if dropout_rng is not None:
        out["dropout"] = dropout_rng.bit_generator.state
    return out


def save_checkpoint(
    directory: str | Path,
    model: NumpyGPT,
    tokenizer: Any | None = None,
    optimizer: Any | None = None,
    state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically (see the module docstring).

    With ``state`` (a JSON-able dict: step, data position, config, ...) the trainer state
    is written too, with the optimizer's moments and the RNG states.
    """
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    recover(directory)
    tmp = _tmp_path(directory)
    tmp.mkdir()
    save_model(model, tmp)
    if tokenizer is not None:
        tokenizer.save(tmp)
    if state is not None:
        meta = {
            "format": STATE_FORMAT,
            "scratchllm_version": __version__,
            "engine": "numpy",
            **state,
            "rng": rng_state(model.rng),
        }
        tensors: dict[str, np.ndarray] = {}
        if optimizer is not None:
            tensors = optimizer.state_tensors()
            meta["optimizer"] = {
                "class": "AdamW",
                "param_groups": optimizer.param_groups(),
                "scalars": {},
            }
        save_file(tensors, str(tmp / STATE_TENSORS), metadata={"format": str(STATE_FORMAT)})
        (tmp / STATE_JSON).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    for f in tmp.iterdir():
        _fsync(f)
    _fsync(tmp)
    old = _old_path(directory)
    if directory.exists():
        directory.replace(old)
    tmp.replace(directory)
    _fsync(directory.parent)
    shutil.rmtree(old, ignore_errors=True)
    return directory


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model, its tokenizer and (if saved) the trainer state."""

    path: Path
    model: NumpyGPT
    tokenizer: Any | None
    state: dict[str, Any] | None = None
    tensors: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def step(self) -> int:
        return int(self.state["step"]) if self.state else 0

    def restore_rng(self, dropout_rng: np.random.Generator | None = None) -> None:
        """Put the python and numpy RNGs back as saved, and the dropout generator when
        this engine saved it (a PyTorch run's dropout stream cannot continue here)."""
        rng = (self.state or {}).get("rng")
        if rng is None:
            raise ValueError(f"{self.path / STATE_JSON}: no RNG state saved")
        version, internal, gauss = rng["python"]
        random.setstate((version, tuple(internal), gauss))
        np_state = dict(rng["numpy"])
        np_state["state"] = dict(np_state["state"], key=np.asarray(np_state["state"]["key"]))
        np.random.set_state(np_state)
        if dropout_rng is not None and "dropout" in rng:
            dropout_rng.bit_generator.state = rng["dropout"]


def load_checkpoint(
    path: str | Path, which: str = LAST, require_tokenizer: bool = True, dtype: str | None = None
) -> Checkpoint:
    """Read a checkpoint of either engine (or a run directory's ``last/`` / ``best/``)."""
    from scratchllm.tokenizers import load as load_tokenizer

    directory = find_checkpoint(path, which)
    model = load_model(directory, dtype=dtype)
    tokenizer = None
    tok_file = directory / TOKENIZER_FILE
    if tok_file.is_file():
        tokenizer = load_tokenizer(tok_file)
        if tokenizer.vocab_size != model.vocab_size:
            raise ValueError(
                f"{tok_file}: the tokenizer has {tokenizer.vocab_size} tokens but the model "
                f"in {directory} has vocab_size {model.vocab_size}; this is not the "
                "tokenizer the model was trained with"
            )
    elif require_tokenizer:
        raise FileNotFoundError(
            f"{tok_file}: missing; a checkpoint needs the tokenizer its model was trained with"
        )
    state, tensors = None, {}
    if (directory / STATE_JSON).exists() or (directory / STATE_TENSORS).exists():
        state, tensors = read_trainer_state(directory)
    return Checkpoint(directory, model, tokenizer, state, tensors)


def read_trainer_state(directory: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(trainer_state.json as a dict, trainer_state.safetensors as arrays)``; the
    PyTorch engine's RNG tensors (``rng.*``) are left out."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    directory = Path(directory)
    file = directory / STATE_JSON
    if not file.is_file():
        raise FileNotFoundError(f"{file}: missing (the checkpoint has no trainer state)")
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{file}: corrupt trainer state ({e})") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise ValueError(f"{file}: not a scratchllm trainer state (no integer 'step')")
    if state.get("format") != STATE_FORMAT:
        raise ValueError(
            f"{file}: trainer state format {state.get('format')!r}; this scratchllm reads "
            f"{STATE_FORMAT}"
        )
    tfile = directory / STATE_TENSORS
    if not tfile.is_file():
        raise FileNotFoundError(f"{tfile}: missing (the checkpoint is incomplete)")
    try:
        tensors = load_file(str(tfile))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{tfile}: cannot read the trainer state ({e})") from None
    return state, {k: v for k, v in tensors.items() if not k.startswith("rng.")}
