"""The one device check: what ``--device`` names, and whether this machine has it.

Every command that puts a model somewhere calls ``resolve_device`` before it reads or
builds anything (``load_checkpoint``, the ``Trainer``, the study), so a device that is not
there is one line naming the fix, not an error from deep inside a weights loader.

>>> resolve_device("cpu")
device(type='cpu')
>>> resolve_device("tpu")
Traceback (most recent call last):
...
ValueError: unknown device 'tpu'; choose auto, cpu, cuda or mps
"""

from __future__ import annotations

import torch


def resolve_device(
    name: str | torch.device = "auto", local_rank: int | None = None
) -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; a named device must exist here.

    Under torchrun each process takes the GPU of its ``local_rank``.
    """
    name = str(name)
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
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise ValueError(
                f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA "
                f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}"
            )
    elif kind == "mps":
        if not _mps_available():
            raise ValueError(f"device {name!r}: MPS is not available here; use --device cpu")
    elif kind != "cpu":
        raise ValueError(f"unknown device {name!r}; choose auto, cpu, cuda or mps")
    return torch.device(name)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
