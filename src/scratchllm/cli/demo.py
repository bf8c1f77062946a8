"""`scratchllm demo`: train a small char GPT on the built-in corpus and show what it writes.

scratchllm demo                       # about two minutes on two CPU cores
scratchllm demo --out /tmp/demo --max-iters 300
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train a small GPT on Python's docstrings in ~2 minutes and sample from it",
        description="Train a 4-layer character-level GPT on the built-in corpus (Python's "
        "standard-library docstrings: no download) on the CPU, then print samples at "
        "temperatures 0 (greedy), 0.5, 0.8 and 1.2, the validation loss, where the run "
        "directory is and how to continue.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run directory")
    p.add_argument(
        "--max-iters", type=int, default=None, help="training steps (default: the demo's 1000)"
    )
    p.add_argument("--seed", type=int, default=1337, help="seed of the whole run")
    p.add_argument("--quick", action="store_true", help="a tiny model and 20 steps (for tests)")
    p.add_argument(
        "--force", action="store_true", help="replace a run already in --out (default: refuse)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scratchllm.demo import run_demo

    if args.max_iters is not None and args.max_iters < 1:
        raise ValueError(f"--max-iters must be at least 1, got {args.max_iters}")
    report = run_demo(
        out=args.out, max_iters=args.max_iters, seed=args.seed, quick=args.quick, force=args.force
    )
    return 0 if report.steps else 1
