"""Elementwise work on every core.

NumPy runs each elementwise operation on one core, while PyTorch spreads its kernels over
all of them; BLAS (the matrix products) is multi-threaded in both. So the pieces whose
cost is elementwise passes (GELU, the attention softmax, layer norm, the loss, AdamW)
split their rows into one part per thread and run the parts at once: NumPy releases the
GIL inside each operation, so Python threads really run in parallel. Each row's result
is computed exactly as it would be alone, so the answer does not depend on the number
of threads (a test checks it bit for bit).

>>> import numpy as np
>>> out = np.empty(6)
>>> for_rows(lambda rows: np.multiply(np.arange(6.0)[rows], 2.0, out=out[rows]), 6, 1)
>>> out.tolist()
[0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

MIN_ELEMENTS = 1 << 16  # per part: below this, dispatching costs more than it saves

_threads: int | None = None  # None until first asked: then every core this process may use
_pool: ThreadPoolExecutor | None = None


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def get_num_threads() -> int:
    """How many threads the elementwise work uses (``set_num_threads``; default: all cores)."""
    global _threads
    if _threads is None:
        _threads = available_cores()
    return _threads


def set_num_threads(n: int | None) -> None:
    """Use ``n`` threads for elementwise work (None: every core). BLAS has its own setting
    (``threadpoolctl.threadpool_limits``)."""
    global _threads, _pool
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"threads ({n!r}) must be a positive integer or None")
    _threads = available_cores() if n is None else n
    if _pool is not None:
        _pool.shutdown(wait=True)
        _pool = None


def split_rows(n_rows: int, row_size: int) -> list[slice]:
    """Consecutive slices covering ``range(n_rows)``: one per thread, as long as each part
    holds at least ``MIN_ELEMENTS`` elements (``row_size`` per row)."""
    parts = min(get_num_threads(), n_rows, n_rows * row_size // MIN_ELEMENTS)
    if parts <= 1:
        return [slice(0, n_rows)]
    cuts = [n_rows * i // parts for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]


def run_parts(work: Callable[[slice], None], parts: list[slice]) -> None:
    """``work(part)`` for every part at once (this thread takes the first). ``work`` must
    write only its own rows."""
    global _pool
    if len(parts) == 1:
        work(parts[0])
        return
    if _pool is None or _pool._max_workers < len(parts) - 1:
        _pool = ThreadPoolExecutor(max_workers=len(parts) - 1, thread_name_prefix="numpy_gpt")
    futures = [_pool.submit(work, part) for part in parts[1:]]
    work(parts[0])
    for f in futures:
        f.result()


def for_rows(work: Callable[[slice], None], n_rows: int, row_size: int) -> None:
    """``run_parts(work, split_rows(n_rows, row_size))``."""
    run_parts(work, split_rows(n_rows, row_size))
