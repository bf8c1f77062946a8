"""Keep freed memory in the process: a training step's tensors come and go every step.

A training step allocates and frees hundreds of megabyte-sized arrays (each layer's
outputs, gradients and temporaries). glibc's ``malloc`` hands large freed blocks back to
the operating system (``munmap``, or trimming the heap top), so the next step's arrays
are fresh pages that fault in one by one; on some machines (sandboxes, VMs) a page fault
costs microseconds. The NumPy engine's exact GELU of one layer then spends more time
faulting its four arrays in than computing, and a 6 x 384 PyTorch training step on CPU
takes 13,000-58,000 page faults (200-320 with this setting). ``keep_freed_memory`` raises
glibc's two thresholds so freed blocks stay in the heap and are reused. It changes how
much memory the process keeps, never a result; the resident size stays near the peak of
a step.

Both trainers call it when training starts (``numpy_gpt.NumpyTrainer``; ``training.Trainer``
on a CPU device; not ``train_step_fn``, whose benchmarks choose). It affects the whole process
(any other model in the same process allocates faster too), and does nothing off glibc.
Torch-free, so that the NumPy engine can use it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1  # <malloc.h>: trim the heap top only beyond this much free memory
_M_MMAP_THRESHOLD = -3  # <malloc.h>: blocks at least this large get their own mmap
MMAP_THRESHOLD = 32 << 20  # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
TRIM_THRESHOLD = 1 << 30

_done = False


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks (up to 32 MB each) for reuse. Returns whether the
    setting is in effect (False off Linux/glibc)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _done
