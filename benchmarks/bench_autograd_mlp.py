"""One training step of the quadratic-task MLP: our NumPy Tensor engine vs PyTorch on CPU.

A step is forward + MSE loss + backward + Adam update (+ zero_grad), batch 256, MLP
[2, 64, 64, 1], float32, both engines starting from the same weights. Timed side by side in one
process: blocks of steps alternate between the engines so that a busy machine slows both alike;
the figure is the median over blocks of the mean step time. Goal: ours within 1.5x of PyTorch.

    python benchmarks/bench_autograd_mlp.py [--blocks 25] [--steps-per-block 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from scratchllm.autograd import Tensor, nn, optim
from scratchllm.autograd import functional as F
from scratchllm.experiments import limit_threads
from scratchllm.experiments.mlp_quadratic import MLPQuadraticConfig, make_data

SIZES = [2, 64, 64, 1]
BATCH = 256


def make_steps(dtype: str = "float32"):
    """Two zero-argument step functions (ours, torch) over the same weights and batches."""
    data = make_data(MLPQuadraticConfig(n_train=4096, batch_size=BATCH, steps=64, dtype=dtype))
    xs = [data.x_train[i] for i in data.batches]  # (B, 2) each
    ys = [data.y_train[i] for i in data.batches]  # (B, 1) each

    ours = nn.MLP(SIZES, rng=0, dtype=dtype)
    layers: list[torch.nn.Module] = []
    for n_in, n_out in zip(SIZES[:-1], SIZES[1:]):
        layers += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
    theirs = torch.nn.Sequential(*layers[:-1]).to(getattr(torch, dtype))
    with torch.no_grad():
        for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
            q.copy_(torch.from_numpy(p.data))
    opt_ours = optim.Adam(ours.parameters(), lr=1e-3)
    opt_theirs = torch.optim.Adam(theirs.parameters(), lr=1e-3)
    xts = [torch.from_numpy(x) for x in xs]
    yts = [torch.from_numpy(y) for y in ys]
    counter = {"ours": 0, "torch": 0}

    def step_ours() -> float:
        i = counter["ours"] % len(xs)
        counter["ours"] += 1
        loss = F.mse_loss(ours(Tensor(xs[i])), Tensor(ys[i]))
        opt_ours.zero_grad()
        loss.backward()
        opt_ours.step()
        return loss.data

    def step_torch() -> float:
        i = counter["torch"] % len(xs)
        counter["torch"] += 1
        loss = torch.nn.functional.mse_loss(theirs(xts[i]), yts[i])
        opt_theirs.zero_grad()
        loss.backward()
        opt_theirs.step()
        return loss.detach()

    return step_ours, step_torch


def time_pair(blocks: int, per_block: int, warmup: int) -> tuple[float, float]:
    """Median (over blocks) seconds per step for ours and torch, interleaved."""
    step_ours, step_torch = make_steps()
    # Sanity: both engines see the same first batch from the same weights.
    a, b = float(step_ours()), float(step_torch())
    if abs(a - b) > 1e-5 * abs(b):
        raise AssertionError(f"first-step losses differ: ours {a}, torch {b}")
    for _ in range(warmup):
        step_ours()
        step_torch()
    ours, theirs = [], []
    for _ in range(blocks):
        for fn, out in ((step_ours, ours), (step_torch, theirs)):
            t0 = time.perf_counter()
            for _ in range(per_block):
                fn()
            out.append((time.perf_counter() - t0) / per_block)
    return statistics.median(ours), statistics.median(theirs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=25, help="timed blocks per engine")
    ap.add_argument("--steps-per-block", type=int, default=10, help="steps in each block")
    ap.add_argument("--warmup", type=int, default=20, help="untimed steps per engine first")
    args = ap.parse_args()

    print(f"one training step: MLP {SIZES}, batch {BATCH}, float32, forward+backward+Adam")
    print(f"{'threads':<9} {'scratchllm':>12} {'torch':>12} {'ours/torch':>11}")
    for threads in (1, None):
        with limit_threads(threads):
            label = str(threads) if threads else f"default ({torch.get_num_threads()})"
            ours, theirs = time_pair(args.blocks, args.steps_per_block, args.warmup)
        print(f"{label:<9} {ours * 1e6:>10.0f}us {theirs * 1e6:>10.0f}us {ours / theirs:>10.2f}x")
    print("goal: ours/torch <= 1.5")


if __name__ == "__main__":
    main()
