"""The C++ decode step on one thread against every thread, as the model grows: the figures
behind ``decode_kernel.threads_for``, which keeps a model to one thread while its weights fit
in half a core's L2 cache.

Each size is a random GPT (vocabulary 65, block 512); each row times greedy ``generate``,
batch 1, a 4-token prompt, 256 new tokens, KV cache, alternating the thread counts over
rounds (medians). The last column is what ``threads_for`` picks on this machine. The step's
results do not depend on its thread count (``tests/models/test_decode_kernel.py``).

    python benchmarks/bench_decode_threads.py
    python benchmarks/bench_decode_threads.py --sizes 4x4x64 4x4x128 --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from scratchllm.configs import GPTConfig
from scratchllm.generation import generate
from scratchllm.models import GPT, decode_kernel
from scratchllm.models.gpt_decode import build_plan

SIZES = ["2x2x64", "4x4x64", "4x4x96", "3x4x128", "4x4x128", "4x4x160", "6x6x192"]


def size(text: str) -> tuple[int, int, int]:
    """``LxHxC``: layers, heads, width."""
    try:
        L, H, C = (int(v) for v in text.split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"a size is LAYERSxHEADSxWIDTH, e.g. 4x4x128: {text!r}"
        ) from None
    if min(L, H, C) < 1 or C % H:
        raise argparse.ArgumentTypeError(f"{text}: the width must be a multiple of the heads")
    return L, H, C


def tokens_per_second(model: GPT, threads: int, new: int) -> float:
    """Greedy decoding speed with the step forced onto ``threads`` threads."""
    chosen = decode_kernel.threads_for
    decode_kernel.threads_for = lambda plan, batch_size: threads
    try:
        generate(model, [[1, 2, 3, 4]], 8, temperature=0)  # warm-up
        t0 = time.perf_counter()
        generate(model, [[1, 2, 3, 4]], new, temperature=0)
        return new / (time.perf_counter() - t0)
    finally:
        decode_kernel.threads_for = chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", type=size, default=[size(s) for s in SIZES])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (medians)")
    parser.add_argument("--new", type=int, default=256, help="new tokens per generate call")
    args = parser.parse_args()
    if decode_kernel.load() is None:
        parser.error(f"the C++ decode step is unavailable: {decode_kernel.failure()}")
    every = torch.get_num_threads()
    l2 = decode_kernel.l2_cache_bytes()
    l2_text = f"{l2 / 2**20:.1f} MB" if l2 else "unknown"
    print(f"torch {torch.__version__}, {every} threads; one core's L2: {l2_text}; one thread "
          f"below {decode_kernel.one_thread_below() / 2**20:.2f} MB of weights")  # fmt: skip
    if every == 1:
        print("(torch has one thread here, so both columns time one thread)")
    print(f"{'model':<9} {'weights':>8} {'1 thread':>9} {f'{every} threads':>10} {'ratio':>6} "
          f"{'picked':>6}")  # fmt: skip
    for L, H, C in args.sizes:
        torch.manual_seed(0)
        config = GPTConfig(vocab_size=65, block_size=512, n_layer=L, n_head=H, n_embd=C)
        model = GPT(config).eval()
        plan = build_plan(model, 1)
        weights = 4 * (plan.wte.numel() + sum(m.weight.numel() for ly in plan.layers for m in ly))
        speeds: dict[int, list[float]] = {1: [], every: []}
        for _ in range(args.rounds):
            for n in speeds:
                speeds[n].append(tokens_per_second(model, n, args.new))
        one, many = (statistics.median(speeds[n]) for n in (1, every))
        print(f"{L}x{H}x{C:<5} {weights / 2**20:6.2f}MB {one:9.0f} {many:10.0f} "
              f"{many / one:5.2f}x {decode_kernel.threads_for(plan, 1):>6}")  # fmt: skip
    print("\ntokens/s of greedy decoding, batch 1; ratio: every thread over one")


if __name__ == "__main__":
    main()
