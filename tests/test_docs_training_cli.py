"""docs/training-cli.md runs: its commands (train, sample, resume, eval, demo) and its
Python examples, which give the same run and the same samples as the commands."""

from __future__ import annotations

import json

import pytest
from docs_commands import DOCS, run_page, steps

from scratchllm.cli.sample import SEPARATOR

PAGE = DOCS / "training-cli.md"


def test_the_page_runs_every_verb_it_documents():
    argv = [s.command.argv[0] for s in steps(PAGE.read_text(encoding="utf-8")) if s.command]
    assert {"train", "sample", "eval", "demo"} <= set(argv)


def _losses(path):
    return [(r["step"], r["loss"]) for r in map(json.loads, path.read_text().splitlines())]


@pytest.mark.slow
def test_the_commands_and_the_python_calls_agree(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    done = run_page(PAGE, capsys)
    # train_run made the same run as `scratchllm train` (whose run was resumed to 40 steps)
    cli = _losses(tmp_path / "runs/markov/metrics.jsonl")
    py = _losses(tmp_path / "runs/markov-py/metrics.jsonl")
    assert cli[-1][0] == 40 and py[-1][0] == 30
    assert [row for row in cli if row[0] <= 30] == py
    # complete() gave the samples `scratchllm sample` printed (prompt '' on each)
    printed = done.output_of("sample", "runs/markov")
    assert printed == ("\n" + SEPARATOR + "\n").join(done.namespace["texts"]) + "\n"
    assert "val_loss" in done.output_of("eval") and (tmp_path / "runs/demo/best").is_dir()
