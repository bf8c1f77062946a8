"""docs/rl.md's commands run, in order, as a reader would type them, and leave what the
page says: a preference file, a reward model, DPO, PPO and GRPO run directories that
eval and sample read."""

from __future__ import annotations

import json
import math

import pytest
from docs_commands import run_page

from scratchllm.data.preferences import read_pairs
from scratchllm.finetuning.heads import load_reward_model


@pytest.mark.slow  # pretrain, SFT, pairs, reward, DPO, PPO and GRPO on a tiny model
def test_every_command_of_the_page_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    page = run_page("rl.md", capsys)
    pairs_out = page.output_of("finetune", "pairs")
    assert "no pair" in pairs_out and "with every sample wrong" in pairs_out
    assert read_pairs("pairs.jsonl") and (tmp_path / "pairs.report.json").is_file()
    load_reward_model("runs/rm")
    assert "val_accuracy" in page.output_of("finetune", "reward")
    dpo_rows = [
        json.loads(x) for x in (tmp_path / "runs/dpo/metrics.jsonl").read_text().splitlines()
    ]
    assert dpo_rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert "val_reward_accuracy" in dpo_rows[-1] and "accuracy" in dpo_rows[-1]
    assert (tmp_path / "runs/ppo/last/value_head.safetensors").is_file()
    grpo = page.output_of("finetune", "grpo")
    assert "pass@4" in grpo and "scratchllm eval runs/grpo --task" in grpo
    assert "accuracy" in page.output_of("eval", "runs/grpo")
