"""Post-training I, measured exactly: SFT on addition, LoRA / QLoRA against full SFT,
distillation against hard labels on markov:order=3, and the chat demo, timed.

Every run goes through the library the CLI calls (``finetuning.sft.sft_run``,
``finetuning.distill_run.distill_run``, ``evaluation.run.evaluate_task_checkpoint``,
``evaluate_checkpoint``), so each row of a table is a run directory that ``scratchllm eval``,
``sample``, ``chat`` and ``inspect`` read again. Runs of one figure train side by side, one
process and one torch thread each (``--jobs``, default 2: on a 2-core machine shared with
others, two single-threaded runs go many times faster than one two-threaded run).

    python benchmarks/bench_finetune.py addition   # fig. 1 and 2: plain / reverse, answer-only
                                                   # vs loss on everything; by length, carries
    python benchmarks/bench_finetune.py addition --operands uniform --formats plain --losses answer
    python benchmarks/bench_finetune.py lora       # fig. 3: full vs LoRA vs QLoRA
    python benchmarks/bench_finetune.py distill    # fig. 4: KL(true || student), 3 % and 100 %
    python benchmarks/bench_finetune.py chat       # fig. 5: the chat demo, timed
    python benchmarks/bench_finetune.py all --out bench-ft
    python benchmarks/bench_finetune.py addition --quick   # tiny, to check the script runs

Each subcommand prints its tables and writes them to ``OUT/<figure>.md``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

ADD = "addition:digits=3,operands={},format={}"  # training examples (balanced lengths unless told)
ADD_EVAL = "addition:digits=3,format={}"  # held-out prompts: the task as it is, uniform
GPT = dict(n_layer=4, n_head=4, n_embd=128, block_size=16, pos="rope", dropout=0.0)
SFT = dict(batch_size=128, lr=2e-3, min_lr=1e-4, warmup_iters=100, eval_iters=5,
           validity_samples=100, log_interval=50)  # fmt: skip
QUICK = dict(n_layer=1, n_head=2, n_embd=32, max_iters=20, eval_interval=10, batch_size=16,
             warmup_iters=2, validity_samples=10)  # fmt: skip
MARKOV = "markov:order=3"


# -- running --------------------------------------------------------------------------------


def _job(kind: str, out: str, values: dict[str, Any]) -> dict[str, Any]:
    """One run in its own process (one torch thread): its seconds and result."""
    import torch

    torch.set_num_threads(1)
    t = time.perf_counter()
    if kind == "train":
        from scratchllm.training.run import train_run

        run = train_run(out, values, force=True, say=lambda s: None)
    elif kind == "sft":
        from scratchllm.finetuning.sft import sft_run

        run = sft_run(out, values, force=True, say=lambda s: None)
    else:
        from scratchllm.finetuning.distill_run import distill_run

        run = distill_run(out, values, force=True, say=lambda s: None)
    r = run.result
    return {"out": out, "seconds": time.perf_counter() - t, "steps": r.steps,
            "best_val": r.best_val_loss, "best_step": r.best_step}  # fmt: skip


def run_all(jobs: list[tuple[str, str, dict]], n_jobs: int) -> list[dict[str, Any]]:
    with mp.get_context("spawn").Pool(n_jobs) as pool:
        return pool.starmap(_job, jobs)


def task_result(run: str | Path, task: str, n: int) -> Any:
    from scratchllm.evaluation.run import evaluate_task_checkpoint

    return evaluate_task_checkpoint(run, task, n)


def emit(out: Path, name: str, text: str) -> None:
    print(text, flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(text + "\n", encoding="utf-8")


def _table(head: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _groups(result: Any) -> str:
    """The by-length and by-carries tables of a task result, side by side in markdown."""
    parts = []
    for name in ("length", "lengths", "carries"):
        rows = result.by.get(name, [])
        parts.append(
            f"by {name}\n\n"
            + _table(
                [name, "prompts", "accuracy"], [[g.key, g.n, f"{g.accuracy:.4f}"] for g in rows]
            )
        )
    return "\n\n".join(parts)


# -- figure 1 and 2: addition -----------------------------------------------------------------


def addition(args: argparse.Namespace) -> None:
    """digits=3, 10,000 training examples, from scratch: plain and reverse answers, with the
    loss on the answer only (SFT) and on every token (same rows, same steps)."""
    out = Path(args.out) / "addition"
    steps = args.steps or 5000
    base = {**GPT, **SFT, "base": "gpt", "samples": args.samples, "max_iters": steps,
            "eval_interval": max(steps // 10, 1), "device": "cpu", "quiet": True}  # fmt: skip
    if args.quick:
        base.update(QUICK, samples=500)
    jobs = []
    for fmt in args.formats.split(","):
        for loss in args.losses.split(","):
            everything = loss == "all"
            name = f"{fmt}-{loss}" + ("" if args.operands == "balanced" else f"-{args.operands}")
            values = {**base, "data": _add(args, fmt), "train_on_prompt": everything}
            jobs.append(("sft", str(out / name), values))
    done = run_all(jobs, args.jobs)
    rows, details, checks = [], [], []
    for (_, path, values), d in zip(jobs, done):
        fmt = values["data"].rsplit("=", 1)[1]
        r = task_result(path, ADD_EVAL.format(fmt), args.n)
        if not values["train_on_prompt"]:  # issue 13's bars for answer-only SFT
            checks.append(_check(f"{fmt}, answer only", r.accuracy, ADD_TARGETS[fmt]))
        loss = "every token" if values["train_on_prompt"] else "the answer only"
        rows.append([fmt, loss, f"{r.accuracy:.4f}", d["steps"], f"{d['seconds']:.0f}"])
        details.append(f"### {fmt}, loss on {loss}: {r.accuracy:.2%} of {r.n}\n\n{_groups(r)}")
    head = ["answer", "loss on", f"exact match ({args.n} held-out)", "steps", "seconds"]
    text = (
        f"## Addition, digits=3: {base['samples']:,} training examples ({_add(args, 'F')}), a "
        f"fresh {base['n_layer']}x{base['n_embd']} GPT, {base['max_iters']} steps of "
        f"{base['batch_size']}\n\n"
        f"Held-out prompts: {ADD_EVAL.format('F')} (uniform operands), greedy.\n\n"
        + _table(head, rows)
        + "\n\n"
        + "\n".join(checks)
        + "\n\n"
        + "\n\n".join(details)
    )
    emit(Path(args.out), "addition" + ("" if args.operands == "balanced" else "-uniform"), text)


ADD_TARGETS = {"reverse": 0.995, "plain": 0.85}


def _add(args: argparse.Namespace, fmt: str) -> str:
    return ADD.format(args.operands, fmt)


def _check(what: str, value: float, bar: float, at_most: bool = False) -> str:
    met = value <= bar if at_most else value >= bar
    return (f"- target {what} {'<=' if at_most else '>='} {bar:g}: {value:.4f} "
            f"({'met' if met else 'NOT met'})")  # fmt: skip


# -- figure 3: LoRA and QLoRA -------------------------------------------------------------------


def lora(args: argparse.Namespace) -> None:
    """A GPT pretrained on the plain addition stream is fine-tuned to write reversed answers:
    full fine-tuning, LoRA (r = 4 on every block's linear layers) and QLoRA (the same on an
    NF4 base with double quantization), same rows and steps."""
    from scratchllm.checkpoint import load_checkpoint
    from scratchllm.models.lora import base_storage
    from scratchllm.models.nf4 import NF4Linear

    out = Path(args.out) / "lora"
    pre_steps = steps = args.steps or 3000  # 1,500 fine-tuning steps left LoRA 4 points short
    pre = {**{k: v for k, v in GPT.items() if k != "block_size"}, "block_size": 64,
           "data": "addition:digits=3,operands=balanced", "samples": 20_000,
           "max_iters": pre_steps, "batch_size": 32, "lr": 2e-3, "warmup_iters": 100,
           "eval_interval": pre_steps, "eval_iters": 5, "validity_samples": 0,
           "device": "cpu", "quiet": True}  # fmt: skip
    if args.quick:
        pre.update({k: v for k, v in QUICK.items() if k != "validity_samples"}, samples=500)
    run_all([("train", str(out / "base"), pre)], 1)
    ft = {**SFT, "base": str(out / "base"), "data": _add(args, "reverse"),
          "samples": args.samples, "max_iters": steps, "eval_interval": max(steps // 5, 1),
          "device": "cpu", "quiet": True, "validity_samples": 0}  # fmt: skip
    if args.quick:
        ft.update(QUICK, max_iters=20, samples=500, validity_samples=0)
        for k in ("n_layer", "n_head", "n_embd"):
            ft.pop(k)
    variants = {
        "full": {},
        "lora": {"lora_r": 4, "lora_alpha": 8.0, "lr": 4e-3},
        "qlora": {
            "lora_r": 4,
            "lora_alpha": 8.0,
            "lr": 4e-3,
            "quantize": "nf4",
            "double_quant": True,
        },  # fmt: skip
    }
    jobs = [("sft", str(out / name), {**ft, **v}) for name, v in variants.items()]
    done = run_all(jobs, args.jobs)
    before = task_result(out / "base", ADD_EVAL.format("reverse"), args.n).accuracy
    rows, got = [], {}
    for (_, path, _), d, name in zip(jobs, done, variants):
        model = load_checkpoint(path).model
        total = sum(p.numel() for p in model.parameters()) + sum(
            m.in_features * m.out_features for m in model.modules() if isinstance(m, NF4Linear)
        )
        trainable = total if name == "full" else _trainable(path)
        n_bytes, n_params = base_storage(model)
        r = task_result(path, ADD_EVAL.format("reverse"), args.n)
        share = f"{trainable:,} ({trainable / total:.2%})"
        got[name] = (r.accuracy, trainable / total, n_bytes / n_params)
        rows.append([name, f"{r.accuracy:.4f}", share, f"{n_bytes / n_params:.3f}",
                     f"{d['seconds']:.0f}"])  # fmt: skip
    text = (
        "## LoRA and QLoRA: a plain-addition base taught to answer in reverse\n\n"
        f"Base: a fresh {pre['n_layer']}x{pre['n_embd']} GPT, {pre['max_iters']} steps on the "
        f"plain addition stream (reversed answers: {before:.2%} before fine-tuning). Then "
        f"{ft['max_iters']} steps of {ft['batch_size']} examples of {_add(args, 'reverse')}; "
        f"{args.n} held-out prompts, greedy.\n\n"
        + _table(
            ["fine-tuning", "exact match", "trainable", "frozen base B/param", "seconds"], rows
        )  # fmt: skip
        + "\n\n"
        + "\n".join(
            [
                _check("LoRA's trainable share", got["lora"][1], 0.05, at_most=True),
                _check("full - LoRA, points", 100 * (got["full"][0] - got["lora"][0]), 1, True),
                _check("LoRA - QLoRA, points", 100 * (got["lora"][0] - got["qlora"][0]), 2, True),
                _check("QLoRA's frozen base, B/param", got["qlora"][2], 0.6, at_most=True),
            ]
        )  # fmt: skip
    )
    emit(Path(args.out), "lora", text)


def _trainable(path: str) -> int:
    """Trainable numbers of an adapter run: the adapters and the added tokens' rows."""
    from safetensors.torch import load_file

    last = Path(path) / "last"
    n = sum(t.numel() for t in load_file(str(last / "adapter_model.safetensors")).values())
    if (last / "added_tokens.safetensors").is_file():
        n += sum(t.numel() for t in load_file(str(last / "added_tokens.safetensors")).values())
    return n


