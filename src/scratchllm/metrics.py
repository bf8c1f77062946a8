"""Numbers every measurement shares, with no dependencies.

>>> perplexity(0.0), perplexity(1e4)
(1.0, inf)

**pass@k**, the unbiased estimator of Chen et al. 2021 (the Codex paper). Sample ``n >= k``
completions of a problem, ``c`` of them correct. The chance that at least one of ``k`` drawn
without replacement is correct::

    pass@k = 1 - C(n - c, k) / C(n, k)

computed as ``1 - prod_{i = n-c+1}^{n} (1 - k / i)``, which never forms the huge binomials.
Averaged over problems it is unbiased for the model's pass@k; the naive ``1 - (1 - c/n)^k``
is not (it samples with replacement). It lives here, below every package, because the task
evaluation reports it as well as the RL methods of ``finetuning`` (``finetuning.passk``
re-exports it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

LN2 = math.log(2)


def perplexity(loss: float) -> float:
    """``exp(loss)`` for a loss in nats per token: the effective number of equally likely
    choices. Past ``exp``'s range (a diverged loss) it is infinite rather than an error."""
    return math.exp(loss) if loss < 700 else math.inf


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``c`` correct among ``n`` samples.

    >>> round(pass_at_k(n=10, c=1, k=1), 12), pass_at_k(n=10, c=1, k=5), pass_at_k(n=10, c=6, k=5)
    (0.1, 0.5, 1.0)
    """
    if not 1 <= k <= n:
        raise ValueError(f"k ({k}) must be between 1 and the number of samples n ({n})")
    if not 0 <= c <= n:
        raise ValueError(f"correct count c ({c}) must be between 0 and n ({n})")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """pass@k averaged over problems, from ``(n, c)`` per problem."""
    values = [pass_at_k(n, c, k) for n, c in counts]
    if not values:
        raise ValueError("mean_pass_at_k needs at least one problem")
    return sum(values) / len(values)
