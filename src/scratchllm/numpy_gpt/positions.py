"""Sinusoidal positions (Vaswani et al., 2017): where a token is, as a fixed table.

Each position ``p`` gets a vector of ``C`` numbers, sines and cosines at frequencies
that fall geometrically from 1 to 1/10000 per position::

    PE[p, 2i]   = sin(p / 10000^(2i / C))
    PE[p, 2i+1] = cos(p / 10000^(2i / C))

Nearby positions get similar vectors and every offset ``k`` is a fixed rotation of each
(sin, cos) pair, so attention can learn "the token 3 back" once for all positions.
The table is added to the token embeddings; it has no parameters.
"""

from __future__ import annotations

import math

import numpy as np


def sinusoidal_positions(block_size: int, n_embd: int) -> np.ndarray:
    """The fixed ``[block_size, n_embd]`` float32 table (the PyTorch GPT's ``pos_table``).

    Computed in float64 and rounded to float32 once, as the PyTorch twin does, so a
    float64 model adds the very same numbers in both engines.

    >>> t = sinusoidal_positions(4, 6)
    >>> t[0].tolist()  # position 0: sin(0) = 0, cos(0) = 1
    [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    >>> round(float(t[1, 0]), 6), round(float(t[1, 1]), 6)  # sin(1), cos(1)
    (0.841471, 0.540302)
    """
    pos = np.arange(block_size, dtype=np.float64)[:, None]  # (T, 1)
    i2 = np.arange(0, n_embd, 2, dtype=np.float64)  # (ceil(C/2),) the even feature ids
    angle = pos * np.exp(-math.log(10000.0) * i2 / n_embd)  # (T, ceil(C/2))
    table = np.empty((block_size, n_embd), dtype=np.float64)
    table[:, 0::2] = np.sin(angle)
    table[:, 1::2] = np.cos(angle[:, : n_embd // 2])  # an odd C has one sin more than cos
    return table.astype(np.float32)
