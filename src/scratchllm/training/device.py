"""Choosing the device, and what a device can do (autocast, compile)."""

from __future__ import annotations

import contextlib

import torch


def resolve_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; a named device must exist.

    Under torchrun each process takes the GPU of its ``local_rank``.

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    kind = name.split(":", 1)[0]
    if kind == "auto":
        if torch.cuda.is_available():
            kind = "cuda"
        elif _mps_available():
            kind = "mps"
        else:
            kind = "cpu"
        name = kind
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: CUDA is not available here; use --device cpu")
        if local_rank is not None and ":" not in name:
            return torch.device("cuda", local_rank)
    elif kind == "mps":
        if not _mps_available():
            raise ValueError(f"device {name!r}: MPS is not available here; use --device cpu")
    elif kind != "cpu":
        raise ValueError(f"unknown device {name!r}; choose auto, cpu, cuda or mps")
    return torch.device(name)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def autocast_dtype(dtype: str, device: torch.device) -> tuple[torch.dtype | None, str | None]:
    """The autocast dtype to use (None = plain float32), and a note when a request is skipped.

    Mixed precision pays on accelerators with bf16/fp16 matrix units; on a CPU it is
    usually slower than float32, so it is skipped there with a note. (float16 would need
    loss scaling; bf16 has float32's range and does not.)
    """
    if dtype == "float32":
        return None, None
    if device.type == "cpu":
        return None, f"dtype {dtype}: autocast skipped on CPU (float32 is faster there)"
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return None, "dtype bfloat16: this GPU has no bf16 support; training in float32"
    return torch.bfloat16, None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``, or no autocast when ``dtype`` is None
    (what ``autocast_dtype`` returns for plain float32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
