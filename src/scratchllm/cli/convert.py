"""`scratchllm convert --from-hf DIR --out CKPT`: a Hugging Face GPT-2 as a scratchllm model.

    scratchllm convert --from-hf ~/gpt2 --out gpt2-ckpt

reads DIR's config.json, weights (model.safetensors or pytorch_model.bin) and tokenizer
(vocab.json + merges.txt, or tokenizer.json) and writes CKPT/config.json,
CKPT/model.safetensors and, when DIR has a tokenizer, CKPT/tokenizer.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scratchllm.cli import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert a Hugging Face GPT-2 directory into a scratchllm model directory",
        description=(
            "Read a Hugging Face GPT-2 directory (config.json, model.safetensors or "
            "pytorch_model.bin, vocab.json + merges.txt or tokenizer.json) and write a "
            "scratchllm model directory: config.json, model.safetensors, tokenizer.json."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--from-hf",
        type=Path,
        required=True,
        metavar="DIR",
        help="Hugging Face GPT-2 model directory (required)",
    )
    p.add_argument(
        "--out", type=Path, required=True, metavar="CKPT_DIR", help="directory to write (required)"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite CKPT_DIR when it already holds a model",
    )
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from scratchllm.interop.gpt2 import convert_gpt2

    out = args.out.expanduser()
    if (out / "config.json").exists() and not args.force:
        raise UserError(f"{out} already holds a model; pass --force to overwrite it")
    model, tokenizer = convert_gpt2(args.from_hf, out)
    c = model.config
    print(
        f"wrote {out}: GPT {c.n_layer} layers x {c.n_head} heads x {c.n_embd} wide, "
        f"block {c.block_size}, vocab {c.vocab_size}, {model.num_parameters():,} parameters"
    )
    if tokenizer is None:
        print("no tokenizer in the source directory (no vocab.json + merges.txt or tokenizer.json)")
    else:
        print(f"tokenizer.json: byte-level BPE, {tokenizer.vocab_size:,} tokens")
    return 0
