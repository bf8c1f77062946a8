"""docs/finetuning.md's commands run, in order, as a reader would type them (its Python
examples and their outputs are tests/data/test_docs_finetuning.py's), and what they leave
is what the page says."""

from __future__ import annotations

import pytest
from docs_commands import run_page

from scratchllm.checkpoint import load_checkpoint
from scratchllm.models.lora import lora_layers


def output_with(page, *words: str) -> str:
    """The stdout of the first command holding every one of ``words``."""
    for step, out in page.outputs:
        if step.command and all(w in step.command.argv for w in words):
            return out
    raise KeyError(words)


@pytest.mark.slow  # a base, SFT, LoRA, QLoRA, merge, a teacher and a student: about a minute
def test_every_command_of_the_page_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    page = run_page("finetuning.md", capsys)
    sft = output_with(page, "sft", "runs/add-sft")
    assert "learned (the replies)" in sft and "full fine-tuning" in sft
    lora = output_with(page, "sft", "runs/add-lora")
    assert "grown 13 -> 17" in lora and "plus the 192 numbers of the added tokens' rows" in lora
    assert lora_layers(load_checkpoint("runs/add-lora").model)
    assert not lora_layers(load_checkpoint("runs/add-lora-merged").model)
    assert "base in NF4 + double quant" in output_with(page, "sft", "runs/add-qlora")
    assert (tmp_path / "runs" / "add-qlora" / "merged" / "model.safetensors").is_file()
    assert "teacher " in output_with(page, "distill")
    assert load_checkpoint("runs/student").model.family == "rnn"
    assert "kl" in output_with(page, "eval", "runs/student")
