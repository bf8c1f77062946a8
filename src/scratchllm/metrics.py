"""Numbers every measurement shares, with no dependencies.

>>> perplexity(0.0), perplexity(1e4)
(1.0, inf)
"""

from __future__ import annotations

import math

LN2 = math.log(2)


def perplexity(loss: float) -> float:
    """``exp(loss)`` for a loss in nats per token: the effective number of equally likely
    choices. Past ``exp``'s range (a diverged loss) it is infinite rather than an error."""
    return math.exp(loss) if loss < 700 else math.inf
