"""`scratchllm serve CKPT`: an OpenAI-compatible API and a playground page for a checkpoint.

    scratchllm serve runs/shakespeare                       # http://127.0.0.1:8000
    scratchllm serve runs/shakespeare --port 0              # any free port (printed)
    scratchllm serve runs/chat --api-key "$KEY" --host 0.0.0.0

Then open the printed address in a browser, or point any OpenAI client at ``<url>/v1``.
See docs/serving.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from scratchllm.serving.config import ServerConfig

    d = ServerConfig()
    p = subparsers.add_parser(
        "serve",
        help="serve a checkpoint: OpenAI-compatible API and a playground page",
        description="Serve a checkpoint over HTTP: /v1/completions and /v1/chat/completions "
        "(chat only when the checkpoint has a chat template) as the OpenAI API has them, "
        "tokenizer and attention endpoints, and a playground page at /.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = p.add_argument
    add("checkpoint", type=Path, metavar="CKPT", help="run directory or checkpoint directory")
    add("--best", action="store_true", help="serve the run's best/ checkpoint instead of last/")
    add("--host", default=d.host, help="address to listen on (0.0.0.0: every interface)")
    add("--port", type=int, default=d.port, help="port to listen on (0: a free one)")
    add("--model-name", default=None, metavar="NAME",
        help="the model id clients send (default: the run directory's name)")  # fmt: skip
    add("--api-key", default=None, metavar="KEY",
        help="require 'Authorization: Bearer KEY' on the API (the page asks for it)")  # fmt: skip
    add("--max-queue", type=int, default=d.max_queue, metavar="N",
        help="requests that may wait for the model; more get 503")  # fmt: skip
    add("--max-total-tokens", type=int, default=None, metavar="N",
        help="prompt + max_tokens limit per request (default: the larger of the model's "
        "context and 2048)")  # fmt: skip
    add("--default-max-tokens", type=int, default=d.default_max_tokens, metavar="N",
        help="max_tokens of a completion request that sends none")  # fmt: skip
    add("--max-n", type=int, default=d.max_n, metavar="N", help="most choices per request")
    add("--max-body-bytes", type=int, default=d.max_body_bytes, metavar="B",
        help="larger request bodies get 413")  # fmt: skip
    add(
        "--stream-interval",
        type=float,
        default=d.stream_interval,
        metavar="S",
        help="seconds between writes of a stream (the first token goes at once); lower is "
        "smoother, higher leaves the model more of the CPU",
    )
    add("--device", default="cpu", help="torch device, e.g. cpu, cuda, mps")
    add(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch CPU threads for the model (default: torch's choice, one per core)",
    )
    add("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level (info logs every request)")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from scratchllm.serving import ServerConfig
    from scratchllm.serving.server import Server, load_engine

    config = ServerConfig(
        host=args.host,
        port=args.port,
        model_name=args.model_name,
        api_key=args.api_key,
        max_queue=args.max_queue,
        max_total_tokens=args.max_total_tokens,
        default_max_tokens=args.default_max_tokens,
        max_n=args.max_n,
        max_body_bytes=args.max_body_bytes,
        stream_interval=args.stream_interval,
    )
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    engine = load_engine(args.checkpoint, config, device=args.device, best=args.best)
    server = Server(engine, log_level=args.log_level)
    chat = "chat and completions" if engine.chat_format else "completions only: no chat template"
    print(f"serving {engine.name!r} on {server.url} ({chat})", file=sys.stderr)
    print(f"  playground: {server.url}/   API: {server.url}/v1   Ctrl-C stops", file=sys.stderr)
    server.run()
    return 0
