"""docs/guarantees.md runs: each refusal it shows is refused (exit 2, one line, the run
untouched), and what it says is allowed works."""

from __future__ import annotations

import json

import pytest
from docs_commands import DOCS, run_page, steps

PAGE = DOCS / "guarantees.md"


def test_the_page_shows_refusals_and_links_from_the_readme_and_training():
    commands = [s.command for s in steps(PAGE.read_text(encoding="utf-8")) if s.command]
    assert sum(c.exit_code == 2 for c in commands) >= 7
    for page in (DOCS.parent / "README.md", DOCS / "training.md"):
        assert "guarantees.md" in page.read_text(encoding="utf-8"), page


@pytest.mark.slow
def test_the_page_runs_and_each_refusal_says_why(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    done = run_page(PAGE, capsys)
    errors = {
        "--data cannot change": done.errors_of("train", "--out", "runs/g", "--resume", "--data"),
        "would end before it": done.errors_of(
            "train", "--out", "runs/g", "--resume", "--max-iters", "10"
        ),  # fmt: skip
        "n_embd: 32 -> 64": done.errors_of("train", "--out", "runs/g", "--resume", "--n-embd"),
        "already holds a run": done.errors_of("demo"),
        "tokenizer.json already exists": done.errors_of("tokenizer", "train")[1:],
        "val_fraction 0 leaves": done.errors_of(
            "train", "--data", "markov:order=2", "--samples", "2000", "--val-fraction"
        ),  # fmt: skip
        "is a checkpoint directory": done.errors_of("sample"),
        "has no token for": done.errors_of("eval"),
    }
    for said, errs in errors.items():
        assert len(errs) == 1 and said in errs[0] and errs[0].count("\n") == 1, (said, errs)
    rows = [json.loads(x) for x in (tmp_path / "runs/g/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30, 40]  # the refusals changed nothing
    assert {r["lr"] for r in rows if r["step"] > 20} == {1e-4}  # at the final rate
    v = tmp_path / "runs/v"  # refused before training: only the prepared tokens are there
    assert sorted(p.name for p in v.iterdir()) == ["data"]
