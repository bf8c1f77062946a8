"""benchmarks/rl_pipeline.py runs end to end at its smoke setting (``--small``), with its two
lanes in two processes, and writes what docs/rl.md quotes from a full run: every stage's
scores, the curves the chart draws, and run directories that ``eval`` reads. The page's
single-run commands on the pipeline's stages (```text blocks: minutes each as written) run
on the small pipeline's directories with a few steps."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from scratchllm.cli import main as cli
from scratchllm.evaluation.run import evaluate_task_checkpoint

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("sft", "dpo", "grpo", "grpo-sft", "ppo", "ppo-hack")


def page_commands() -> list[list[str]]:
    """The ``scratchllm`` commands of docs/rl.md's ```text blocks, after ``scratchllm``."""
    text = (ROOT / "docs" / "rl.md").read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"```text\n(.*?)```", text, flags=re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            if line.startswith("scratchllm "):
                out.append(shlex.split(line)[1:])
    return out


def test_the_page_quotes_the_pipeline_and_its_single_runs():
    text = (ROOT / "docs" / "rl.md").read_text(encoding="utf-8")
    assert "OMP_NUM_THREADS=1 python benchmarks/rl_pipeline.py --out runs/pipeline" in text
    verbs = [c[:2] for c in page_commands()]
    assert ["finetune", "grpo"] in verbs and ["finetune", "ppo"] in verbs
    assert all("runs/pipeline" in " ".join(c) for c in page_commands())


@pytest.mark.slow  # about 40 s: pretrain, SFT, pairs, DPO, then both lanes on a tiny model
def test_the_pipeline_writes_its_report_chart_and_stages(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}  # fmt: skip
    argv = [sys.executable, "benchmarks/rl_pipeline.py", "--out", str(tmp_path), "--small"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    full = json.loads((tmp_path / "report.json").read_text())
    assert tuple(full["stages"]) == STAGES
    for name, stage in full["stages"].items():
        assert 0 <= stage["pass@1"] <= stage["pass@8"] <= 1, name
        assert set(stage["by"]) >= {"lengths", "carries"}, name
    assert full["stages"]["sft"]["kl_to_sft"] == pytest.approx(0.0, abs=1e-5)
    # every lane's stage ran (in the other processes) and left its curve and its time
    logs = full["logs"]
    for name in ("grpo", "grpo-sft"):
        assert [r["step"] for r in logs[f"{name}_curve"]] == list(range(1, 11)), name
    for name in ("ppo", "ppo-hack"):
        assert logs[f"{name}_curve"][-1]["step"] == 10 and "score" in logs[f"{name}_curve"][0]
    assert {"grpo", "grpo-sft", "reward", "ppo", "ppo-hack"} <= {k.strip() for k in full["seconds"]}
    assert 0.0 <= logs["reward"]["val_accuracy"] <= 1.0

    text = (tmp_path / "report.md").read_text()
    assert text in done.stdout
    assert "| grpo-sft | sft |" in text and "greedy accuracy by carries" in text
    assert "ppo-hack: reward-model score of its samples" in text
    png = (tmp_path / "pipeline.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000

    # each stage is a normal run directory: eval reads it and gets the report's figure
    grpo = evaluate_task_checkpoint(tmp_path / "grpo", full["task"], full["settings"]["n"])
    assert grpo.accuracy == pytest.approx(full["stages"]["grpo"]["greedy"])

    # the page's single runs, on these stages, with a few steps
    for i, argv in enumerate(page_commands()):
        argv = [a.replace("runs/pipeline", str(tmp_path)) for a in argv]
        quick = ["--max-iters", "2", "--eval-interval", "2", "--out", str(tmp_path / f"page{i}")]
        if "--eval-n" in argv:
            quick += ["--eval-n", "4"]
        assert cli([*argv, *quick]) == 0, argv
        assert (tmp_path / f"page{i}" / "last").is_dir(), argv
