"""`scratchllm eval CKPT --data FILE|SPEC`: measure a saved model on text or a language.

    scratchllm eval runs/bigram --data held_out.txt            # perplexity, bits per char/byte
    scratchllm eval runs/trigram --data markov:order=2 --json  # + valid, unique, novel, KL

CKPT is a run directory written by ``scratchllm train`` (its ``last/`` checkpoint, or ``best/``
with ``--best``) or a checkpoint directory (config.json, model.safetensors, tokenizer.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scratchllm.cli import UserError


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
    add(
        "--data",
        required=True,
        metavar="FILE|SPEC",
        help="a UTF-8 text file, 'stdlib-docs', or a language spec such as markov:order=3",
    )
    add("--json", action="store_true", help="print one JSON object (default: a table)")
    add(
        "--split",
        choices=("all", "val"),
        default="all",
        help="text only: score all of it, or only its last 10%% of tokens, the validation "
        "split a TokenDataset holds out (default: %(default)s)",
    )
    add("--samples", type=int, default=1000, metavar="M", help=_d("strings to sample"))
    add(
        "--temperature",
        type=float,
        default=1.0,
        metavar="T",
        help=_d("sampling temperature, 0 = greedy"),
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
    model, tokenizer = load_checkpoint(args.checkpoint, args.device, args.best)
    for name in ("samples", "heldout", "train_samples"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    corpus = _resolve(args.data, n_samples=args.heldout, seed=args.seed + 1)
    if corpus.language is not None:
        result = _eval_language(args, model, tokenizer, corpus)
    else:
        result = _eval_text(args, model, tokenizer, corpus.text)
    result = {"checkpoint": str(args.checkpoint), "data": args.data, **result}
    if args.json:
        print(json.dumps(result))
    else:
        from scratchllm.evaluation.perplexity import format_table

        print(format_table(result))
        for e in result.get("invalid_examples", []):
            print(f"  invalid: {e['sample']!r}: {e['reason']}")
    return 0


def load_checkpoint(path: Path, device: str = "cpu", best: bool = False):  # noqa: ANN201
    """The model and tokenizer of a run or checkpoint directory, checked against each other."""
    import scratchllm.models as models
    from scratchllm import tokenizers
    from scratchllm.tokenizers.base import tokenizer_file
    from scratchllm.training.checkpoint import find_checkpoint

    directory = find_checkpoint(path, "best" if best else "last")
    model = models.load(directory, device=device)
    tokenizer = tokenizers.load(directory)
    if tokenizer.vocab_size != model.vocab_size:
        raise ValueError(
            f"{tokenizer_file(directory)} has {tokenizer.vocab_size} tokens but the model in "
            f"{directory} has vocab_size {model.vocab_size}; save the tokenizer the model was "
            "trained with beside it"
        )
    return model, tokenizer


def _resolve(data: str, n_samples: int, seed: int):  # noqa: ANN202
    from scratchllm.data.corpus import resolve_data

    return resolve_data(data, n_samples=n_samples, seed=seed)


def _eval_text(args: argparse.Namespace, model, tokenizer, text: str) -> dict:  # noqa: ANN001
    from scratchllm.data.dataset import validation_start
    from scratchllm.evaluation.perplexity import evaluate_text

    if args.split == "val":
        ids = tokenizer.encode(text)
        text = tokenizer.decode(ids[validation_start(len(ids), 0.1, []) :])
    report = evaluate_text(model, tokenizer, text).to_dict()
    return {"val_loss": report.pop("loss"), **report}


def _eval_language(args: argparse.Namespace, model, tokenizer, corpus) -> dict:  # noqa: ANN001
    from scratchllm.data.languages import split_samples
    from scratchllm.evaluation.validity import evaluate_language

    train = None
    if args.train_data is not None:
        given = _resolve(args.train_data, n_samples=args.train_samples, seed=args.train_seed)
        train = given.samples if given.samples is not None else split_samples(given.text)
    report = evaluate_language(
        model,
        tokenizer,
        corpus.language,
        n_samples=args.samples,
        temperature=args.temperature,
        seed=args.seed,
        train_samples=train,
        heldout=corpus.samples,
    ).to_dict()
    order = ["val_loss", "perplexity", "bits_per_char", "valid", "unique", "novel", "kl"]
    return {k: report.pop(k) for k in order} | report
