r"""The post-training pipeline on addition, end to end, with its report and chart.

    pretrain -> SFT -> on-policy pairs -> DPO -> GRPO           (lane 1; and GRPO from SFT)
                                           \-> reward model -> PPO  (lane 2; and PPO pushed
                                                                      until it hacks the RM)

Every stage is a normal run directory (``sample``, ``chat``, ``eval --task``, ``inspect``
read it). After DPO the two lanes run side by side, one process and one torch thread each
(``--jobs 1``: one after the other). The report scores each stage on the task's held-out
prompts: greedy accuracy, pass@1 and pass@8 of 8 samples at temperature 1, accuracy by
operand length and by carries, and the KL to the SFT model (``KL(pi || sft)`` estimated on
the stage's own samples at temperature 1: the mean of sum_t log pi(o_t) - log sft(o_t)). It
writes ``report.json``, ``report.md`` and ``pipeline.png`` into ``--out``.

Two stages are there to be compared, not chained: ``grpo-sft`` is GRPO straight from SFT
(what GRPO does alone), and ``ppo-hack`` is PPO against the same reward model at three times
the learning rate and a tenth of the KL penalty, which learns to please the reward model
without being right (its score rises while the verifier's accuracy falls).

    OMP_NUM_THREADS=1 python benchmarks/rl_pipeline.py --out runs/pipeline   # ~11 min, 2 cores
    python benchmarks/rl_pipeline.py --out /tmp/p --small           # ~1 min: a smoke run
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from scratchllm.checkpoint import load_checkpoint
from scratchllm.data.chat import TEMPLATE_FILE, ChatTemplate
from scratchllm.evaluation.run import evaluate_task_checkpoint
from scratchllm.finetuning.dpo_run import dpo_run
from scratchllm.finetuning.grpo_run import grpo_run
from scratchllm.finetuning.logprobs import token_logprobs
from scratchllm.finetuning.pairs import pairs_from_checkpoint
from scratchllm.finetuning.ppo_run import ppo_run
from scratchllm.finetuning.reward_run import reward_run
from scratchllm.finetuning.rollout import sample_completions, task_prompts
from scratchllm.finetuning.sequences import make_rows
from scratchllm.finetuning.sft import sft_run
from scratchllm.training.run import train_run

QUIET = lambda s: None  # noqa: E731
STAGES = ("sft", "dpo", "grpo", "grpo-sft", "ppo", "ppo-hack")


def settings(small: bool) -> dict:
    """Steps of each stage; the learning rates and the rest are in the lanes below."""
    if small:
        return dict(task="addition:digits=2", pre=dict(n_layer=1, n_embd=48, max_iters=300),
                    sft=100, pairs=1000, pairs_per_prompt=2, dpo=100, rm=200, ppo=10,
                    ppo_hack=10, grpo=10, grpo_sft=10, n=100)  # fmt: skip
    return dict(task="addition:digits=2", pre=dict(n_layer=2, n_embd=64, max_iters=600),
                sft=300, pairs=8000, pairs_per_prompt=4, dpo=2000, rm=12000, ppo=600,
                ppo_hack=300, grpo=800, grpo_sft=600, n=300)  # fmt: skip


def _timed(times: dict[str, float], name: str, fn, *args, **kwargs):  # noqa: ANN001, ANN202
    """``fn(*args, **kwargs)``, its wall time kept in ``times[name]`` and printed."""
    t = time.perf_counter()
    r = fn(*args, **kwargs)
    times[name] = time.perf_counter() - t
    print(f"{name:<9} {times[name]:6.0f} s", flush=True)
    return r


def _evals(history: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{k: r[k] for k in ("step", *keys) if k in r} for r in history if "pass@1" in r]


def grpo_lane(out: Path, cfg: dict, threads: int) -> dict[str, Any]:
    """GRPO from DPO (the pipeline's last stage), then GRPO from SFT (GRPO alone).

    From DPO: 1e-4 and two updates per rollout (the second one clipped); 3e-4 with one
    update raised the training prompts' reward but not held-out pass@1 (docs/rl.md).
    From SFT, far from converged, 3e-4 and one update."""
    torch.set_num_threads(threads)
    task, n, times, logs = cfg["task"], cfg["n"], {}, {}
    common = dict(data=task, batch_size=64, group_size=8, eval_n=n, eval_k=8)
    for name, base, steps, extra in (
        ("grpo", "dpo", cfg["grpo"], dict(lr=1e-4, num_iterations=2)),
        ("grpo-sft", "sft", cfg["grpo_sft"], dict(lr=3e-4)),
    ):
        values = dict(base=str(out / base), max_iters=steps,
                      eval_interval=max(steps // 8, 1), **common, **extra)  # fmt: skip
        g = _timed(times, name, grpo_run, out / name, values, say=QUIET)
        logs[f"{name}_curve"] = _evals(g.result.history, ("pass@1", "pass@8", "accuracy",
                                                          "entropy"))  # fmt: skip
    return {"times": times, "logs": logs}


def reward_lane(out: Path, cfg: dict, threads: int) -> dict[str, Any]:
    """The reward model, PPO against it, and PPO pushed until it hacks it."""
    torch.set_num_threads(threads)
    task, n, times, logs = cfg["task"], cfg["n"], {}, {}
    # The reward model starts from the DPO model: a body that adds better verifies better
    # (0.68 held out from the SFT model); 3e-4 keeps more of what the body knows than 1e-3.
    # center_coef keeps its scores near 0: uncentred they span +-17 across prompts, and
    # PPO's value loss on them swamps the policy's gradient in the body the value head shares.
    rm = _timed(times, "reward", reward_run, out / "rm", dict(base=str(out / "dpo"),
        data=str(out / "pairs.jsonl"), max_iters=cfg["rm"], eval_interval=max(cfg["rm"] // 4, 1),
        lr=3e-4, batch_size=32, center_coef=0.01), say=QUIET)  # fmt: skip
    logs["reward"] = rm.result.last_eval
    # PPO: 4 samples per prompt, and a KL penalty (0.5 per nat) that matters against the
    # reward model's spread of scores (a margin near 6): it holds the policy where the
    # reward model was trained. ppo-hack: 3e-4 and 0.05, the lesson of the other side.
    common = dict(data=task, reward_model=str(out / "rm"), batch_size=32, samples_per_prompt=4,
                  eval_n=n, eval_k=8)  # fmt: skip
    for name, steps, extra in (
        ("ppo", cfg["ppo"], dict(lr=1e-4, kl_coef=0.5)),
        ("ppo-hack", cfg["ppo_hack"], dict(lr=3e-4, kl_coef=0.05)),
    ):
        values = dict(base=str(out / "sft"), max_iters=steps,
                      eval_interval=max(steps // 6, 1), **common, **extra)  # fmt: skip
        p = _timed(times, name, ppo_run, out / name, values, say=QUIET)
        logs[f"{name}_curve"] = [
            {k: r[k] for k in ("step", "score", "sample_accuracy", "kl", "pass@1") if k in r}
            for r in p.result.history
        ]
    return {"times": times, "logs": logs}


@torch.no_grad()
def kl_to(policy_dir: Path, ref_dir: Path, task: str, n: int = 100, k: int = 4) -> float:
    """``KL(pi || ref)`` per completion, on ``pi``'s own samples at temperature 1."""
    from scratchllm.data.languages import get

    pol, ref = load_checkpoint(policy_dir), load_checkpoint(ref_dir)
    template = (
        ChatTemplate.load(pol.path)
        if (pol.path / TEMPLATE_FILE).is_file()
        else ChatTemplate.plain(pol.tokenizer)
    )
    prompts = task_prompts(get(task), n, seed=123, split="test")
    comps = sample_completions(pol.model.eval(), template, prompts, k, 12, seed=5)
    rows = make_rows(comps.prompt_ids, comps.completion_ids)
    lp = token_logprobs(pol.model(rows.x)[0], rows.y, rows.mask).sum(-1)
    lr = token_logprobs(ref.model.eval()(rows.x)[0], rows.y, rows.mask).sum(-1)
    return float((lp - lr).mean())


def score(stage: Path, task: str, n: int, sft: Path) -> dict:
    greedy = evaluate_task_checkpoint(stage, task, n)
    sampled = evaluate_task_checkpoint(stage, task, n, temperature=1.0, k=8)
    by = {name: {str(g.key): g.accuracy for g in groups} for name, groups in greedy.by.items()}
    return {
        "greedy": greedy.accuracy,
        "pass@1": sampled.pass_at_k[1],
        "pass@8": sampled.pass_at_k[8],
        "by": by,
        "kl_to_sft": kl_to(stage, sft, task),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--small", action="store_true", help="tiny models, a few steps: a smoke run")
    ap.add_argument(
        "--jobs",
        type=int,
        choices=(1, 2),
        default=2,
        help="the two lanes after DPO side by side (2), or one after the other",
    )
    args = ap.parse_args()
    cfg, out = settings(args.small), args.out
    task, n = cfg["task"], cfg["n"]
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    logs: dict[str, Any] = {}
    start = time.perf_counter()

    pre = dict(data=task, samples=5000, n_head=2, block_size=32, eval_interval=10_000,
               eval_iters=2, quiet=True, batch_size=32, lr=3e-3, **cfg["pre"])  # fmt: skip
    if not (out / "sft" / "last").is_dir():  # the same settings: reuse the first stages
        _timed(times, "pretrain", train_run, out / "pre", pre, say=QUIET)
        _timed(times, "sft", sft_run, out / "sft", dict(base=str(out / "pre"), data=task,
               samples=3000, max_iters=cfg["sft"], eval_interval=cfg["sft"], lr=1e-3,
               quiet=True, batch_size=32), say=QUIET)  # fmt: skip
    for stage in ("dpo", "rm", *STAGES[2:]):
        shutil.rmtree(out / stage, ignore_errors=True)
    rep = _timed(times, "pairs", pairs_from_checkpoint, out / "sft", task, out / "pairs.jsonl",
                 n=cfg["pairs"], k=8, pairs_per_prompt=cfg["pairs_per_prompt"])  # fmt: skip
    logs["pairs"] = {"prompts": rep.prompts, "pairs": rep.pairs, "all_right": rep.all_right,
                     "all_wrong": rep.all_wrong}  # fmt: skip
    # DPO with RPO's NLL term on the chosen replies (rpo_alpha 1): plain DPO on these pairs
    # lowers both replies' likelihood and with it greedy accuracy (docs/rl.md).
    d = _timed(times, "dpo", dpo_run, out / "dpo", dict(base=str(out / "sft"),
        data=str(out / "pairs.jsonl"), max_iters=cfg["dpo"],
        eval_interval=max(cfg["dpo"] // 4, 1), lr=3e-4, batch_size=32, beta=0.1,
        rpo_alpha=1.0, task=task, eval_n=n), say=QUIET)  # fmt: skip
    logs["dpo"] = d.result.last_eval
    t = time.perf_counter()
    if args.jobs == 2:
        with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
            lanes = [pool.submit(f, out, cfg, 1) for f in (grpo_lane, reward_lane)]
            done = [lane.result() for lane in lanes]
    else:
        threads = torch.get_num_threads()
        done = [f(out, cfg, threads) for f in (grpo_lane, reward_lane)]
    times["lanes"] = time.perf_counter() - t
    for lane in done:
        times |= {f"  {k}": v for k, v in lane["times"].items()}
        logs |= lane["logs"]
    report = {name: _timed(times, f"score {name}", score, out / name, task, n, out / "sft")
              for name in STAGES}  # fmt: skip
    times["total"] = time.perf_counter() - start
    full = {"task": task, "settings": cfg, "stages": report, "logs": logs, "seconds": times}
    (out / "report.json").write_text(json.dumps(full, indent=2))
    text = report_text(full)
    (out / "report.md").write_text(text)
    print(text)
    chart(full, out / "pipeline.png")


FROM = {"dpo": "sft", "grpo": "dpo", "grpo-sft": "sft", "ppo": "sft", "ppo-hack": "sft"}


def report_text(full: dict) -> str:
    report, logs = full["stages"], full["logs"]
    lines = [f"# RL pipeline on {full['task']}", "",
             "| stage | from | greedy | pass@1 | pass@8 | KL to SFT |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in report.items():
        lines.append(f"| {name} | {FROM.get(name, 'pretrain')} | {r['greedy']:.3f} | "
                     f"{r['pass@1']:.3f} | {r['pass@8']:.3f} | {r['kl_to_sft']:.3f} |")  # fmt: skip
    for group in ("lengths", "carries"):
        keys = sorted({k for r in report.values() for k in r["by"].get(group, {})})
        lines += ["", f"greedy accuracy by {group}", "",
                  f"| stage | {' | '.join(keys)} |", "|---|" + "---|" * len(keys)]  # fmt: skip
        for name, r in report.items():
            cells = [r["by"].get(group, {}).get(k) for k in keys]
            lines.append(f"| {name} | " + " | ".join("-" if c is None else f"{c:.2f}"
                                                    for c in cells) + " |")  # fmt: skip
    for name in ("ppo", "ppo-hack"):
        curve = logs[f"{name}_curve"]
        first, last = curve[0], curve[-1]
        lines += ["", f"{name}: reward-model score of its samples {first['score']:.2f} -> "
                  f"{last['score']:.2f}, the verifier's accuracy of the same samples "
                  f"{first.get('sample_accuracy', 0):.3f} -> {last.get('sample_accuracy', 0):.3f} "
                  f"(steps {first['step']} -> {last['step']})"]  # fmt: skip
    seconds = {k.strip(): round(v) for k, v in full["seconds"].items()}
    lines += ["", f"pairs: {logs['pairs']}", f"dpo held out: {logs['dpo']}",
              f"reward model held out: {logs['reward']}", f"seconds: {seconds}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def _smooth(values: list[float], w: int = 5) -> list[float]:
    """Running mean over the last ``w`` logged points (a rollout's share is noisy)."""
    return [sum(values[max(0, i - w + 1) : i + 1]) / len(values[max(0, i - w + 1) : i + 1])
            for i in range(len(values))]  # fmt: skip


def chart(full: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    ax = axes[0, 0]
    names = list(full["stages"])
    for i, key in enumerate(("greedy", "pass@1", "pass@8")):
        ax.bar([x + 0.27 * i for x in range(len(names))],
               [full["stages"][s][key] for s in names], width=0.27, label=key)  # fmt: skip
    ax.set_xticks([x + 0.27 for x in range(len(names))], names)
    ax.set_ylim(0, 1)
    ax.set_title("held-out accuracy per stage")
    ax.legend(loc="upper left")
    logs = full["logs"]
    ax = axes[0, 1]
    for name, color in (("grpo", "C0"), ("grpo-sft", "C1")):
        # step 0: the starting stage's own scores (the report's, from other samples)
        curve = [{"step": 0, **full["stages"][FROM[name]]}, *logs[f"{name}_curve"]]
        steps = [r["step"] for r in curve]
        ax.plot(steps, [r["pass@1"] for r in curve], "o-", color=color,
                label=f"{name} (from {FROM[name]}): pass@1")  # fmt: skip
        ax.plot(steps, [r["pass@8"] for r in curve], "o--", color=color, alpha=0.6,
                label=f"{name}: pass@8")  # fmt: skip
    ax.set_ylim(0, 1)
    ax.set_title("GRPO: held-out pass@1 and pass@8")
    ax.set_xlabel("step")
    ax.legend(fontsize=8)
    for ax, key, title in (
        (axes[1, 0], "sample_accuracy", "PPO: the verifier's accuracy of its samples"),
        (axes[1, 1], "score", "PPO: the reward model's score of the same samples"),
    ):
        for name, color in (("ppo", "C2"), ("ppo-hack", "C3")):
            curve = logs[f"{name}_curve"]
            ax.plot([r["step"] for r in curve], _smooth([r.get(key, 0.0) for r in curve]),
                    color=color, label=name)  # fmt: skip
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend()
    axes[1, 0].set_ylim(0, 1)
    fig.suptitle(f"post-training pipeline on {full['task']} (training curves: running means)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
