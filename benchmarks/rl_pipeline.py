"""The post-training pipeline on addition, end to end, with its report and chart.

    pretrain -> SFT -> on-policy pairs -> DPO -> GRPO   (and: reward model -> PPO against it)

Every stage is a normal run directory (``sample``, ``chat``, ``eval --task``, ``inspect``
read it). The report scores each stage on the task's held-out prompts: greedy accuracy,
pass@1 and pass@8 of 8 samples at temperature 1, accuracy by operand length and by
carries, and the KL to the SFT model (``KL(pi || sft)`` estimated on the stage's own
samples at temperature 1: the mean of sum_t log pi(o_t) - log sft(o_t)). It writes
``report.json``, ``report.md`` and ``pipeline.png`` into ``--out``.

    python benchmarks/rl_pipeline.py --out runs/pipeline            # ~5 min on 2 cores
    python benchmarks/rl_pipeline.py --out /tmp/p --small           # ~1 min: a smoke run
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

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


def settings(small: bool) -> dict:
    if small:
        return dict(task="addition:digits=2", pre=dict(n_layer=1, n_embd=48, max_iters=300),
                    sft=100, pairs=1000, pairs_per_prompt=2, dpo=100, rm=200, ppo=10,
                    grpo=10, n=100)  # fmt: skip
    return dict(task="addition:digits=2", pre=dict(n_layer=2, n_embd=64, max_iters=600),
                sft=300, pairs=8000, pairs_per_prompt=4, dpo=2000, rm=12000, ppo=40, grpo=100,
                n=300)  # fmt: skip


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
    ap.add_argument("--small", action="store_true")
    args = ap.parse_args()
    cfg, out = settings(args.small), args.out
    task, n = cfg["task"], cfg["n"]
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    logs: dict[str, dict] = {}

    def timed(name, fn):  # noqa: ANN001, ANN202
        t = time.perf_counter()
        r = fn()
        times[name] = time.perf_counter() - t
        print(f"{name:<8} {times[name]:6.0f} s", flush=True)
        return r

    pre = dict(data=task, samples=5000, n_head=2, block_size=32, eval_interval=10_000,
               eval_iters=2, quiet=True, batch_size=32, lr=3e-3, **cfg["pre"])  # fmt: skip
    if not (out / "sft" / "last").is_dir():  # the same settings: reuse the first stages
        timed("pretrain", lambda: train_run(out / "pre", pre, say=QUIET))
    if not (out / "sft" / "last").is_dir():
        timed("sft", lambda: sft_run(out / "sft", dict(base=str(out / "pre"), data=task,
              samples=3000, max_iters=cfg["sft"], eval_interval=cfg["sft"], lr=1e-3,
              quiet=True, batch_size=32), say=QUIET))  # fmt: skip
    for stage in ("dpo", "grpo", "rm", "ppo"):
        shutil.rmtree(out / stage, ignore_errors=True)
    rep = timed("pairs", lambda: pairs_from_checkpoint(out / "sft", task, out / "pairs.jsonl",
                n=cfg["pairs"], k=8, pairs_per_prompt=cfg["pairs_per_prompt"]))  # fmt: skip
    logs["pairs"] = {"prompts": rep.prompts, "pairs": rep.pairs, "all_right": rep.all_right,
                     "all_wrong": rep.all_wrong}  # fmt: skip
    # DPO with RPO's NLL term on the chosen replies (rpo_alpha 1): plain DPO on these pairs
    # lowers both replies' likelihood and with it greedy accuracy (docs/rl.md).
    d = timed("dpo", lambda: dpo_run(out / "dpo", dict(base=str(out / "sft"), data=str(
        out / "pairs.jsonl"), max_iters=cfg["dpo"], eval_interval=max(cfg["dpo"] // 4, 1),
        lr=3e-4, batch_size=32, beta=0.1, rpo_alpha=1.0, task=task, eval_n=n),
        say=QUIET))  # fmt: skip
    logs["dpo"] = d.result.last_eval
    g = timed("grpo", lambda: grpo_run(out / "grpo", dict(base=str(out / "dpo"), data=task,
        max_iters=cfg["grpo"], eval_interval=max(cfg["grpo"] // 5, 1), lr=5e-5, batch_size=64,
        group_size=8, eval_n=n, eval_k=8), say=QUIET))  # fmt: skip
    logs["grpo_curve"] = [
        {k: r[k] for k in ("step", "pass@1", "pass@8", "accuracy", "entropy") if k in r}
        for r in g.result.history
        if "pass@1" in r
    ]
    # The reward model starts from the DPO model: a body that adds better verifies better
    # (docs/rl.md: 0.86 held out after 3,000 steps at 1e-3, 0.68 from the SFT model); 3e-4
    # keeps more of what the body knows than 1e-3 (0.88 against 0.83 at 3,000). center_coef
    # keeps its scores near 0: uncentred they span +-17 across prompts, and PPO's value loss
    # on them (~70) swamps the policy's gradient in the body the value head shares.
    rm = timed("reward", lambda: reward_run(out / "rm", dict(base=str(out / "dpo"), data=str(
        out / "pairs.jsonl"), max_iters=cfg["rm"], eval_interval=max(cfg["rm"] // 4, 1),
        lr=3e-4, batch_size=32, center_coef=0.01), say=QUIET))  # fmt: skip
    logs["reward"] = rm.result.last_eval
    p = timed("ppo", lambda: ppo_run(out / "ppo", dict(base=str(out / "sft"), data=task,
        reward_model=str(out / "rm"), max_iters=cfg["ppo"], eval_interval=max(cfg["ppo"] // 4, 1),
        lr=1e-5, batch_size=32, eval_n=n, eval_k=8), say=QUIET))  # fmt: skip
    logs["ppo_curve"] = [
        {k: r[k] for k in ("step", "score", "sample_accuracy", "kl") if k in r}
        for r in p.result.history
    ]
    stages = {s: out / s for s in ("sft", "dpo", "grpo", "ppo")}
    report = {name: timed(f"score {name}", lambda d=d: score(d, task, n, out / "sft"))
              for name, d in stages.items()}  # fmt: skip
    full = {"task": task, "settings": cfg, "stages": report, "logs": logs, "seconds": times}
    (out / "report.json").write_text(json.dumps(full, indent=2))
    lines = [f"# RL pipeline on {task}", "", "| stage | greedy | pass@1 | pass@8 | KL to SFT |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name, r in report.items():
        lines.append(f"| {name} | {r['greedy']:.3f} | {r['pass@1']:.3f} | {r['pass@8']:.3f} | "
                     f"{r['kl_to_sft']:.3f} |")  # fmt: skip
    lines += ["", f"pairs: {logs['pairs']}", f"dpo held out: {logs['dpo']}",
              f"reward model held out: {logs['reward']}",
              f"seconds: { {k: round(v) for k, v in times.items()} }"]  # fmt: skip
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    chart(full, out / "pipeline.png")


def chart(full: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    names = list(full["stages"])
    for i, key in enumerate(("greedy", "pass@1", "pass@8")):
        axes[0].bar([x + 0.27 * i for x in range(len(names))],
                    [full["stages"][s][key] for s in names], width=0.27, label=key)  # fmt: skip
    axes[0].set_xticks([x + 0.27 for x in range(len(names))], names)
    axes[0].set_ylim(0, 1)
    axes[0].set_title("held-out accuracy per stage")
    axes[0].legend()
    curve = full["logs"]["grpo_curve"]
    for key in ("pass@1", "pass@8", "accuracy"):
        axes[1].plot([r["step"] for r in curve], [r[key] for r in curve], marker="o", label=key)
    axes[1].set_title("GRPO (from DPO): held-out")
    axes[1].set_xlabel("step")
    axes[1].legend()
    ppo = full["logs"]["ppo_curve"]
    axes[2].plot([r["step"] for r in ppo], [r["score"] for r in ppo], label="reward model score")
    axes[2].plot([r["step"] for r in ppo], [r.get("sample_accuracy", 0) for r in ppo],
                 label="verifier accuracy (same samples)")  # fmt: skip
    axes[2].set_title("PPO against the reward model")
    axes[2].set_xlabel("step")
    axes[2].legend()
    fig.suptitle(f"post-training pipeline on {full['task']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
