"""`scratchllm eval CKPT --data FILE|SPEC` or `--task SPEC`: measure a saved model.

    scratchllm eval runs/bigram --data held_out.txt            # perplexity, bits per char/byte
    scratchllm eval runs/trigram --data markov:order=2 --json  # + valid, unique, novel, KL
    scratchllm eval runs/add-sft --task addition:digits=3 --n 500   # exact match, by length

CKPT is a run directory written by ``scratchllm train`` (its ``last/`` checkpoint, or ``best/``
with ``--best``) or a checkpoint directory (config.json, model.safetensors, tokenizer.json).
The work is ``scratchllm.evaluation.run.evaluate_checkpoint`` (``evaluate_task_checkpoint``
with ``--task``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="perplexity of a saved model on text; validity, novelty and KL on a language",
        description=(
            "Evaluate a checkpoint. On a text file (or 'stdlib-docs'): loss, perplexity and "
            "bits per token/character/byte. On a language spec (e.g. markov:order=3): the "
            "same on freshly generated held-out samples, plus the share of sampled strings "
            "that are valid, unique and novel, and the mean KL divergence to the language's "
            "true next-symbol distribution where it is known."
        ),
    )
    add = p.add_argument
    add(
        "checkpoint",
        type=Path,
        metavar="CKPT",
        help="run directory written by `scratchllm train` (its last/ checkpoint) or a "
        "checkpoint directory",
    )
    add("--best", action="store_true", help="use the run's best/ checkpoint instead of last/")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--data",
        metavar="FILE|SPEC",
        help="a UTF-8 text file, 'stdlib-docs', or a language spec such as markov:order=3",
    )
    what.add_argument(
        "--task",
        metavar="SPEC",
        help="a language with answers (addition:digits=3, copy:length=8): generate the "
        "answer to --n held-out prompts (greedy unless --temperature; through the "
        "checkpoint's chat template if it has one) and report exact-match accuracy, for "
        "addition also by operand length and by number of carries",
    )
    add("--n", type=int, default=200, metavar="N", help=_d("--task: held-out prompts"))
    add("--k", type=int, default=1, metavar="K", help=_d("--task: completions per prompt "
        "(pass@k; needs --temperature > 0)"))  # fmt: skip
    add("--json", action="store_true", help="print one JSON object (default: a table)")
    add(
        "--split",
        choices=("all", "val"),
        default="all",
        help="text only: score all of it, or only its last fraction of tokens, the "
        "fraction the run's dataset held out for validation (its data/meta.json; 10%% "
        "without one) (default: %(default)s)",
    )
    add("--samples", type=int, default=1000, metavar="M", help=_d("strings to sample"))
    add(
        "--temperature",
        type=float,
        default=None,
        metavar="T",
        help="sampling temperature, 0 = greedy (default: 1.0 for a language, 0 for a task)",
    )
    add("--seed", type=int, default=0, metavar="S", help=_d("seed for sampling and held-out data"))
    add(
        "--heldout",
        type=int,
        default=200,
        metavar="N",
        help=_d("language: held-out samples for loss and KL"),
    )
    add(
        "--train-data",
        metavar="FILE|SPEC",
        help="language: the training data (a file of samples, or the spec it was generated "
        "from) so samples can be checked for novelty (default: novelty not measured)",
    )
    add(
        "--train-samples",
        type=int,
        default=10_000,
        metavar="N",
        help=_d("with a --train-data spec: how many samples it was generated with"),
    )
    add("--train-seed", type=int, default=0, metavar="S", help=_d("--train-data spec's seed"))
    add("--device", default="cpu", help=_d("torch device, e.g. cpu, cuda, mps"))
    p.set_defaults(func=run)


def _d(text: str) -> str:
    return text + " (default: %(default)s)"


def run(args: argparse.Namespace) -> int:
    if args.task is not None:
        return run_task(args)
    from scratchllm.evaluation.perplexity import format_table
    from scratchllm.evaluation.run import evaluate_checkpoint

    if args.temperature is None:
        args.temperature = 1.0
    result = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        best=args.best,
        split=args.split,
        samples=args.samples,
        temperature=args.temperature,
        seed=args.seed,
        heldout=args.heldout,
        train_data=args.train_data,
        train_samples=args.train_samples,
        train_seed=args.train_seed,
        device=args.device,
    )
    if args.json:
        print(json.dumps(result))
        return 0
    print(format_table(result))
    for e in result.get("invalid_examples", []):
        print(f"  invalid: {e['sample']!r}: {e['reason']}")
    return 0


def run_task(args: argparse.Namespace) -> int:
    from scratchllm.evaluation.run import evaluate_task_checkpoint

    result = evaluate_task_checkpoint(
        args.checkpoint,
        args.task,
        args.n,
        best=args.best,
        temperature=args.temperature or 0.0,
        k=args.k,
        sample_seed=args.seed,
        device=args.device,
    )
    if args.json:
        print(json.dumps({"checkpoint": str(args.checkpoint), **result.to_dict()}))
        return 0
    print(f"checkpoint {args.checkpoint}")
    print(result.format_table())
    return 0
