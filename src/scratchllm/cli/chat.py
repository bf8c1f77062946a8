"""`scratchllm chat CKPT`: talk to a chat-tuned model, through its own chat template.

    scratchllm chat runs/chat --prompt "What does json.dumps do?"   # one reply, streamed
    scratchllm chat runs/chat --system "Be brief."                  # on a terminal: a conversation
    echo "What is the os module for?" | scratchllm chat runs/chat    # the message from stdin

CKPT is a run directory of ``scratchllm finetune`` (its ``last/``; ``--best`` takes
``best/``) or a checkpoint directory with a ``chat_template.json``; a base model without
one is refused (fine-tune it, or use ``scratchllm sample``). The work is
``scratchllm.textgen``: ``load_chat_model`` and ``iter_reply``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "chat",
        help="talk to a chat-tuned model (one-shot or interactive, streamed)",
        description="Answer through the checkpoint's chat template: the conversation is "
        "rendered with its role tokens, the reply streams until the end-of-turn token. "
        "With --prompt: one reply. Else a piped stdin is one message, and on a terminal an "
        "interactive conversation starts (an empty line or Ctrl-D ends it; earlier turns "
        "are kept while they fit the model's context).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = p.add_argument
    add("checkpoint", type=Path, metavar="CKPT", help="chat-tuned run or checkpoint directory")
    add("--best", action="store_true", help="use the run's best/ checkpoint instead of last/")
    add("--system", default=None, metavar="S", help="a system message before the conversation")
    add("--prompt", default=None, metavar="P", help="one user message: print the reply and stop")
    add("--max-new-tokens", type=int, default=200, metavar="N", help="longest reply, in tokens")
    add("--temperature", type=float, default=0.0, metavar="T", help="0 = greedy")
    add("--top-k", type=int, default=None, metavar="K", help="sample among the K most likely")
    add("--top-p", type=float, default=None, metavar="P", help="nucleus: smallest set with mass P")
    add("--seed", type=int, default=None, metavar="S", help="seed of the sampling")
    add("--device", default="cpu", help="torch device, e.g. cpu, cuda, mps")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scratchllm.data.chat import Message
    from scratchllm.textgen import load_chat_model

    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")
    model, template = load_chat_model(args.checkpoint, args.best, args.device)
    history = [Message("system", args.system)] if args.system is not None else []
    if args.prompt is not None:
        reply(model, template, [*history, Message("user", args.prompt)], args)
        return 0
    if sys.stdin is not None and sys.stdin.isatty():
        return conversation(model, template, history, args)
    text = sys.stdin.read().strip() if sys.stdin is not None else ""
    if not text:
        raise ValueError("no message: give --prompt, pipe one in, or run on a terminal")
    reply(model, template, [*history, Message("user", text)], args)
    return 0


def reply(model, template, messages, args) -> str:  # noqa: ANN001
    """Print the assistant's reply as it comes; return it."""
    from scratchllm.textgen import iter_reply

    text = ""
    for piece in iter_reply(
        model,
        template,
        messages,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
    ):
        sys.stdout.write(piece)
        sys.stdout.flush()
        text += piece
    sys.stdout.write("\n")
    sys.stdout.flush()
    return text


def conversation(model, template, history, args) -> int:  # noqa: ANN001
    """Turns until an empty line or Ctrl-D; each reply joins the history."""
    from scratchllm.data.chat import Message

    print(f"{args.checkpoint}: chat (empty line or Ctrl-D to quit).", file=sys.stderr)
    while True:
        try:
            line = input("you> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        if not line.strip():
            return 0
        history.append(Message("user", line))
        sys.stdout.write("assistant> ")
        try:
            answer = reply(model, template, history, args)
        except ValueError as e:  # e.g. a character the tokenizer lacks: keep talking
            print(f"error: {e}", file=sys.stderr)
            history.pop()
            continue
        history.append(Message("assistant", answer))
