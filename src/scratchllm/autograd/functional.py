"""Functional ops on ``Tensor``, named and shaped as in ``torch.nn.functional``.

The losses and normalisations here are fused: one forward computes the result and keeps
what the gradient needs, and one hand-derived backward produces the input gradient, instead
of a chain of small ops. That is both faster and numerically safer (``cross_entropy`` never
forms ``log(softmax(x))``).

    >>> import numpy as np
    >>> logits = Tensor(np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]]), requires_grad=True)
    >>> loss = cross_entropy(logits, np.array([0, 2]))
    >>> round(loss.item(), 4)          # mean of -log softmax at the targets
    0.6342
    >>> loss.backward()
    >>> logits.grad.round(3)           # (softmax - one_hot) / batch
    array([[-0.078,  0.057,  0.021],
           [ 0.167,  0.167, -0.333]])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from scratchllm.autograd.tensor import Tensor, _lift, _make, _unbroadcast, cat, stack

__all__ = [
    "cross_entropy",
    "mse_loss",
    "layer_norm",
    "embedding",
    "dropout",
    "where",
    "masked_fill",
    "linear",
    "relu",
    "gelu",
    "tanh",
    "sigmoid",
    "softmax",
    "log_softmax",
    "cat",
    "stack",
]

_REDUCTIONS = ("mean", "sum", "none")


def _array(x: Any) -> np.ndarray:
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def _check_reduction(reduction: str, op: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


# --------------------------------------------------------------------------- losses


def cross_entropy(
    logits: Tensor,
    targets: Any,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of integer ``targets`` under ``softmax(logits)``.

    Shapes follow ``torch.nn.functional.cross_entropy``: logits (C,), (N, C) or
    (N, C, d1, ...) with the class axis second, targets (), (N,) or (N, d1, ...). For a
    language model's (B, T, V) logits use ``cross_entropy(logits.reshape(-1, V),
    targets.reshape(-1))``. Targets equal to ``ignore_index`` contribute nothing, and
    ``"mean"`` divides by the number of the others (NaN if there are none, as in torch).
    """
    _check_reduction(reduction, "cross_entropy")
    x = logits.data
    t = _array(targets)
    if t.dtype.kind not in "iu":
        raise TypeError(
            f"cross_entropy: targets must be integer class indices, got dtype {t.dtype}"
        )
    if x.ndim == 0:
        raise ValueError("cross_entropy: logits must have a class dimension, got a 0-d tensor")
    expected = () if x.ndim == 1 else x.shape[:1] + x.shape[2:]
    if t.shape != expected:
        raise ValueError(
            f"cross_entropy: logits of shape {x.shape} need targets of shape {expected} "
            f"(class axis is 1, as in torch), got {t.shape}; for (B, T, V) logits pass "
            "logits.reshape(-1, V) and targets.reshape(-1)"
        )
    C = x.shape[0] if x.ndim == 1 else x.shape[1]
    # Bring the class axis last and flatten everything else: (M, C).
    flat = x.reshape(1, C) if x.ndim == 1 else np.moveaxis(x, 1, -1).reshape(-1, C)
    tf = t.reshape(-1)
    valid = tf != ignore_index
    safe = np.where(valid, tf, 0)
    if safe.size and (safe.min() < 0 or safe.max() >= C):
        bad = tf[valid & ((tf < 0) | (tf >= C))][0]
        raise IndexError(
            f"cross_entropy: target {bad} is out of range for {C} classes "
            f"(use 0..{C - 1}, or ignore_index={ignore_index} to skip a position)"
        )
    rows = np.arange(flat.shape[0])
    shifted = flat - flat.max(axis=1, keepdims=True)  # (M, C), max 0 per row
    probs = np.exp(shifted)
    sumexp = probs.sum(axis=1, keepdims=True)  # (M, 1)
    nll = (np.log(sumexp[:, 0]) - shifted[rows, safe]) * valid  # (M,)
    probs /= sumexp  # softmax, kept for the backward pass
    count = int(valid.sum())
    if reduction == "mean":
        data = np.asarray(nll.sum() / count if count else math.nan, dtype=x.dtype)
    elif reduction == "sum":
        data = np.asarray(nll.sum(), dtype=x.dtype)
    else:
        data = nll.astype(x.dtype, copy=False).reshape(t.shape)
    shape = x.shape

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        # d nll / d logits = softmax - one_hot(target), zero on ignored rows.
        if reduction == "none":
            scale = g.reshape(-1) * valid
        else:
            scale = valid * (g / count if reduction == "mean" else g)
        grad = probs * scale[:, None]
        grad[rows, safe] -= scale
        if len(shape) == 1:
            return (grad.reshape(shape),)
        grad = grad.reshape(shape[:1] + shape[2:] + (C,))  # (N, d1, ..., C)
        return (np.moveaxis(grad, -1, 1),)

    return _make(data, (logits,), backward, "cross_entropy")


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean (or summed) squared error. Shapes must match exactly.

    Broadcasting is refused on purpose: a (N, 1) prediction against an (N,) target would
    silently compare every prediction with every target.
    """
    _check_reduction(reduction, "mse_loss")
    tgt = _lift(target, input)
    if input.shape != tgt.shape:
        raise ValueError(
            f"mse_loss: input shape {input.shape} and target shape {tgt.shape} differ; "
            "reshape one of them (e.g. pred.reshape(-1))"
        )
    diff = input.data - tgt.data
    if reduction == "mean":
        data = np.asarray((diff * diff).mean())
        scale = 2.0 / diff.size if diff.size else math.nan
    elif reduction == "sum":
        data = np.asarray((diff * diff).sum())
        scale = 2.0
    else:
        data = diff * diff
        scale = 2.0

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        gi = diff * (g * scale)
        return (gi if input.requires_grad else None, -gi if tgt.requires_grad else None)

    return _make(data.astype(input.dtype, copy=False), (input, tgt), backward, "mse_loss")


# --------------------------------------------------------------------------- layers


def layer_norm(
    x: Tensor,
    normalized_shape: int | Sequence[int],
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise over the trailing ``normalized_shape`` axes, then scale and shift.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` with the biased variance, as
    ``torch.nn.functional.layer_norm``.
    """
    ns = (
        (normalized_shape,)
        if isinstance(normalized_shape, (int, np.integer))
        else tuple(normalized_shape)
    )
    k = len(ns)
    if k == 0 or k > x.ndim or x.shape[x.ndim - k :] != ns:
        raise ValueError(
            f"layer_norm: normalized_shape {ns} must equal the trailing dimensions of the "
            f"input, whose shape is {x.shape}"
        )
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != ns:
            raise ValueError(f"layer_norm: {name} has shape {p.shape}, expected {ns}")
    axes = tuple(range(x.ndim - k, x.ndim))
    lead = tuple(range(x.ndim - k))
    xd = x.data
    mu = xd.mean(axis=axes, keepdims=True)
    xc = xd - mu
    var = (xc * xc).mean(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat = xc * rstd
    out = xhat
    if weight is not None:
        out = out * weight.data
    if bias is not None:
        out = out + bias.data
    parents = (x,) + tuple(p for p in (weight, bias) if p is not None)

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        grads: list[np.ndarray | None] = []
        if x.requires_grad:
            gx = g * weight.data if weight is not None else g
            # d xhat: remove the components along 1 and along xhat (mean and variance paths)
            m1 = gx.mean(axis=axes, keepdims=True)
            m2 = (gx * xhat).mean(axis=axes, keepdims=True)
            grads.append(rstd * (gx - m1 - xhat * m2))
        else:
            grads.append(None)
        if weight is not None:
            grads.append((g * xhat).sum(axis=lead) if weight.requires_grad else None)
        if bias is not None:
            grads.append(g.sum(axis=lead) if bias.requires_grad else None)
        return tuple(grads)

    return _make(out.astype(xd.dtype, copy=False), parents, backward, "layer_norm")


def embedding(ids: Any, weight: Tensor) -> Tensor:
    """Rows of ``weight`` (V, C) picked by integer ``ids`` of any shape: out (*ids.shape, C).

    Ids that occur several times receive the sum of their gradients.
    """
    idx = _array(ids)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: ids must be integers, got dtype {idx.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (V, C), got shape {weight.shape}")
    V, C = weight.shape
    if idx.size and (idx.min() < 0 or idx.max() >= V):
        bad = idx[(idx < 0) | (idx >= V)].flat[0]
        raise IndexError(f"embedding: id {bad} is out of range for a weight with {V} rows")
    wd = weight.data

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        return (_sum_rows_by_id(idx.reshape(-1), g.reshape(-1, C), wd),)

    return _make(wd[idx], (weight,), backward, "embedding")


def _sum_rows_by_id(ids: np.ndarray, rows: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``out[v] = sum of rows[j] where ids[j] == v``, as an array shaped like ``like``.

    Same result as ``np.add.at(out, ids, rows)``, but sorting the ids once and summing each
    run with ``np.add.reduceat`` is several times faster.
    Example: ids [2, 0, 2], rows [[1], [2], [3]] -> out [[2], [0], [4]] (3 rows in ``like``).
    """
    out = np.zeros_like(like)
    if ids.size == 0:
        return out
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    out[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
    return out


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias``; ``weight`` is (out, in) as in ``torch.nn.functional.linear``."""
    y = x @ weight.transpose(0, 1)
    return y + bias if bias is not None else y


def dropout(
    x: Tensor,
    p: float = 0.5,
    training: bool = True,
    rng: np.random.Generator | int | None = None,
) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    Args:
        rng: a ``np.random.Generator`` (or a seed) for reproducible masks; a fresh
            unseeded generator when None.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if p == 1.0:
        scale = np.zeros(x.shape, dtype=x.dtype)
    else:
        scale = (gen.random(x.shape) >= p).astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return _make(x.data * scale, (x,), lambda g: (g * scale,), "dropout")


# --------------------------------------------------------------------------- selection


def where(condition: Any, a: Any, b: Any) -> Tensor:
    """Elementwise ``a`` where ``condition`` is true, else ``b`` (all three broadcast)."""
    cond = _array(condition).astype(bool, copy=False)
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else Tensor(np.asarray(a))
    ta, tb = _lift(a, like), _lift(b, like)
    try:
        data = np.where(cond, ta.data, tb.data)
    except ValueError:
        raise ValueError(
            f"where: condition {cond.shape}, a {ta.shape} and b {tb.shape} cannot be "
            "broadcast together"
        ) from None

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        zero = np.zeros((), dtype=g.dtype)
        return (
            _unbroadcast(np.where(cond, g, zero), ta.shape) if ta.requires_grad else None,
            _unbroadcast(np.where(cond, zero, g), tb.shape) if tb.requires_grad else None,
        )

    return _make(data, (ta, tb), backward, "where")


def masked_fill(x: Tensor, mask: Any, value: float) -> Tensor:
    """A copy of ``x`` with ``value`` where ``mask`` (broadcast to ``x``) is true.

    The usual causal-attention use: ``masked_fill(scores, ~tril, -np.inf)``.
    """
    m = _array(mask).astype(bool, copy=False)
    try:
        ok = np.broadcast_shapes(m.shape, x.shape) == x.shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"masked_fill: mask of shape {m.shape} does not broadcast to {x.shape}")
    data = np.where(m, x.dtype.type(value), x.data)
    keep = ~m
    return _make(data, (x,), lambda g: (g * keep,), "masked_fill")


# --------------------------------------------------------------------------- activations


def relu(x: Tensor) -> Tensor:
    return x.relu()


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    return x.gelu(approximate=approximate)


def tanh(x: Tensor) -> Tensor:
    return x.tanh()


def sigmoid(x: Tensor) -> Tensor:
    return x.sigmoid()


def softmax(x: Tensor, axis: int = -1, *, dim: int | None = None) -> Tensor:
    return x.softmax(axis, dim=dim)


def log_softmax(x: Tensor, axis: int = -1, *, dim: int | None = None) -> Tensor:
    return x.log_softmax(axis, dim=dim)
