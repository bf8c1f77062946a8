"""Reasoning by scratchpad, measured: plain vs reverse vs scratchpad answers on 3-digit
addition, the same fresh GPT trained on the same few examples, compared at equal examples
**and** at equal training tokens (a scratchpad example is about twice as long, so the
plain and reversed runs get proportionally more steps in the second comparison).

The published reference (Lee et al. 2023, a 10.6 M nanoGPT, 3-digit addition, 2,000 training
examples): plain 1.7 %, reverse 30.6 %, simplified scratchpad 99.7 %. The issue's goal:
scratchpad >= 99 % with <= 2,000 examples where plain stays under 10 %.

    python benchmarks/bench_scratchpad.py                  # 2,000 examples, ~0.8 M GPT
    python benchmarks/bench_scratchpad.py --samples 1750 --steps 6000 --comparisons examples
    python benchmarks/bench_scratchpad.py --steps 1500 --n 500 --operands uniform
    python benchmarks/bench_scratchpad.py --samples 1000 --pos learned
    python benchmarks/bench_scratchpad.py --quick          # tiny, to check the script runs

A 6,000-step scratchpad run takes about 22 minutes on one core, a plain one about 10.

Every run is an SFT run directory (``finetuning.sft.sft_run``, answer-only loss) that
``scratchllm eval --task`` reads again; its score is exact match of the final answer on
held-out prompts (a hash split no training example comes from), greedy, and for the
scratchpad also the share of completions with every step right. Training examples draw
balanced operand lengths by default (``--operands uniform``: few short operands, as the
held-out prompts). Runs go side by side, one process and one torch thread each
(``--jobs``). The table goes to ``OUT/scratchpad.md``.
Only the trained length (3 digits) is measured: nothing here says how a format generalises
to longer operands.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench_finetune import GPT, QUICK, SFT, _check, _groups, _table, emit, run_all, task_result

TASK = "addition:digits=3,format={}"  # held-out prompts: uniform operands, the task as posed
TRAIN = "addition:digits=3,operands={},format={}"  # training examples
FORMATS = ("plain", "reverse", "scratchpad")
REFERENCE = {"plain": 0.017, "reverse": 0.306, "scratchpad": 0.997}  # Lee et al., 2,000 ex.


def tokens_per_example(spec: str, n: int) -> float:
    """Mean characters (= tokens of the character tokenizer) of the training examples,
    prompt and END included: what a step of ``batch`` examples reads."""
    from scratchllm.data.sft import language_examples

    examples = language_examples(spec, n)
    return sum(len(m.content) for e in examples for m in e.messages) / len(examples)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="bench-scratchpad", help="where the runs and the table go")
    p.add_argument("--samples", type=int, default=2000, help="training examples (all formats)")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps at equal examples")
    p.add_argument("--batch-size", type=int, default=64, help="examples per step")
    p.add_argument("--jobs", type=int, default=2, help="runs side by side (one thread each)")
    p.add_argument("--n", type=int, default=1000, help="held-out prompts per evaluation")
    p.add_argument(
        "--operands",
        choices=("uniform", "balanced"),
        default="balanced",
        help="training examples' operands: balanced lengths 1..3, or uniform (few "
        "short operands); held-out prompts are uniform either way",
    )
    p.add_argument(
        "--comparisons",
        choices=("both", "examples", "tokens"),
        default="both",
        help="which runs: all three formats at equal examples, plain and reverse at equal "
        "tokens (twice the steps), or both",
    )
    p.add_argument(
        "--pos",
        choices=("rope", "learned"),
        default="rope",
        help="the GPT's positions: rotary, or a learned table of absolute positions (as "
        "Lee et al.'s nanoGPT)",
    )
    p.add_argument("--quick", action="store_true", help="tiny models, a few steps")
    args = p.parse_args()
    if args.quick:
        args.samples, args.steps, args.n = 200, 20, 20

    train = {f: TRAIN.format(args.operands, f) for f in FORMATS}
    tokens = {f: tokens_per_example(train[f], args.samples) for f in FORMATS}
    base = {**GPT, **SFT, "block_size": 32, "base": "gpt", "samples": args.samples,
            "batch_size": args.batch_size, "device": "cpu", "quiet": True,
            "pos": args.pos}  # fmt: skip
    if args.quick:
        base.update(QUICK)
    runs = []  # (name, format, steps, comparison)
    if args.comparisons in ("both", "examples"):
        for fmt in FORMATS:
            runs.append((f"{fmt}-equal-examples", fmt, args.steps, "equal examples"))
    if args.comparisons in ("both", "tokens"):
        for fmt in FORMATS[:-1]:
            steps = round(args.steps * tokens["scratchpad"] / tokens[fmt])
            runs.append((f"{fmt}-equal-tokens", fmt, steps, "equal tokens"))
    out = Path(args.out)
    jobs = []
    for name, fmt, steps, _ in runs:
        values = {**base, "data": train[fmt], "max_iters": steps,
                  "eval_interval": max(steps // 5, 1)}  # fmt: skip
        jobs.append(("sft", str(out / name), values))
    # the longest runs first, so that side-by-side jobs end together; results in run order
    order = sorted(range(len(runs)), key=lambda i: -runs[i][2] * tokens[runs[i][1]])
    finished = run_all([jobs[i] for i in order], args.jobs)
    done = [finished[order.index(i)] for i in range(len(runs))]

    rows, details, got = [], [], {}
    for (name, fmt, steps, comparison), d in zip(runs, done):
        r = task_result(out / name, TASK.format(fmt), args.n)
        got[name] = r.accuracy
        trained = steps * base["batch_size"] * tokens[fmt]
        step_ok = "-" if r.steps_correct is None else f"{r.steps_correct:.4f}"
        rows.append([comparison, fmt, steps, f"{trained / 1e6:.2f} M", f"{r.accuracy:.4f}",
                     step_ok, f"{REFERENCE[fmt]:.3f}", f"{d['seconds']:.0f}"])  # fmt: skip
        details.append(f"### {name}: {r.accuracy:.2%} of {r.n}\n\n{_groups(r)}")
    head = ["comparison", "answer", "steps", "tokens trained", f"exact match ({args.n})",
            "every step right", "Lee et al. (10.6 M)", "seconds"]  # fmt: skip
    checks = (
        [
            _check("scratchpad, equal examples", got["scratchpad-equal-examples"], 0.99),
            _check("plain, equal examples", got["plain-equal-examples"], 0.10, at_most=True),
        ]
        if "scratchpad-equal-examples" in got
        else ["(the goal's targets are at equal examples)"]
    )
    n_params = _params(out / runs[0][0])
    text = (
        f"## Scratchpad vs plain vs reverse: addition digits=3, {args.samples:,} training "
        f"examples ({TRAIN.format(args.operands, 'F')})\n\n"
        f"A fresh {base['n_layer']}x{base['n_head']}x{base['n_embd']} GPT ({n_params:,} "
        f"parameters, {'rotary' if args.pos == 'rope' else 'learned'} positions), "
        f"answer-only SFT, batches of {base['batch_size']}; tokens per example: "
        + ", ".join(f"{f} {t:.1f}" for f, t in tokens.items())
        + f". Held-out prompts: {TASK.format('F')}, greedy.\n\n"
        + _table(head, rows)
        + "\n\n"
        + "\n".join(checks)
        + "\n\n"
        + "\n\n".join(details)
    )
    emit(out, "scratchpad", text)


def _params(path: Path) -> int:
    from scratchllm.checkpoint import load_checkpoint

    return sum(p.numel() for p in load_checkpoint(path).model.parameters())


if __name__ == "__main__":
    main()
