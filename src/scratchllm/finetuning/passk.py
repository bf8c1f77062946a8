"""pass@k, the unbiased estimator of Chen et al. 2021: ``1 - C(n - c, k) / C(n, k)``.

The functions live in ``scratchllm.metrics`` (their derivation is there), below every package,
because the task evaluation (``evaluation.task``, a lower layer than ``finetuning``) reports
pass@k too; this module keeps them where the RL methods and ``docs/losses.md`` name them.

>>> round(pass_at_k(n=10, c=1, k=1), 12), pass_at_k(n=10, c=1, k=5), pass_at_k(n=10, c=6, k=5)
(0.1, 0.5, 1.0)
"""

from scratchllm.metrics import mean_pass_at_k, pass_at_k

__all__ = ["mean_pass_at_k", "pass_at_k"]
