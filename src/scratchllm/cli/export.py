"""`scratchllm export CKPT --to hf DIR`: a checkpoint as a Hugging Face model directory.

    scratchllm export runs/bpe-gpt --to hf hf/bpe-gpt
    scratchllm export runs/shakespeare --to hf hf/shakespeare --no-tokenizer   # char tokenizer

``GPT2LMHeadModel.from_pretrained(DIR)`` then gives the same logits, and
``AutoTokenizer.from_pretrained(DIR)`` the same ids (byte-level BPE checkpoints).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FORMATS = ("hf",)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a checkpoint as a Hugging Face GPT-2 directory",
        description="Export a GPT checkpoint with GPT-2's architecture (learned positions, "
        "LayerNorm, a dense MLP, biases) as a Hugging Face directory: config.json, "
        "model.safetensors and, for a byte-level BPE, the tokenizer files. Anything "
        "without a GPT-2 equivalent (rope, RMSNorm, MoE, a char or word tokenizer) is an "
        "error that names it. An earlier export in DIR is replaced.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = p.add_argument
    add("checkpoint", type=Path, metavar="CKPT", help="run directory or checkpoint directory")
    add(
        "--to",
        nargs=2,
        required=True,
        metavar=("FORMAT", "DIR"),
        help=f"the format ({', '.join(FORMATS)}) and the directory to write",
    )
    add("--best", action="store_true", help="export the run's best/ checkpoint instead of last/")
    add(
        "--no-tokenizer",
        action="store_true",
        help="write the model only (for a tokenizer Hugging Face cannot read)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    fmt, out = args.to
    if fmt not in FORMATS:
        raise ValueError(f"--to {fmt!r}: unknown format; choose one of {', '.join(FORMATS)}")
    from scratchllm.checkpoint import load_checkpoint
    from scratchllm.interop.hf_export import export_hf

    ckpt = load_checkpoint(
        args.checkpoint, which="best" if args.best else "last", require_tokenizer=False
    )
    path = export_hf(ckpt.model, ckpt.tokenizer, out, not args.no_tokenizer, str(ckpt.path))
    print(f"wrote {path} (load it with GPT2LMHeadModel.from_pretrained({str(path)!r}))")
    print("  files: " + ", ".join(sorted(f.name for f in path.iterdir())), file=sys.stderr)
    return 0
