"""Milestone experiments that hold the from-scratch engines against PyTorch.

- :mod:`~scratchllm.experiments.linear_regression`: fit a line on the ``Value`` engine, the
  ``Tensor`` engine and PyTorch (``scratchllm experiment linear-regression``).
- :mod:`~scratchllm.experiments.mlp_quadratic`: a ReLU MLP learns a quadratic, five ways
  (``scratchllm experiment mlp-quadratic``).

These modules may import torch: comparing engines is their job. ``scratchllm.autograd`` never does.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def limit_threads(n: int | None) -> Iterator[None]:
    """Run the block with at most ``n`` threads in the BLAS/OpenMP pools and in torch.

    Small matrices (a 128x64 batch through a 64-wide layer) gain nothing from threads, and on a
    busy machine the pools' spinning workers can make each step 10-50x slower. ``None`` leaves
    the libraries' defaults alone. Import torch before entering so its pool is limited too.
    """
    if n is None:
        yield
        return
    if n < 1:
        raise ValueError(f"threads={n}: give a positive number of threads, or None for the default")
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    try:
        with threadpool_limits(limits=n):
            if torch is not None:
                torch.set_num_threads(n)
            yield
    finally:
        if torch is not None and before is not None:
            torch.set_num_threads(before)
