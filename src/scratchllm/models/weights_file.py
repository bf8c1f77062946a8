"""A weights file checked before a byte of it is trusted: header, config and values.

``model.safetensors`` starts with an 8-byte little-endian length and a JSON header that
names every tensor with its dtype, shape and byte range. ``read_header`` reads only that,
so ``check_header`` can compare what ``config.json`` describes with what the file holds
before the model is allocated: a crafted config (``n_layer`` 100000, ``n_embd`` 100000)
is one line naming the mismatch, not an attempt to allocate 120 GB. The expected names
and shapes come from the model built on PyTorch's ``meta`` device (shapes, no memory).
``check_finite`` refuses loaded weights holding NaN or infinity, naming the tensor.

>>> read_header("runs/x/last/model.safetensors")["lm_head.weight"]   # doctest: +SKIP
Tensor(dtype='F32', shape=(65, 128))
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# Config fields that multiply modules (blocks, experts): building even on the meta device
# costs time per module, so these are bounded by the file's tensor count first.
COUNT_FIELDS = ("n_layer", "n_expert")
_MAX_HEADER = 100 << 20  # safetensors' own limit on the header's size


@dataclass(frozen=True)
class Tensor:
    dtype: str  # safetensors' name: F32, BF16, I64, ...
    shape: tuple[int, ...]


def read_header(path: str | Path) -> dict[str, Tensor]:
    """The tensors a safetensors file holds (name -> dtype and shape), from its header
    only; a file too short for the data its header promises is an error."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: {size} bytes, too short for a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > min(_MAX_HEADER, size - 8):
            raise ValueError(f"{path}: not a safetensors file (its header length {n:,} is wrong)")
        try:
            raw = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a safetensors file (bad header: {e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: not a safetensors file (its header is not a JSON object)")
    out, end = {}, 0
    for name, info in raw.items():
        if name == "__metadata__":
            continue
        try:
            out[name] = Tensor(str(info["dtype"]), tuple(int(d) for d in info["shape"]))
            end = max(end, int(info["data_offsets"][1]))
        except (KeyError, TypeError, ValueError, IndexError):
            raise ValueError(f"{path}: not a safetensors file (bad entry {name!r})") from None
    if 8 + n + end > size:
        raise ValueError(
            f"{path}: truncated: its header promises {8 + n + end:,} bytes, the file has {size:,}"
        )
    return out


def check_header(cls: type, config: Any, weights: str | Path, config_file: str | Path) -> None:
    """Refuse ``config`` (of the model class ``cls``) if the weights file does not hold
    exactly the tensors the model it describes has, each parameter with its shape
    (buffers may be sized by the data they were fitted on: the n-gram's tables)."""
    weights = Path(weights)
    header = read_header(weights)
    for field in COUNT_FIELDS:
        value = getattr(config, field, None)
        if isinstance(value, int) and value > len(header):
            raise ValueError(
                f"{config_file} says {field} = {value:,}, but {weights} holds only "
                f"{len(header)} tensors: the config does not describe these weights"
            )
    probe = _shapes_only(cls, config)
    groups: dict[int, list[str]] = {}  # tied tensors (one Parameter, several names)
    shapes: dict[str, tuple[int, ...] | None] = {}  # None: a buffer, sized by the data
    for name, t in probe.state_dict(keep_vars=True).items():
        groups.setdefault(id(t), []).append(name)
        shapes[name] = tuple(t.shape) if isinstance(t, torch.nn.Parameter) else None
    for name, t in header.items():
        want = shapes.get(name)
        if want is not None and t.shape != want:  # (buffers: the n-gram's tables)
            raise ValueError(
                f"{config_file} and {weights} disagree: {name} is {list(t.shape)} in the "
                f"weights, the config makes it {list(want)}"
            )
    unexpected = sorted(set(header) - set(shapes))
    missing = sorted(g[0] for g in groups.values() if not set(g) & set(header))
    if missing or unexpected:
        raise ValueError(
            f"{weights} does not hold the model {config_file} describes: "
            + "; ".join(
                f"{what} {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}"
                for what, names in (("missing", missing), ("unexpected", unexpected))
                if names
            )
        )


def _shapes_only(cls: type, config: Any) -> torch.nn.Module:
    """The model of ``config`` on the meta device: its tensors have shapes, no memory."""
    try:
        with torch.device("meta"), _NoFill():
            return cls(config)
    except RuntimeError:  # an __init__ that _NoFill cannot serve: the plain (slower) way
        with torch.device("meta"):
            return cls(config)


class _NoFill(torch.overrides.TorchFunctionMode):
    """Skip the in-place fills of initialisation (``normal_``, ``zero_``, ...) on meta
    tensors, and compute value tables (``arange``: RoPE's, sinusoidal positions) on the
    CPU: on the meta device both run PyTorch's Python reference kernels, whose first use
    imports torch._dynamo (seconds), while the shapes are all a check needs."""

    _KEEP = frozenset({"resize_", "set_", "requires_grad_", "share_memory_"})
    _VALUES = frozenset({"arange", "linspace", "logspace", "tensor", "as_tensor"})

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        if name in self._VALUES:
            kwargs["device"] = "cpu"
        elif name.endswith("_") and not name.endswith("__") and name not in self._KEEP:
            t = args[0] if args else next(iter(kwargs.values()), None)
            if isinstance(t, torch.Tensor) and t.is_meta:
                return t
        return func(*args, **kwargs)


def check_finite(model: torch.nn.Module, weights: str | Path) -> None:
    """Refuse a model whose parameters or buffers hold NaN or infinity, naming the first."""
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int(t.numel() - torch.isfinite(t).sum())
            if bad:
                raise ValueError(
                    f"{weights}: {name} holds {bad:,} NaN or infinite values (of {t.numel():,}); "
                    "these weights are broken (a run that diverged?): use another checkpoint, "
                    "e.g. the run's best/ or an earlier one"
                )
