"""Forward + backward time of each Tensor op against PyTorch CPU, side by side in one process.

Each row builds the same float32 inputs for both engines, then times "run the op, reduce
with a fixed upstream gradient, backward" (leaf gradients reset each time). Shapes are those
of the small models the from-scratch engine trains: an MLP batch of 256 with hidden 64 and a
character-level language model with 512 positions, width 64 and 65 symbols. The last row is
the forward and backward of the whole Linear -> ReLU -> Linear -> MSE network.

    .venv/bin/python benchmarks/bench_autograd_ops.py [--repeat 200]

On a loaded machine, multi-threaded timings of both libraries swing wildly (threads wait for
each other); ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1`` in front gives a steadier
single-thread comparison.

Ratio = ours / torch: below 1 means the NumPy engine is faster.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

import scratchllm.autograd.functional as F
from scratchllm.autograd import Tensor

TF = torch.nn.functional


def best_time(step: Callable[[], None], repeat: int) -> float:
    """Median of ``repeat`` timed calls after a short warm-up (the machine is noisy)."""
    for _ in range(5):
        step()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def cases(rng: np.random.Generator) -> dict[str, tuple[list[np.ndarray], Callable, Callable]]:
    """name -> (float inputs, ours(*Tensors), theirs(*torch tensors))."""
    f32 = np.float32

    def r(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(f32)

    ids = rng.integers(0, 65, size=(8, 64))
    targets = rng.integers(0, 65, size=512)
    tids, ttargets = torch.tensor(ids), torch.tensor(targets)
    causal = np.triu(np.ones((64, 64), dtype=bool), k=1)
    tcausal = torch.tensor(causal)
    x_in = r(256, 2)
    y_out = r(256, 1)
    tx_in, ty_out = torch.tensor(x_in), torch.tensor(y_out)

    return {
        "matmul (256,64)@(64,64)": (
            [r(256, 64), r(64, 64)],
            lambda a, b: a @ b,
            lambda a, b: a @ b,
        ),
        "batched matmul (8,4,64,16)@(..,16,64)": (
            [r(8, 4, 64, 16), r(8, 4, 16, 64)],
            lambda a, b: a @ b,
            lambda a, b: a @ b,
        ),
        "add bias (256,64)+(64,)": ([r(256, 64), r(64)], lambda a, b: a + b, lambda a, b: a + b),
        "mul (256,64)*(256,64)": ([r(256, 64), r(256, 64)], lambda a, b: a * b, lambda a, b: a * b),
        "relu (256,64)": ([r(256, 64)], lambda a: a.relu(), lambda a: a.relu()),
        "gelu exact (512,256)": ([r(512, 256)], lambda a: a.gelu(), lambda a: TF.gelu(a)),
        "gelu tanh (512,256)": (
            [r(512, 256)],
            lambda a: a.gelu("tanh"),
            lambda a: TF.gelu(a, approximate="tanh"),
        ),
        "softmax (8,4,64,64)": (
            [r(8, 4, 64, 64)],
            lambda a: a.softmax(-1),
            lambda a: a.softmax(-1),
        ),
        "masked_fill+softmax (8,4,64,64)": (
            [r(8, 4, 64, 64)],
            lambda a: F.masked_fill(a, causal, -np.inf).softmax(-1),
            lambda a: a.masked_fill(tcausal, -torch.inf).softmax(-1),
        ),
        "log_softmax (512,65)": (
            [r(512, 65)],
            lambda a: a.log_softmax(-1),
            lambda a: a.log_softmax(-1),
        ),
        "cross_entropy (512,65)": (
            [r(512, 65)],
            lambda a: F.cross_entropy(a, targets),
            lambda a: TF.cross_entropy(a, ttargets),
        ),
        "layer_norm (512,64)": (
            [r(512, 64), r(64), r(64)],
            lambda x, w, b: F.layer_norm(x, 64, w, b),
            lambda x, w, b: TF.layer_norm(x, (64,), w, b),
        ),
        "embedding (8,64) from (65,64)": (
            [r(65, 64)],
            lambda w: F.embedding(ids, w),
            lambda w: TF.embedding(tids, w),
        ),
        "sum(axis=0) (256,64)": ([r(256, 64)], lambda a: a.sum(0), lambda a: a.sum(0)),
        "transpose+reshape (8,64,4,16)": (
            [r(8, 64, 4, 16)],
            lambda a: a.transpose(1, 2).reshape(8, 4, 1024),
            lambda a: a.transpose(1, 2).reshape(8, 4, 1024),
        ),
        "MLP 2->64->1 fwd+bwd, batch 256": (
            [r(2, 64) * 0.5, r(64) * 0.1, r(64, 1) * 0.1, r(1) * 0.1],
            lambda w1, b1, w2, b2: F.mse_loss(((Tensor(x_in) @ w1 + b1).relu() @ w2) + b2, y_out),
            lambda w1, b1, w2, b2: TF.mse_loss(((tx_in @ w1 + b1).relu() @ w2) + b2, ty_out),
        ),
    }


def time_case(inputs, ours, theirs, rng: np.random.Generator, repeat: int) -> tuple[float, float]:
    """Seconds per forward + backward for our engine and for torch, on copies of ``inputs``."""
    xs = [Tensor(a.copy(), requires_grad=True) for a in inputs]
    ts = [torch.tensor(a, requires_grad=True) for a in inputs]
    g = rng.standard_normal(ours(*xs).shape).astype(np.float32)
    tg = torch.tensor(g)

    def step_ours() -> None:
        for x in xs:
            x.grad = None
        ours(*xs).backward(g)

    def step_torch() -> None:
        for t in ts:
            t.grad = None
        theirs(*ts).backward(tg)

    return best_time(step_ours, repeat), best_time(step_torch, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200, help="timed calls per op (default 200)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}")
    header = f"{'op (forward + backward, float32)':42s} {'ours µs':>9s} {'torch µs':>9s}"
    print(f"{header} {'ratio':>6s}")
    for name, (inputs, ours, theirs) in cases(rng).items():
        t_ours, t_torch = time_case(inputs, ours, theirs, rng, args.repeat)
        print(f"{name:42s} {t_ours * 1e6:9.1f} {t_torch * 1e6:9.1f} {t_ours / t_torch:6.2f}")


if __name__ == "__main__":
    main()
