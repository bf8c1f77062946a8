"""`scratchllm inspect CKPT --out DIR`: the pictures of what a saved model learned.

    scratchllm inspect runs/bigram --out look/                       # ngram_table.png
    scratchllm inspect runs/gpt --out look/ --language sticky:k=1     # embeddings, attention
    scratchllm inspect runs/gpt --out look/ --text $'\\naabb11\\n'      # attention on a text

CKPT is a checkpoint directory (config.json, model.safetensors, tokenizer.json) or a run
directory (its last/ checkpoint). What is drawn depends on the model family; the work is
``scratchllm.evaluation.inspect.inspect_checkpoint``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# What each file shows, for the one line printed per file.
_WHAT = {
    "ngram_table.png": "n-gram table: P(next | context), rule's allowed cells circled",
    "embeddings_pca.png": "token embeddings, first two principal components",
    "rnn_hidden.png": "RNN last layer's state after each token",
    "attention_grid.png": "attention maps of every layer and head",
    "attention_offsets.png": "each head's attention mass at the rule's offsets",
    "attention_offsets.json": "the same scores as JSON",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="plot what a saved model learned: n-gram table, embeddings, attention, RNN state",
        description=(
            "Write PNGs that look inside a checkpoint, chosen by its model family: a counting "
            "n-gram's table (with the language's allowed transitions marked); a 2-D PCA of the "
            "token embeddings (MLP, RNN, GPT; coloured by character class where the language "
            "has classes); a GPT's attention maps per layer and head on a text, with each "
            "head's attention mass at the distances the language's rule looks back; an RNN's "
            "hidden (and LSTM cell) state over a text. Prints one line per file written."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = p.add_argument
    add("checkpoint", type=Path, metavar="CKPT", help="checkpoint or run directory")
    add("--out", type=Path, required=True, metavar="DIR", help="directory for the PNGs")
    add(
        "--text",
        help="text the attention / RNN plots read (use $'...' in bash for a newline, the "
        "end-of-sample marker); default: the language's samples, or the model's own sample. "
        "Cut to the model's context if longer",
    )
    add(
        "--language",
        metavar="SPEC",
        help="the language the model was trained on, e.g. sticky:k=1 (default: read from "
        "the checkpoint or its directory name when recorded there)",
    )
    add(
        "--offsets",
        metavar="O,O,...",
        help="attention offsets to score (key = query - offset); default: the ones the "
        "language's rule reads (markov order k: 0..k-1, sticky k: 0..k, copy: length)",
    )
    add("--rows", type=int, default=32, help="n-gram: most contexts drawn as rows")
    add("--seed", type=int, default=0, help="seed for the default text")
    add("--device", default="cpu", help="torch device, e.g. cpu, cuda, mps")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scratchllm.cli import UserError
    from scratchllm.evaluation.inspect import format_offset_table, inspect_checkpoint

    if args.rows < 1:
        raise UserError(f"--rows ({args.rows}) must be at least 1")
    done = inspect_checkpoint(
        args.checkpoint,
        args.out,
        text=args.text,
        language=args.language,
        offsets=_parse_offsets(args.offsets),
        seed=args.seed,
        max_rows=args.rows,
        device=args.device,
    )
    ckpt, language, report = done.checkpoint, done.language, done.report
    model = ckpt.model
    print(f"checkpoint: {ckpt.path} ({model.family}, {model.num_parameters():,} parameters)")
    if language is not None:
        print(f"language: {language.spec} (from {done.language_from})")
    else:
        print("language: unknown (pass --language SPEC to mark the rule and score offsets)")
    for note in report.notes:
        print(f"note: {note}")
    read = report.attention or report.rnn
    if read is not None:
        print(f"text: {report.text!r} ({len(read.tokens)} tokens)")
    for path in report.paths:
        print(f"{path}  {_describe(path.name)}")
    if report.attention is not None and report.attention.scores is not None:
        print("\nattention mass at key = query - o, per head (* = the best head per offset):")
        print(format_offset_table(report.attention))
    return 0


def _describe(name: str) -> str:
    if name in _WHAT:
        return _WHAT[name]
    if name.startswith("attention_layer"):
        layer, head = name.removeprefix("attention_layer").removesuffix(".png").split("_head")
        return f"attention of layer {layer}, head {head}"
    return ""


def _parse_offsets(text: str | None) -> list[int] | None:
    from scratchllm.cli import UserError

    if text is None:
        return None
    try:
        offsets = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(
            f"--offsets {text!r}: give non-negative integers separated by commas, e.g. 0,1,2"
        ) from None
    if not offsets or any(o < 0 for o in offsets):
        raise UserError(
            f"--offsets {text!r}: give non-negative integers separated by commas, e.g. 0,1,2"
        )
    return offsets
