"""`scratchllm demo`: train a small char GPT on the built-in corpus and show what it writes.

scratchllm demo                       # about two minutes on two CPU cores
scratchllm demo --out /tmp/demo --max-iters 300
scratchllm demo --chat                # pretrain, fine-tune on stdlib-instructions, ask it
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
    p.add_argument("--out", type=Path, default=None, help="run directory (default: runs/demo)")
    p.add_argument(
        "--max-iters", type=int, default=None, help="training steps (default: the demo's 1000)"
    )
    p.add_argument("--seed", type=int, default=1337, help="seed of the whole run")
    p.add_argument("--quick", action="store_true", help="a tiny model and 20 steps (for tests)")
    p.add_argument(
        "--force", action="store_true", help="replace a run already in --out (default: refuse)"
    )
    p.add_argument(
        "--chat",
        action="store_true",
        help="the chat demo (about 5 minutes): pretrain a GPT on the docstrings, fine-tune it "
        "on the stdlib-instructions questions in the chat template, ask it questions "
        "(default --out runs/chat-demo)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scratchllm.demo import run_chat_demo, run_demo

    if args.chat:
        if args.max_iters is not None:
            raise ValueError("--max-iters sets the text demo's steps; the chat demo has its own")
        run_chat_demo(out=args.out or Path("runs/chat-demo"), seed=args.seed, quick=args.quick)
        return 0
    args.out = args.out or Path("runs/demo")
    if args.max_iters is not None and args.max_iters < 1:
        raise ValueError(f"--max-iters must be at least 1, got {args.max_iters}")
    report = run_demo(
        out=args.out, max_iters=args.max_iters, seed=args.seed, quick=args.quick, force=args.force
    )
    return 0 if report.steps else 1
