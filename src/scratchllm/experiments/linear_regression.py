"""Milestone 2, experiment 1: fit ``y = a*x + b`` by gradient descent on three engines.

The same noiseless data, the same starting point and the same full-batch gradient descent on
the mean squared error run on the scalar ``Value`` engine, the NumPy ``Tensor`` engine and
PyTorch. All three must recover ``a`` and ``b``, and agree with each other to rounding.

Why it converges fast: with ``x`` uniform in [-1, 1] the loss is a quadratic bowl whose Hessian
has eigenvalues near 2/3 and 2 (``2*E[x^2]`` and 2), so a learning rate of 0.5 shrinks the error
by a factor of about 2/3 per step: 150 steps bring it to ~1e-26 of where it started.

Example:
    >>> from scratchllm.experiments.linear_regression import (
    ...     LinearRegressionConfig, run_linear_regression)
    >>> result = run_linear_regression(LinearRegressionConfig(a=2.0, b=-3.0))
    >>> round(result.fits["Value"].a, 6), round(result.fits["Value"].b, 6)
    (2.0, -3.0)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

ENGINES = ("Value", "Tensor", "PyTorch")


@dataclass
class LinearRegressionConfig:
    a: float = 2.0  # true slope
    b: float = -3.0  # true intercept
    n_points: int = 32  # data set size; x uniform in [-1, 1]
    steps: int = 150  # full-batch gradient-descent steps
    lr: float = 0.5  # learning rate (stable below 1: the largest curvature is about 2)
    seed: int = 0  # draws the x values and the shared starting point

    def __post_init__(self) -> None:
        if self.n_points < 2:
            raise ValueError(f"n_points={self.n_points}: need at least 2 points to fit a line")
        if self.steps < 1:
            raise ValueError(f"steps={self.steps}: need at least one step")
        if not 0 < self.lr < 1:
            raise ValueError(
                f"lr={self.lr}: choose 0 < lr < 1 (the loss curvature is about 2, so lr >= 1 "
                "diverges or oscillates)"
            )


@dataclass
class Fit:
    a: float
    b: float
    loss: float  # final MSE on the data set
    seconds: float


@dataclass
class LinearRegressionResult:
    config: LinearRegressionConfig
    fits: dict[str, Fit] = field(default_factory=dict)  # engine name -> fit

    def table(self) -> str:
        """The printed report: the truth, then each engine's fit, error and time."""
        c = self.config
        lines = [
            f"{'engine':<8} {'a':>12} {'b':>12} {'max |error|':>12} {'final MSE':>10} {'time':>8}",
            f"{'truth':<8} {c.a:>12.6f} {c.b:>12.6f}",
        ]
        for name, f in self.fits.items():
            err = max(abs(f.a - c.a), abs(f.b - c.b))
            lines.append(
                f"{name:<8} {f.a:>12.6f} {f.b:>12.6f} {err:>12.1e} {f.loss:>10.1e} "
                f"{f.seconds * 1e3:>6.0f}ms"
            )
        lines.append(f"(time: {c.steps} full-batch steps on {c.n_points} points, after a warm-up)")
        return "\n".join(lines)


def make_data(config: LinearRegressionConfig) -> tuple[np.ndarray, np.ndarray, float, float]:
    """x, y (float64) and the shared starting point (a0, b0)."""
    rng = np.random.default_rng(config.seed)
    x = rng.uniform(-1.0, 1.0, config.n_points)
    y = config.a * x + config.b
    a0, b0 = rng.standard_normal(2)
    return x, y, float(a0), float(b0)


def fit_value(x: np.ndarray, y: np.ndarray, a0: float, b0: float, steps: int, lr: float) -> Fit:
    """Gradient descent on the scalar engine: one graph node per multiply and add per point."""
    from scratchllm.autograd import Value

    a, b = Value(a0), Value(b0)
    xs, ys = [float(v) for v in x], [float(v) for v in y]
    loss = None
    for _ in range(steps):
        loss = sum(((a * xi + b - yi) ** 2 for xi, yi in zip(xs, ys)), Value(0.0)) / len(xs)
        a.grad = b.grad = 0.0
        loss.backward()
        a.data -= lr * a.grad
        b.data -= lr * b.grad
    final = sum((a.data * xi + b.data - yi) ** 2 for xi, yi in zip(xs, ys)) / len(xs)
    return Fit(a.data, b.data, final, 0.0)


def fit_tensor(x: np.ndarray, y: np.ndarray, a0: float, b0: float, steps: int, lr: float) -> Fit:
    """Gradient descent on the NumPy engine, updating with our SGD optimizer."""
    from scratchllm.autograd import Tensor
    from scratchllm.autograd.functional import mse_loss
    from scratchllm.autograd.optim import SGD

    a = Tensor(np.array(a0), requires_grad=True)
    b = Tensor(np.array(b0), requires_grad=True)
    xt, yt = Tensor(x), Tensor(y)
    opt = SGD([a, b], lr=lr)
    for _ in range(steps):
        loss = mse_loss(a * xt + b, yt)  # (N,) predictions vs (N,) targets
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = float(np.mean((a.data * x + b.data - y) ** 2))
    return Fit(float(a.data), float(b.data), final, 0.0)


def fit_torch(x: np.ndarray, y: np.ndarray, a0: float, b0: float, steps: int, lr: float) -> Fit:
    """The reference: PyTorch autograd and torch.optim.SGD, in float64."""
    import torch

    a = torch.tensor(a0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(b0, dtype=torch.float64, requires_grad=True)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    opt = torch.optim.SGD([a, b], lr=lr)
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(a * xt + b, yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = float(np.mean((a.item() * x + b.item() - y) ** 2))
    return Fit(a.item(), b.item(), final, 0.0)


FITTERS: dict[str, Callable[..., Fit]] = {
    "Value": fit_value,
    "Tensor": fit_tensor,
    "PyTorch": fit_torch,
}


def run_linear_regression(
    config: LinearRegressionConfig | None = None, engines: tuple[str, ...] = ENGINES
) -> LinearRegressionResult:
    """Fit the line on each engine from the same data and starting point."""
    config = config or LinearRegressionConfig()
    unknown = [e for e in engines if e not in FITTERS]
    if unknown:
        raise ValueError(f"unknown engine(s) {unknown}; choose from {list(FITTERS)}")
    x, y, a0, b0 = make_data(config)
    result = LinearRegressionResult(config)
    for name in engines:
        FITTERS[name](x, y, a0, b0, 1, config.lr)  # warm-up: first-call costs (lazy imports)
        t0 = time.perf_counter()
        fit = FITTERS[name](x, y, a0, b0, config.steps, config.lr)
        fit.seconds = time.perf_counter() - t0
        result.fits[name] = fit
    return result
