"""`scratchllm finetune METHOD`: post-train a model, one subcommand per method.

    scratchllm finetune sft --from runs/demo --data stdlib-instructions --out runs/chat
    scratchllm finetune sft --from runs/add --data addition:digits=3 --lora-r 8 --out runs/lora
    scratchllm finetune distill --teacher runs/big --from gpt --n-layer 2 \\
        --data markov:order=3 --out runs/small
    scratchllm finetune merge runs/lora --out runs/lora-merged

Each method is an entry of ``METHODS``: its help, its settings table (torch-free, so
``--help`` is fast) and the library function that runs it. Every method gets the flags of
its table (all of ``train``'s training flags among them), ``--config``, ``--out``,
``--resume`` and ``--force``; a new method (dpo, grpo, ...) is one more entry.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from pathlib import Path

from scratchllm.cli.train import add_options


@dataclass(frozen=True)
class MethodCLI:
    help: str
    description: str
    options: str  # "module:NAME" of its settings table
    run: str  # "module:function(out, values, config=, resume=, force=)"


METHODS: dict[str, MethodCLI] = {
    "sft": MethodCLI(
        help="supervised fine-tuning: learn the replies of examples (full, LoRA or QLoRA)",
        description="Fine-tune a model on examples: the loss counts each reply and its "
        "end-of-turn token (every token with --train-on-prompt), weighted per token across "
        "micro-batches and accumulation steps, never padding. Starts from a checkpoint "
        "(--from CKPT; a tokenizer without the chat tokens gets them, and the model grows "
        "to fit) or a fresh model (--from gpt). --lora-r trains adapters on a frozen base "
        "(--quantize nf4: QLoRA); checkpoints then hold the adapter alone.",
        options="scratchllm.finetuning.settings:SFT_OPTIONS",
        run="scratchllm.finetuning.sft:sft_run",
    ),
    "distill": MethodCLI(
        help="knowledge distillation: a student learns a teacher's next-token distributions",
        description="Train a student (--from CKPT, or a fresh --from gpt/lstm/... sized by "
        "the model flags) on alpha * CE(labels) + (1 - alpha) * T^2 * D(teacher || "
        "student), D a forward KL, reverse KL or generalized JSD, on the same rows and "
        "token mask as sft. The student must read the teacher's tokenizer.",
        options="scratchllm.finetuning.settings:DISTILL_OPTIONS",
        run="scratchllm.finetuning.distill_run:distill_run",
    ),
}
TITLES = {
    "finetune": "fine-tuning",
    "data": "data (and a fresh model's tokenizer)",
    "model": "a fresh model (--from FAMILY; a value in [brackets] is the family's default)",
    "lora": "LoRA and QLoRA",
    "distill": "distillation",
}


def _load(ref: str):  # noqa: ANN202
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="post-train a model: supervised fine-tuning, distillation, LoRA/QLoRA, merging",
        description="Post-train a model into a run directory that sample, eval, chat and "
        "inspect read. Each method has its own --help.",
    )
    methods = p.add_subparsers(dest="method", metavar="<method>", required=True)
    for name, m in METHODS.items():
        sub = methods.add_parser(
            name,
            help=m.help,
            description=m.description,
            argument_default=argparse.SUPPRESS,
            epilog=f"Example: scratchllm finetune {name} " + _EXAMPLES[name],
        )
        add_options(sub, _load(m.options), TITLES, hidden=("model",))
        run = sub.add_argument_group("run")
        run.add_argument("--out", metavar="DIR", help="run directory (default: out)")
        run.add_argument(
            "--config",
            type=Path,
            metavar="FILE.toml",
            help="TOML file of settings (keys as the flags); flags override it",
        )
        run.add_argument(
            "--resume",
            action="store_true",
            help="continue the run in --out exactly where it stopped (flags given now "
            "override its settings, e.g. a larger --max-iters)",
        )
        run.add_argument("--force", action="store_true", help="start a new run over one in --out")
        sub.set_defaults(func=run_method, method_name=name)
    merge = methods.add_parser(
        "merge",
        help="fold a LoRA run's adapters into its base: a plain checkpoint",
        description="Write the model an adapter checkpoint computes as a plain checkpoint "
        "(config.json, model.safetensors, tokenizer, chat template): the base with "
        "W + (alpha / r) B A in every adapted layer (a 4-bit base dequantized).",
    )
    merge.add_argument("checkpoint", type=Path, metavar="CKPT", help="adapter run or checkpoint")
    merge.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write it")
    merge.add_argument("--best", action="store_true", help="merge best/ instead of last/")
    merge.set_defaults(func=run_merge)


_EXAMPLES = {
    "sft": "--from runs/demo --data stdlib-instructions --out runs/chat",
    "distill": "--teacher runs/big --from gpt --n-layer 2 --data markov:order=3 --out runs/s",
}


def run_method(args: argparse.Namespace) -> int:
    from scratchllm.finetuning.run import summary_lines

    m = METHODS[args.method_name]
    keys = {o.key for o in _load(m.options)}
    values = {k: v for k, v in vars(args).items() if k in keys}  # only what was typed
    run = _load(m.run)(
        Path(getattr(args, "out", "out")),
        values,
        config=getattr(args, "config", None),
        resume=getattr(args, "resume", False),
        force=getattr(args, "force", False),
    )
    print("\n".join(summary_lines(run, args.method_name)))
    return 130 if run.result.status == "interrupted" else 0


def run_merge(args: argparse.Namespace) -> int:
    from scratchllm.finetuning.adapters import merge_checkpoint

    out = merge_checkpoint(args.checkpoint, args.out, best=args.best)
    print(f"merged {args.checkpoint} into the plain checkpoint {out}")
    return 0