# -- figure 4: distillation -----------------------------------------------------------------------


def distill(args: argparse.Namespace) -> None:
    """markov:order=3, whose true next-symbol distribution is known, so KL(true || model) is
    exact: a teacher on all the data; a smaller student on 3 % of it and on all of it, with
    hard labels (alpha = 1) or distilled from the teacher."""
    from scratchllm.evaluation.run import evaluate_checkpoint

    out = Path(args.out) / "distill"
    full = 10_000 if not args.quick else 3000
    few = max(round(0.03 * full), 10)
    steps = args.steps or 1500
    teacher = {"data": MARKOV, "samples": full, "n_layer": 2, "n_head": 4, "n_embd": 64,
               "block_size": 64, "max_iters": steps, "batch_size": 32, "lr": 3e-3,
               "warmup_iters": 50, "eval_interval": max(steps // 5, 1), "eval_iters": 10,
               "validity_samples": 0, "device": "cpu", "quiet": True}  # fmt: skip
    if args.quick:
        teacher.update(max_iters=20, eval_interval=10, n_layer=1, n_embd=16, n_head=2,
                       warmup_iters=2)  # fmt: skip
    run_all([("train", str(out / "teacher"), teacher)], 1)
    student = {"base": "gpt", "teacher": str(out / "teacher"), "data": MARKOV, "n_layer": 1,
               "n_head": 2, "n_embd": 32, "block_size": 64, "batch_size": 32, "lr": 3e-3,
               "max_iters": steps, "warmup_iters": 50, "eval_interval": max(steps // 10, 1),
               "eval_iters": 10, "validity_samples": 0, "device": "cpu", "quiet": True,
               "temperature": 1.0}  # fmt: skip
    if args.quick:
        student.update(max_iters=20, eval_interval=10, warmup_iters=2)
    jobs = []
    for samples in (few, full):
        for alpha in (1.0, 0.1):
            name = f"{samples}-{'hard' if alpha == 1 else 'distilled'}"
            jobs.append(
                ("distill", str(out / name), {**student, "samples": samples, "alpha": alpha})
            )
    done = run_all(jobs, args.jobs)

    def kl(path: Path) -> float:
        return evaluate_checkpoint(path, MARKOV, samples=100, heldout=500)["kl"]

    rows = [["teacher (hard labels)", full, "-", f"{kl(out / 'teacher' / 'best'):.4f}"]]
    for (_, path, v), d in zip(jobs, done):
        how = "hard labels" if v["alpha"] == 1 else f"distilled (alpha {v['alpha']})"
        rows.append([f"student, {how}", v["samples"], d["best_step"],
                     f"{kl(Path(path) / 'best'):.4f}"])  # fmt: skip
    text = (
        f"## Distillation on {MARKOV}: KL(true || model) per symbol, exact\n\n"
        f"Teacher: GPT {teacher['n_layer']}x{teacher['n_embd']}; student: GPT "
        f"{student['n_layer']}x{student['n_embd']} (fresh), {student['max_iters']} steps; the best "
        "validation checkpoint of each; KL over 500 held-out samples.\n\n"
        + _table(["model", "training samples", "best step", "KL(true || model), nats"], rows)
    )
    emit(Path(args.out), "distill", text)


# -- figure 5: the chat demo ----------------------------------------------------------------------


def chat(args: argparse.Namespace) -> None:
    import torch

    from scratchllm.demo import run_chat_demo

    torch.set_num_threads(args.threads)
    report = run_chat_demo(Path(args.out) / "chat-demo", quick=args.quick, say=print)
    rows = [[q, (r[:60] + "...") if len(r) > 60 else r, "yes" if seen else "no"]
            for q, r, _, seen in report.replies]  # fmt: skip
    text = (
        f"## Chat demo: {report.seconds:.0f} s in all (pretraining {report.pretrain_seconds:.0f}"
        f" s, fine-tuning {report.sft_seconds:.0f} s), {args.threads} torch thread(s)\n\n"
        + _table(["question", "reply (greedy)", "trained on"], rows)
        + "\n\n"
        + _check("seconds in all", report.seconds, 300, at_most=True)
    )
    emit(Path(args.out), "chat", text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("figure", choices=("addition", "lora", "distill", "chat", "all"))
    p.add_argument("--out", default="bench-finetune", help="where the runs and tables go")
    p.add_argument("--jobs", type=int, default=2, help="runs side by side (one thread each)")
    p.add_argument("--threads", type=int, default=2, help="chat: torch threads of the demo")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (figure default)")
    p.add_argument("--samples", type=int, default=10_000, help="addition training examples")
    p.add_argument("--n", type=int, default=2000, help="held-out prompts per evaluation")
    p.add_argument(
        "--operands",
        choices=("balanced", "uniform"),
        default="balanced",
        help="addition, lora: the training examples' operands (held-out: uniform)",
    )
    p.add_argument("--formats", default="reverse,plain", help="addition: answer formats")
    p.add_argument(
        "--losses",
        default="answer,all",
        help="addition: loss on the answer only and/or on every token",
    )
    p.add_argument("--quick", action="store_true", help="tiny models, a few steps")
    args = p.parse_args()
    for value, allowed in ((args.formats, ("reverse", "plain")), (args.losses, ("answer", "all"))):
        if not value or set(value.split(",")) - set(allowed):
            p.error(f"{value!r}: give a comma-separated subset of {','.join(allowed)}")
    if args.quick:
        args.n = min(args.n, 20)
    figures = ("addition", "lora", "distill", "chat") if args.figure == "all" else (args.figure,)
    for f in figures:
        globals()[f](args)


if __name__ == "__main__":
    main()
