"""The benchmark commands of docs/finetuning.md and docs/tasks.md run. Each takes tens of
minutes as written, so each runs here with ``--quick`` (tiny models, a few steps) and its
own ``--out``: the command's flags, its figure's code path and its written table, not its
numbers (the pages quote those from real runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from docs_commands import benchmark_commands

ROOT = Path(__file__).resolve().parents[2]
PAGES = ("finetuning.md", "tasks.md")


def bench_commands() -> list[list[str]]:
    return [c for page in PAGES for c in benchmark_commands(ROOT / "docs" / page)]


def test_the_pages_show_their_benchmark_commands():
    scripts = {c[1] for c in bench_commands()}
    assert {"benchmarks/bench_finetune.py", "benchmarks/bench_scratchpad.py"} <= scripts


@pytest.mark.slow
@pytest.mark.parametrize("command", bench_commands(), ids=" ".join)
def test_the_benchmark_command_runs_quick(command, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}  # fmt: skip
    argv = [sys.executable, *command[1:], "--quick", "--out", str(tmp_path), "--jobs", "1"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    written = list(tmp_path.glob("*.md"))
    assert len(written) == 1, written
    table = written[0].read_text(encoding="utf-8")
    assert "exact match" in table and "target" in table
    assert table.strip() in done.stdout
