"""`scratchllm finetune METHOD`: post-train a model, one subcommand per method.

    scratchllm finetune sft --from runs/demo --data stdlib-instructions --out runs/chat
    scratchllm finetune sft --from runs/add --data addition:digits=3 --lora-r 8 --out runs/lora
    scratchllm finetune distill --teacher runs/big --from gpt --n-layer 2 \\
        --data markov:order=3 --out runs/small
    scratchllm finetune merge runs/lora --out runs/lora-merged
    scratchllm finetune pairs --from runs/sft --task addition:digits=3 --out pairs.jsonl
    scratchllm finetune dpo --from runs/sft --data pairs.jsonl --task addition:digits=3 \\
        --out runs/dpo
    scratchllm finetune grpo --from runs/sft --data addition:digits=3 --out runs/grpo

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
    "reward": MethodCLI(
        help="a reward model: the GPT with a scalar head, Bradley-Terry on preference pairs",
        description="Train a reward model from a checkpoint on {prompt, chosen, rejected} "
        "pairs: a linear head on the last token's final hidden state scores prompt + reply, "
        "and the loss is -log sigmoid(r(chosen) - r(rejected)). Reports held-out pair "
        "accuracy (pairs split by a hash of the prompt); best/ is the best of it. `finetune "
        "ppo --reward-model` reads it.",
        options="scratchllm.finetuning.rl_settings:REWARD_OPTIONS",
        run="scratchllm.finetuning.reward_run:reward_run",
    ),
    "dpo": MethodCLI(
        help="direct preference optimisation on pairs, against a frozen reference",
        description="DPO: -log sigmoid(beta [(log pi(w) - log ref(w)) - (log pi(l) - log "
        "ref(l))]) with log-probs summed over each reply's tokens; the reference is the "
        "starting model (or --reference), frozen, or its log-probs precomputed once "
        "(--precompute-ref). Variants ipo and hinge, cDPO label smoothing. Logs chosen and "
        "rejected rewards, reward accuracy and margin, held out too; --task adds the task's "
        "held-out greedy accuracy.",
        options="scratchllm.finetuning.rl_settings:DPO_OPTIONS",
        run="scratchllm.finetuning.dpo_run:dpo_run",
    ),
    "ppo": MethodCLI(
        help="PPO, classic RLHF: a value head, a reward model or verifier, GAE, KL penalty",
        description="PPO on a task's prompts: sample, score each completion with a reward "
        "model (--reward-model) or the task's verifier, shape per-token rewards with a KL "
        "penalty to the frozen starting model, GAE advantages from a value head on the "
        "policy's body, then ppo-epochs x num-minibatches clipped policy and value updates. "
        "Logs the score beside the verifier's accuracy of the same samples.",
        options="scratchllm.finetuning.rl_settings:PPO_OPTIONS",
        run="scratchllm.finetuning.ppo_run:ppo_run",
    ),
    "grpo": MethodCLI(
        help="GRPO: G samples per prompt, group-relative advantages, the verifier's reward",
        description="GRPO on a task: G completions of each prompt, rewarded by the language's "
        "verifier (0/1, or --partial-credit per digit), advantage (r - mean) / (std + 1e-4) "
        "within the group, the clipped surrogate reduced per sequence, per token or Dr. GRPO, "
        "an optional k3 KL to the start (--beta). Logs zero-spread groups, entropy and "
        "held-out accuracy, pass@1 and pass@k.",
        options="scratchllm.finetuning.rl_settings:GRPO_OPTIONS",
        run="scratchllm.finetuning.grpo_run:grpo_run",
    ),
}
TITLES = {
    "finetune": "fine-tuning",
    "data": "data (and a fresh model's tokenizer)",
    "model": "a fresh model (--from FAMILY; a value in [brackets] is the family's default)",
    "lora": "LoRA and QLoRA",
    "distill": "distillation",
    "reward": "reward model",
    "dpo": "DPO",
    "ppo": "PPO",
    "grpo": "GRPO",
    "rollout": "sampling the rollouts",
    "eval": "evaluation",
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
    _register_pairs(methods)


def _register_pairs(methods: argparse._SubParsersAction) -> None:
    p = methods.add_parser(
        "pairs",
        help="preference pairs on-policy: sample a task, pair right with wrong answers",
        description="Sample --k completions of each of --n prompts of a task (its training "
        "side) from a checkpoint, label each with the language's verifier, and pair a right "
        "completion with a wrong one: a {prompt, chosen, rejected} .jsonl for finetune dpo "
        "and finetune reward, with FILE.report.json beside it. Reports how many prompts gave "
        "no usable pair (every sample right, or every one wrong).",
        epilog="Example: scratchllm finetune pairs --from runs/sft --task addition:digits=3 "
        "--out pairs.jsonl",
    )
    p.add_argument("--from", dest="base", required=True, metavar="CKPT", help="the policy")
    p.add_argument("--task", required=True, metavar="TASK", help="e.g. addition:digits=3")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.jsonl", help="the pairs")
    p.add_argument("--n", type=int, default=500, help="prompts (default: 500)")
    p.add_argument("--k", type=int, default=8, help="samples per prompt (default: 8)")
    p.add_argument("--temperature", type=float, default=1.0, help="of the samples (default: 1)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest")
    p.add_argument(
        "--pairs-per-prompt", type=int, default=1, help="pairs of distinct texts (default: 1)"
    )
    p.add_argument("--seed", type=int, default=0, help="prompts and samples (default: 0)")
    p.add_argument("--best", action="store_true", help="sample best/ instead of last/")
    p.add_argument("--device", default="cpu", help="cpu, cuda or mps (default: cpu)")
    p.set_defaults(func=run_pairs)


def run_pairs(args: argparse.Namespace) -> int:
    from scratchllm.finetuning.pairs import pairs_from_checkpoint

    if args.temperature <= 0:
        raise ValueError(f"--temperature ({args.temperature:g}) must be > 0: pairs need samples")
    pairs_from_checkpoint(
        args.base, args.task, args.out, n=args.n, k=args.k, best=args.best,
        temperature=args.temperature, top_k=args.top_k, seed=args.seed,
        pairs_per_prompt=args.pairs_per_prompt, device=args.device, say=print,
    )  # fmt: skip
    print(
        f"next\n  scratchllm finetune dpo --from {args.base} --data {args.out} --task {args.task}"
    )
    return 0


_EXAMPLES = {
    "sft": "--from runs/demo --data stdlib-instructions --out runs/chat",
    "distill": "--teacher runs/big --from gpt --n-layer 2 --data markov:order=3 --out runs/s",
    "reward": "--from runs/sft --data pairs.jsonl --out runs/rm",
    "dpo": "--from runs/sft --data pairs.jsonl --task addition:digits=3 --out runs/dpo",
    "ppo": "--from runs/sft --data addition:digits=3 --reward-model runs/rm --out runs/ppo",
    "grpo": "--from runs/sft --data addition:digits=3 --group-size 8 --out runs/grpo",
}


def run_method(args: argparse.Namespace) -> int:
    from scratchllm.finetuning.method_run import MethodRun
    from scratchllm.finetuning.method_run import summary_lines as method_lines
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
    lines = method_lines if isinstance(run, MethodRun) else summary_lines
    print("\n".join(lines(run, args.method_name)))
    return 130 if run.result.status == "interrupted" else 0


def run_merge(args: argparse.Namespace) -> int:
    from scratchllm.finetuning.adapters import merge_checkpoint

    out = merge_checkpoint(args.checkpoint, args.out, best=args.best)
    print(f"merged {args.checkpoint} into the plain checkpoint {out}")
    return 0
