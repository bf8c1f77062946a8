"""What a device can do (autocast); choosing it is ``scratchllm.device.resolve_device``."""

from __future__ import annotations

import contextlib

import torch

from scratchllm.device import resolve_device as resolve_device  # its home before


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
