"""Milestone 2, experiment 2: a ReLU MLP learns ``y = w1*x1**2 + w2*x2**2 + b``, five ways.

The five ways share the initial weights, the mini-batches and the learning-rate schedule:

=====================  ==========================================================
``scratch-sgd``         our ``Tensor`` engine, ``nn.MLP`` and our ``optim.SGD``
``scratch-adam``        our ``Tensor`` engine, ``nn.MLP`` and our ``optim.Adam``
``torch-manual-sgd``    PyTorch tensors and autograd, SGD with momentum written by hand
``torch-manual-adam``   PyTorch tensors and autograd, Adam written by hand
``torch-nn-adam``       ``torch.nn.Sequential`` and ``torch.optim.Adam``
=====================  ==========================================================

so the SGD pair and the Adam trio trace the same loss curve step for step (exactly so in
float64; float32 drifts apart slowly by rounding).

Why it fits where a published run of this experiment stalled at a test MSE of 56-114: the
inputs are scaled to [-1, 1] and the targets standardised (zero mean, unit variance) before
training, so the first layer's default initialisation and a learning rate near 1e-3 suit the
problem, instead of raw inputs of size ~5 and targets of size ~50 whose gradients swamp the
step size. A warm-up then cosine decay of the learning rate lets Adam settle into the bottom
of the loss instead of rattling around it. Predictions are mapped back to the original units
before the train/test MSE is reported.

Example:
    >>> from scratchllm.experiments.mlp_quadratic import MLPQuadraticConfig, run_mlp_quadratic
    >>> result = run_mlp_quadratic(MLPQuadraticConfig(steps=20, ways=("scratch-adam",)))
    >>> len(result.runs["scratch-adam"].losses)
    20
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scratchllm.experiments import limit_threads

WAYS = ("scratch-sgd", "scratch-adam", "torch-manual-sgd", "torch-manual-adam", "torch-nn-adam")
DTYPES = ("float32", "float64")


@dataclass
class MLPQuadraticConfig:
    # The task: y = w1*x1^2 + w2*x2^2 + b, inputs uniform in [-x_max, x_max]^2, no noise.
    w1: float = 2.0
    w2: float = -1.5
    b: float = 4.0
    x_max: float = 5.0
    n_train: int = 2048
    n_test: int = 512
    # The model: Linear(2, h) -> ReLU -> ... -> Linear(h, 1).
    hidden: tuple[int, ...] = (64, 64)
    # Training: the same for all five ways.
    steps: int = 2000
    batch_size: int = 128
    lr_adam: float = 5e-3  # peak learning rate of the Adam ways
    lr_sgd: float = 0.05  # peak learning rate of the SGD ways
    momentum: float = 0.9  # SGD momentum (torch.optim.SGD semantics)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam
    eps: float = 1e-8  # Adam
    warmup: int = 100  # linear warm-up steps, then cosine decay
    min_lr_ratio: float = 0.0  # the cosine ends at peak * min_lr_ratio
    seed: int = 0  # data, initial weights and batch order
    dtype: str = "float32"  # float64 for the step-for-step comparison
    ways: tuple[str, ...] = WAYS
    threads: int | None = 1  # BLAS/torch threads; tiny matrices run best on one (None: default)

    def __post_init__(self) -> None:
        self.hidden = tuple(self.hidden)
        self.ways = tuple(self.ways)
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype={self.dtype!r}: choose one of {DTYPES}")
        unknown = [w for w in self.ways if w not in WAYS]
        if unknown or not self.ways:
            raise ValueError(f"unknown way(s) {unknown or '(none given)'}; choose from {WAYS}")
        for name in ("n_train", "n_test", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if self.batch_size > self.n_train:
            raise ValueError(
                f"batch_size={self.batch_size} is larger than n_train={self.n_train}; "
                "lower the batch size or add training points"
            )
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden={self.hidden}: every layer needs at least one unit")
        if self.x_max <= 0:
            raise ValueError(f"x_max={self.x_max} must be positive")
        if self.w1 == 0 and self.w2 == 0:
            raise ValueError("w1 and w2 are both 0: the target is constant, nothing to learn")
        if self.warmup < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(
                f"warmup={self.warmup} must be >= 0 and min_lr_ratio={self.min_lr_ratio} in [0, 1]"
            )

    @property
    def sizes(self) -> list[int]:
        return [2, *self.hidden, 1]

    def formula(self) -> str:
        """The target as text, e.g. ``y = 2*x1^2 - 1.5*x2^2 + 4``."""

        def term(coef: float, text: str) -> str:
            sign = "-" if coef < 0 else "+"
            return f" {sign} {abs(coef):g}{text}"

        first = f"{self.w1:g}*x1^2"
        return f"y = {first}{term(self.w2, '*x2^2')}{term(self.b, '')}"


@dataclass
class Data:
    """Scaled train/test sets plus what is needed to map predictions back to y's units."""

    x_train: np.ndarray  # (N, 2), inputs / x_max, in [-1, 1]
    y_train: np.ndarray  # (N, 1), standardised targets
    x_test: np.ndarray
    y_test: np.ndarray
    y_mean: float
    y_std: float
    var_y_test: float  # variance of the raw test targets: the yardstick for "fits"
    batches: np.ndarray  # (steps, batch_size) row indices into the training set


