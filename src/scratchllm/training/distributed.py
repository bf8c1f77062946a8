"""Data-parallel training under ``torchrun``: who am I, and how do the ranks talk.

``torchrun --nproc_per_node N -m scratchllm.cli train ...`` starts N copies of the same
program with ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in their environment. The
``Trainer`` reads them (``detect``), joins the process group (gloo on CPU, NCCL on CUDA)
and wraps the model in ``DistributedDataParallel``, which averages gradients across the
ranks during ``backward``. Every rank draws the same global batch from the same seeded
generator and keeps its own slice of rows, so N processes with ``batch_size`` b see the
data one process with ``batch_size`` N*b would. Rank 0 alone writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0  # this process, 0..world_size-1
    local_rank: int = 0  # this process on its machine (picks the GPU)
    world_size: int = 1  # processes in the run

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, metrics and plots."""
        return self.rank == 0


def detect() -> DistInfo:
    """The rank and world size torchrun put in the environment (a single process if none)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise ValueError(f"WORLD_SIZE / RANK / LOCAL_RANK must be integers ({e})") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK ({rank}) must be in 0..WORLD_SIZE-1 (WORLD_SIZE={world})")
    return DistInfo(rank=rank, local_rank=local, world_size=world)


def init(info: DistInfo, device: torch.device) -> bool:
    """Join the process group if this is a multi-process run; True if we started it."""
    if not info.enabled or dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return True


def shutdown(started: bool) -> None:
    """Leave the process group, if ``init`` started it."""
    if started and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over all ranks (a no-op for one process)."""
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()
