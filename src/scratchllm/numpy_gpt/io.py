"""The model directory, read and written without torch, in the PyTorch GPT's format::

    run/
      config.json        {"family": "gpt", "config": {...GPTConfig...}, "scratchllm_version": ...}
      model.safetensors  the parameters, by the PyTorch GPT's names and layout

A model saved here loads with ``scratchllm.models.load`` and one saved there loads here.
Tied weights are stored once, as ``lm_head.weight`` (what PyTorch's ``save_model`` keeps).
Files are written to a temporary name and renamed, so a crash leaves the old file whole.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from scratchllm import __version__
from scratchllm.configs import GPTConfig
from scratchllm.numpy_gpt.model import DTYPES, NumpyGPT, check_supported, parameter_names

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def save_model(model: NumpyGPT, directory: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory``."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "family": "gpt",
        "config": dataclasses.asdict(model.config),
        "scratchllm_version": __version__,
    }
    tmp = directory / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    tmp.replace(directory / CONFIG_FILE)
    tensors = {name: np.ascontiguousarray(p) for name, p in model.params.items()}
    if model.config.tie_weights:
        tensors["lm_head.weight"] = tensors.pop("transformer.wte.weight")
    tmp = directory / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp))
    tmp.replace(directory / WEIGHTS_FILE)
    return directory


def read_gpt_config(directory: str | Path) -> GPTConfig:
    """The ``GPTConfig`` saved in a model directory; a clear error for anything else."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no model config here (is {directory} a model directory?)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        family, fields = meta["family"], meta["config"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a scratchllm model config ({e})") from None
    if family != "gpt":
        raise ValueError(
            f"{path}: a {family!r} model; the NumPy engine runs GPT models only "
            "(use the PyTorch engine for this one)"
        )
    try:
        config = GPTConfig(**fields)
    except TypeError as e:
        raise ValueError(f"{path}: config does not fit GPTConfig: {e}") from None
    try:
        check_supported(config)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return config


def load_model(directory: str | Path, dtype: str | None = None) -> NumpyGPT:
    """A ``NumpyGPT`` from a directory written by either engine, in eval mode.

    ``dtype`` (``float32`` or ``float64``) converts the weights; None keeps the file's.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    config = read_gpt_config(directory)
    weights = Path(directory) / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: missing model weights")
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{weights}: cannot read model weights ({e})") from None
    if config.tie_weights:
        head = tensors.pop("lm_head.weight", None)
        wte = tensors.get("transformer.wte.weight")
        if wte is None and head is not None:
            tensors["transformer.wte.weight"] = head
        elif wte is not None and head is not None and not np.array_equal(wte, head):
            raise ValueError(
                f"{weights}: tie_weights is set but lm_head.weight differs from "
                "transformer.wte.weight"
            )
    names = set(parameter_names(config))
    missing, unexpected = sorted(names - set(tensors)), sorted(set(tensors) - names)
    if missing or unexpected:
        raise ValueError(
            f"{weights}: weights do not match the config (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    if dtype is not None:
        if np.dtype(dtype).name not in DTYPES:
            raise ValueError(f"dtype {dtype!r} must be one of {DTYPES}")
        tensors = {k: v.astype(dtype) for k, v in tensors.items()}
    try:
        return NumpyGPT(config, tensors).eval()
    except ValueError as e:
        raise ValueError(f"{weights}: {e}") from None