@dataclass
class WayResult:
    way: str
    losses: list[float]  # training-batch MSE per step, in standardised units
    train_mse: float  # on the whole training set, original units
    test_mse: float  # original units
    test_rel: float  # test_mse / variance(y_test): 0 is perfect, 1 is predicting the mean
    seconds: float


@dataclass
class MLPQuadraticResult:
    config: MLPQuadraticConfig
    var_y_test: float
    runs: dict[str, WayResult] = field(default_factory=dict)

    def table(self) -> str:
        head = f"{'way':<18} {'train MSE':>10} {'test MSE':>10} {'test MSE/var(y)':>16} {'time':>7}"
        lines = [head]
        for r in self.runs.values():
            lines.append(
                f"{r.way:<18} {r.train_mse:>10.4f} {r.test_mse:>10.4f} {r.test_rel:>16.2e} "
                f"{r.seconds:>6.1f}s"
            )
        lines.append(f"variance of y on the test set: {self.var_y_test:.2f}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------- data, schedule


def make_data(config: MLPQuadraticConfig) -> Data:
    """Draw the data set and the batch order (all from ``config.seed``), in ``config.dtype``."""
    c = config
    rng = np.random.default_rng(c.seed)
    x = rng.uniform(-c.x_max, c.x_max, (c.n_train + c.n_test, 2))
    y = c.w1 * x[:, 0] ** 2 + c.w2 * x[:, 1] ** 2 + c.b
    x_tr, x_te = x[: c.n_train], x[c.n_train :]
    y_tr, y_te = y[: c.n_train], y[c.n_train :]
    mean, std = float(y_tr.mean()), float(y_tr.std())
    # Epoch-wise shuffles, cut into batches; a partial batch at an epoch's end is dropped.
    per_epoch = c.n_train // c.batch_size
    epochs = -(-c.steps // per_epoch)
    order = np.concatenate(
        [rng.permutation(c.n_train)[: per_epoch * c.batch_size] for _ in range(epochs)]
    )
    batches = order[: c.steps * c.batch_size].reshape(c.steps, c.batch_size)
    dt = np.dtype(c.dtype)
    return Data(
        x_train=(x_tr / c.x_max).astype(dt),
        y_train=((y_tr - mean) / std).astype(dt)[:, None],
        x_test=(x_te / c.x_max).astype(dt),
        y_test=((y_te - mean) / std).astype(dt)[:, None],
        y_mean=mean,
        y_std=std,
        var_y_test=float(y_te.var()),
        batches=batches,
    )


def lr_at(step: int, peak: float, config: MLPQuadraticConfig) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay to
    ``peak * min_lr_ratio`` at the last step.

    Example: with warmup=100 and steps=3000, step 0 gets peak/100, step 99 the peak, the last
    step ``peak * min_lr_ratio``.
    """
    if step < config.warmup:
        return peak * (step + 1) / config.warmup
    span = max(config.steps - 1 - config.warmup, 1)
    progress = min((step - config.warmup) / span, 1.0)
    floor = peak * config.min_lr_ratio
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def initial_weights(config: MLPQuadraticConfig) -> list[np.ndarray]:
    """The shared starting point: torch.nn.Linear's default init, drawn from ``config.seed``."""
    from scratchllm.autograd.nn import MLP

    model = MLP(config.sizes, rng=np.random.default_rng(config.seed + 1), dtype=np.float64)
    return [p.data.astype(config.dtype) for p in model.parameters()]


# ---------------------------------------------------------------------------- the five ways


def _train_scratch(config: MLPQuadraticConfig, data: Data, init: list[np.ndarray], opt_name: str):
    from scratchllm.autograd import Tensor
    from scratchllm.autograd.functional import mse_loss
    from scratchllm.autograd.nn import MLP
    from scratchllm.autograd.optim import SGD, Adam
    from scratchllm.autograd.tensor import no_grad

    model = MLP(config.sizes, rng=0, dtype=config.dtype)
    for p, w in zip(model.parameters(), init, strict=True):
        p.data[...] = w
    if opt_name == "sgd":
        opt: Any = SGD(model.parameters(), lr=config.lr_sgd, momentum=config.momentum)
        peak = config.lr_sgd
    else:
        opt = Adam(model.parameters(), lr=config.lr_adam, betas=config.betas, eps=config.eps)
        peak = config.lr_adam
    losses = []
    for step, idx in enumerate(data.batches):
        xb, yb = Tensor(data.x_train[idx]), Tensor(data.y_train[idx])  # (B, 2), (B, 1)
        loss = mse_loss(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.param_groups[0]["lr"] = lr_at(step, peak, config)
        opt.step()
        losses.append(float(loss.data))

    def predict(x: np.ndarray) -> np.ndarray:
        with no_grad():
            return model(Tensor(x)).data

    return losses, predict


def _torch_forward(params: list[Any], x: Any) -> Any:
    """The MLP written out with raw tensors: x @ W.T + b, ReLU between layers."""
    n_layers = len(params) // 2
    for i in range(n_layers):
        w, b = params[2 * i], params[2 * i + 1]
        x = x @ w.T + b  # (B, in) @ (in, out) -> (B, out)
        if i < n_layers - 1:
            x = x.relu()
    return x


def _train_torch_manual(
    config: MLPQuadraticConfig, data: Data, init: list[np.ndarray], opt_name: str
):
    import torch

    params = [torch.tensor(w, requires_grad=True) for w in init]
    x_train, y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    batches = torch.from_numpy(data.batches)
    if opt_name == "sgd":
        bufs: list[Any] = [None] * len(params)
        peak = config.lr_sgd
    else:
        m = [torch.zeros_like(p) for p in params]
        v = [torch.zeros_like(p) for p in params]
        beta1, beta2 = config.betas
        peak = config.lr_adam
    losses = []
    for step in range(config.steps):
        idx = batches[step]
        loss = ((_torch_forward(params, x_train[idx]) - y_train[idx]) ** 2).mean()
        for p in params:
            p.grad = None
        loss.backward()
        lr = lr_at(step, peak, config)
        with torch.no_grad():
            for i, p in enumerate(params):
                g = p.grad
                if opt_name == "sgd":
                    # Heavy-ball momentum as torch.optim.SGD: the first buffer is the gradient.
                    bufs[i] = (
                        g.clone() if bufs[i] is None else bufs[i].mul_(config.momentum).add_(g)
                    )
                    p -= lr * bufs[i]
                else:
                    t = step + 1
                    m[i].mul_(beta1).add_((1 - beta1) * g)
                    v[i].mul_(beta2).add_((1 - beta2) * g * g)
                    m_hat = m[i] / (1 - beta1**t)  # bias correction: the moments start at 0
                    v_hat = v[i] / (1 - beta2**t)
                    p -= lr * m_hat / (v_hat.sqrt() + config.eps)
        losses.append(loss.item())

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return _torch_forward(params, torch.from_numpy(x)).numpy()

    return losses, predict


def _train_torch_nn(config: MLPQuadraticConfig, data: Data, init: list[np.ndarray], opt_name: str):
    import torch

    layers: list[torch.nn.Module] = []
    for n_in, n_out in zip(config.sizes[:-1], config.sizes[1:]):
        layers += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1]).to(getattr(torch, config.dtype))
    with torch.no_grad():
        for p, w in zip(model.parameters(), init, strict=True):
            p.copy_(torch.from_numpy(w))
    opt = torch.optim.Adam(
        model.parameters(), lr=config.lr_adam, betas=config.betas, eps=config.eps
    )
    x_train, y_train = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    batches = torch.from_numpy(data.batches)
    losses = []
    for step in range(config.steps):
        idx = batches[step]
        loss = torch.nn.functional.mse_loss(model(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.param_groups[0]["lr"] = lr_at(step, config.lr_adam, config)
        opt.step()
        losses.append(loss.item())

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    return losses, predict


_TRAINERS = {
    "scratch-sgd": (_train_scratch, "sgd"),
    "scratch-adam": (_train_scratch, "adam"),
    "torch-manual-sgd": (_train_torch_manual, "sgd"),
    "torch-manual-adam": (_train_torch_manual, "adam"),
    "torch-nn-adam": (_train_torch_nn, "adam"),
}


def run_mlp_quadratic(config: MLPQuadraticConfig | None = None) -> MLPQuadraticResult:
    """Train each requested way and measure it on the train and test sets in y's own units."""
    config = config or MLPQuadraticConfig()
    data = make_data(config)
    init = initial_weights(config)
    result = MLPQuadraticResult(config, data.var_y_test)
    if any(w.startswith("torch") for w in config.ways):
        _warm_up_torch()  # so torch's one-time start-up cost is not billed to its first way
    with limit_threads(config.threads):
        for way in config.ways:
            result.runs[way] = _run_way(way, config, data, init)
    return result


def _warm_up_torch() -> None:
    """Import torch and take one optimizer step: the first one lazily imports a lot (seconds)."""
    import torch

    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([p])
    (p * p).sum().backward()
    opt.step()


def _run_way(way: str, config: MLPQuadraticConfig, data: Data, init: list[np.ndarray]) -> WayResult:
    train, opt_name = _TRAINERS[way]
    t0 = time.perf_counter()
    losses, predict = train(config, data, init, opt_name)
    seconds = time.perf_counter() - t0

    def mse(x: np.ndarray, y: np.ndarray) -> float:
        # Back to original units: standardised error times the target scale, squared.
        err = (predict(x).astype(np.float64) - y) * data.y_std
        return float(np.mean(err**2))

    test_mse = mse(data.x_test, data.y_test)
    return WayResult(
        way=way,
        losses=losses,
        train_mse=mse(data.x_train, data.y_train),
        test_mse=test_mse,
        test_rel=test_mse / data.var_y_test,
        seconds=seconds,
    )


# The pairs whose curves must coincide: (ours, reference).
PAIRS = (
    ("scratch-sgd", "torch-manual-sgd"),
    ("scratch-adam", "torch-manual-adam"),
    ("scratch-adam", "torch-nn-adam"),
)


def plot_losses(result: MLPQuadraticResult, path: str | Path, smooth: int = 25) -> Path:
    """Write a PNG: the loss curves (left) and how far apart the matching ways are (right).

    Left: the training-batch loss of each way, averaged over ``smooth`` steps so the trend shows
    through the batch noise (log scale). Right: ``|a - b| / b`` step by step for each pair that
    should coincide; float32 rounding stays near 1e-7, float64 near 1e-15. A ``path``
    without a suffix gets ``.png``; the path written is returned.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt

    path = Path(path)
    if not path.suffix:  # matplotlib would add ".png" itself: return the name it writes
        path = path.with_name(path.name + ".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Matching curves lie on top of each other: the dashes let the lower ones show through.
    styles = {
        "scratch-sgd": ("tab:blue", "-", 3.0),
        "torch-manual-sgd": ("tab:cyan", "--", 1.5),
        "scratch-adam": ("tab:red", "-", 3.0),
        "torch-manual-adam": ("tab:orange", "--", 1.5),
        "torch-nn-adam": ("black", ":", 1.5),
    }
    pairs = [(a, b) for a, b in PAIRS if a in result.runs and b in result.runs]
    fig, axes = plt.subplots(1, 2 if pairs else 1, figsize=(12 if pairs else 7, 4.5), squeeze=False)
    ax = axes[0, 0]
    window = max(1, min(smooth, min(len(r.losses) for r in result.runs.values())))
    kernel = np.ones(window) / window
    for way, run in result.runs.items():
        color, style, width = styles[way]
        curve = np.convolve(run.losses, kernel, mode="valid")  # running mean
        steps = np.arange(window - 1, len(run.losses))
        label = f"{way}: test MSE/var(y) {run.test_rel:.1e}"
        ax.plot(steps, curve, color=color, linestyle=style, linewidth=width, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(f"training MSE, standardised y (mean of {window} steps)")
    ax.set_title(f"MLP {result.config.sizes} on {result.config.formula()}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)

    c = result.config
    eps = float(np.finfo(c.dtype).eps)
    if not pairs:
        return _save(fig, path)
    gap = axes[0, 1]
    for a, b in pairs:
        la, lb = np.array(result.runs[a].losses), np.array(result.runs[b].losses)
        rel = np.abs(la - lb) / np.abs(lb)
        # The largest gap in each window: an envelope, not a comb of exact zeros.
        envelope = np.lib.stride_tricks.sliding_window_view(rel, window).max(axis=1)
        gap.plot(steps, np.maximum(envelope, eps / 4), linewidth=1.2, label=f"{a} vs {b}")
    gap.axhline(eps, color="grey", linestyle="--", linewidth=0.8, label=f"{c.dtype} epsilon")
    gap.set_yscale("log")
    gap.set_xlabel("step")
    gap.set_ylabel(f"relative difference of the batch loss (max of {window} steps)")
    gap.set_title(f"same start, same batches: how far apart ({c.dtype})")
    gap.grid(True, which="both", alpha=0.3)
    gap.legend(fontsize=8)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
