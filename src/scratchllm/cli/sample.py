"""`scratchllm sample CKPT`: text from a trained model.

    scratchllm sample runs/demo --prompt "Return the" --temperature 0.8 --num-samples 3
    scratchllm sample runs/demo --prompt "def " --stream --max-new-tokens 400
    echo "To be" | scratchllm sample runs/shakespeare        # the prompt from stdin
    scratchllm sample runs/shakespeare                       # on a terminal: a prompt loop

CKPT is a run directory written by ``scratchllm train`` (its ``last/`` checkpoint is used;
``--best`` takes ``best/``) or a checkpoint directory itself. The work is
``scratchllm.textgen``: ``load_model`` and ``complete`` (or ``iter_completions``); with
``--engine numpy`` the same calls of ``scratchllm.numpy_gpt.textgen`` (no torch).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scratchllm.models.base import LanguageModel
    from scratchllm.tokenizers.base import Tokenizer

SEPARATOR = "-" * 40


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sample",
        help="generate text from a trained model (one-shot, streamed or interactive)",
        description="Generate text from a checkpoint. The prompt comes from --prompt, "
        "else from stdin when it is piped; on a terminal with no --prompt, an interactive "
        "loop asks for prompts (an empty line or Ctrl-D ends it).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = p.add_argument
    add("checkpoint", type=Path, metavar="CKPT", help="run directory or checkpoint directory")
    add("--best", action="store_true", help="use the run's best/ checkpoint instead of last/")
    add("--prompt", default=None, help="text to continue (default: stdin, or a prompt loop)")
    add("--max-new-tokens", type=int, default=200, metavar="N", help="tokens to generate")
    add("--temperature", type=float, default=0.8, metavar="T", help="0 = greedy")
    add("--top-k", type=int, default=None, metavar="K", help="sample among the K most likely")
    add("--top-p", type=float, default=None, metavar="P", help="nucleus: smallest set with mass P")
    add(
        "--repetition-penalty", type=float, default=1.0, metavar="R", help="> 1 discourages repeats"
    )
    add("--num-beams", type=int, default=1, metavar="N", help="> 1: beam search (deterministic)")
    add("--num-samples", type=int, default=1, metavar="N", help="samples per prompt")
    add("--seed", type=int, default=None, metavar="S", help="seed; sample i uses S + i")
    add("--stop", action="append", default=None, metavar="TEXT",
        help="end a sample before this text (repeatable)")  # fmt: skip
    add("--stream", action="store_true", help="print tokens as they are generated")
    add("--device", default="cpu", help="torch device, e.g. cpu, cuda, mps")
    add("--engine", choices=("torch", "numpy"), default="torch",
        help="numpy: generate with the NumPy GPT (no torch needed; GPT checkpoints of "
        "either engine, no beam search)")  # fmt: skip
    p.set_defaults(func=run)


def _textgen(engine: str):  # noqa: ANN202
    """The module that loads and samples for ``engine`` (the same two calls in both)."""
    if engine == "numpy":
        from scratchllm.numpy_gpt import textgen
    else:
        from scratchllm import textgen
    return textgen


def run(args: argparse.Namespace) -> int:
    textgen = _textgen(args.engine)
    textgen.check_options(args.max_new_tokens, args.num_samples, args.num_beams, args.stream)
    model, tokenizer = textgen.load_model(args.checkpoint, args.best, args.device)
    if args.prompt is not None:
        sample(model, tokenizer, args.prompt, args)
        return 0
    if sys.stdin is not None and sys.stdin.isatty():
        return interactive(model, tokenizer, args)
    text = sys.stdin.read() if sys.stdin is not None else ""
    sample(model, tokenizer, text, args)
    return 0


def sample(
    model: LanguageModel, tokenizer: Tokenizer, prompt: str, args: argparse.Namespace
) -> list[str]:
    """Print ``--num-samples`` continuations of ``prompt`` (each after the prompt itself,
    separated by a line of dashes) as they come, and return them."""
    textgen = _textgen(args.engine)
    _, unknown = textgen.encode_prompt(tokenizer, prompt)
    if unknown:
        print(f"note: the tokenizer does not know {unknown!r}; it reads them as <unk>",
              file=sys.stderr)  # fmt: skip
    pieces = textgen.iter_completions(
        model,
        tokenizer,
        prompt,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        num_beams=args.num_beams,
        num_samples=args.num_samples,
        seed=args.seed,
        stop=args.stop,
        stream=args.stream,
    )
    texts: list[str] = []
    for i, piece in pieces:
        if i == len(texts):  # sample i starts
            if i:
                sys.stdout.write("\n" + SEPARATOR + "\n")
            sys.stdout.write(prompt)
            texts.append("")
        sys.stdout.write(piece)
        sys.stdout.flush()
        texts[i] += piece
    sys.stdout.write("\n")
    sys.stdout.flush()
    return texts


def interactive(model: LanguageModel, tokenizer: Tokenizer, args: argparse.Namespace) -> int:
    """A prompt loop: each line typed is continued; an empty line or Ctrl-D ends it."""
    print(
        f"{args.checkpoint}: type a prompt and press Enter (empty line or Ctrl-D to quit).",
        file=sys.stderr,
    )
    while True:
        try:
            prompt = input("prompt> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        if not prompt:
            return 0
        try:
            sample(model, tokenizer, prompt, args)
        except ValueError as e:  # a bad prompt should not end the session
            print(f"error: {e}", file=sys.stderr)
