"""`scratchllm sample CKPT`: text from a trained model.

    scratchllm sample runs/demo --prompt "Return the" --temperature 0.8 --num-samples 3
    scratchllm sample runs/demo --prompt "def " --stream --max-new-tokens 400
    echo "To be" | scratchllm sample runs/shakespeare        # the prompt from stdin
    scratchllm sample runs/shakespeare                       # on a terminal: a prompt loop

CKPT is a run directory written by ``scratchllm train`` (its ``last/`` checkpoint is used;
``--best`` takes ``best/``) or a checkpoint directory itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    model, tokenizer = load(args.checkpoint, args.best, args.device)
    if args.prompt is not None:
        sample(model, tokenizer, args.prompt, args)
        return 0
    if sys.stdin is not None and sys.stdin.isatty():
        return interactive(model, tokenizer, args)
    text = sys.stdin.read() if sys.stdin is not None else ""
    sample(model, tokenizer, text, args)
    return 0


def _check_args(args: argparse.Namespace) -> None:
    for name in ("max_new_tokens", "num_samples", "num_beams"):
        value = getattr(args, name)
        least = 0 if name == "max_new_tokens" else 1
        if value < least:
            raise ValueError(f"--{name.replace('_', '-')} must be at least {least}, got {value}")
    if args.num_beams > 1:
        if args.stream:
            raise ValueError("--stream works with sampling or greedy decoding, not --num-beams")
        if args.num_samples > args.num_beams:
            raise ValueError(
                f"--num-samples ({args.num_samples}) must not exceed --num-beams "
                f"({args.num_beams}): beam search returns its best beams"
            )


def load(path: Path, best: bool = False, device: str = "cpu") -> tuple[Any, Any]:
    """The model and tokenizer of a run or checkpoint directory, ready for generation."""
    from scratchllm.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, device=device, which="best" if best else "last")
    return ckpt.model.eval(), ckpt.tokenizer


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """The prompt's ids; an empty prompt starts from a newline (or token 0)."""
    if not text:
        try:
            return tokenizer.encode("\n") or [0]
        except ValueError:
            return [0]
    try:
        ids = tokenizer.encode(text)
    except ValueError as e:
        raise ValueError(f"the prompt cannot be encoded by this model's tokenizer: {e}") from None
    unk = getattr(tokenizer, "unk_id", None)
    if unk is not None and unk in ids:
        bad = sorted({c for c in text if tokenizer.encode(c) == [unk]})
        print(
            f"note: the tokenizer does not know {''.join(bad)!r}; it reads them as <unk>",
            file=sys.stderr,
        )
    return ids or [0]


def generation_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        stop=args.stop,
    )


def sample(model: Any, tokenizer: Any, prompt: str, args: argparse.Namespace) -> list[str]:
    """Print ``--num-samples`` continuations of ``prompt`` (each after the prompt itself)
    and return them."""
    from scratchllm.generation import generate, stream_generate

    ids = encode_prompt(tokenizer, prompt)
    seed = args.seed
    outputs: list[str] = []
    for i in range(args.num_samples if args.num_beams == 1 else 1):
        if i:
            print(SEPARATOR)
        row_seed = None if seed is None else seed + i
        if args.stream:
            sys.stdout.write(prompt)
            pieces = []
            for piece in stream_generate(
                model, ids, args.max_new_tokens, tokenizer=tokenizer, seed=row_seed,
                **generation_kwargs(args),
            ):  # fmt: skip
                sys.stdout.write(piece)
                sys.stdout.flush()
                pieces.append(piece)
            sys.stdout.write("\n")
            outputs.append("".join(pieces))
            continue
        if args.num_beams > 1:
            outputs.extend(_beams(model, tokenizer, ids, prompt, args))
            continue
        kw = generation_kwargs(args)
        out = generate(model, [ids], args.max_new_tokens, tokenizer=tokenizer, seed=row_seed, **kw)
        text = tokenizer.decode(out[0, len(ids) :].tolist())
        print(prompt + text)
        outputs.append(text)
    sys.stdout.flush()
    return outputs


def _beams(model: Any, tokenizer: Any, ids: list[int], prompt: str, args) -> list[str]:  # noqa: ANN001
    from scratchllm.generation import beam_search

    result = beam_search(
        model,
        [ids],
        args.max_new_tokens,
        args.num_beams,
        num_return_sequences=args.num_samples,
        repetition_penalty=args.repetition_penalty,
    )
    texts = []
    for r in range(args.num_samples):
        new = int(result.new_tokens[0, r])
        text = tokenizer.decode(result.sequences[0, r, len(ids) : len(ids) + new].tolist())
        if r:
            print(SEPARATOR)
        print(prompt + text)
        texts.append(text)
    return texts


def interactive(model: Any, tokenizer: Any, args: argparse.Namespace) -> int:
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
