"""TRL, the peer the post-training losses are held against, and the stand-ins its methods need.

Why the shim: TRL 0.28's ``trl.import_utils._is_package_available`` delegates to
transformers' helper, which in transformers 5.23 returns a ``(bool, version)`` tuple even
when ``return_version=False``. A non-empty tuple is truthy, so TRL believes every optional
package (vllm, liger, deepspeed, ...) is installed and ``from trl import DPOTrainer`` fails
importing one of them. The shim returns the bool alone when no version was asked for;
it touches nothing but TRL's availability probe, and only in this test process.
"""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import torch


def import_trl() -> SimpleNamespace:
    import trl.import_utils as tiu

    original = tiu._is_package_available

    def probe(name, return_version=False):
        found = original(name, return_version)
        if return_version or not isinstance(found, tuple):
            return found
        return found[0]

    tiu._is_package_available = probe

    from trl import DPOTrainer, GRPOTrainer, RewardTrainer
    from trl.experimental.gkd import GKDTrainer
    from trl.experimental.ppo.ppo_trainer import masked_mean, masked_whiten
    from trl.trainer.utils import entropy_from_logits, selective_log_softmax

    return SimpleNamespace(
        DPOTrainer=DPOTrainer,
        GKDTrainer=GKDTrainer,
        GRPOTrainer=GRPOTrainer,
        RewardTrainer=RewardTrainer,
        masked_mean=masked_mean,
        masked_whiten=masked_whiten,
        entropy_from_logits=entropy_from_logits,
        selective_log_softmax=selective_log_softmax,
    )


class IdentityAccelerator:
    """What TRL's loss code asks of ``accelerate`` in one process: no-op gathers."""

    device = torch.device("cpu")
    num_processes = 1

    @staticmethod
    def gather(x):
        return x

    @staticmethod
    def gather_for_metrics(x):
        return x


def metrics_store():
    """TRL trainers keep ``self._metrics[mode][name] -> list``."""
    return defaultdict(lambda: defaultdict(list))
