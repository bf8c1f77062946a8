"""The benchmark commands of docs/training.md's speed section run. As written they take
minutes (both configurations, seven rounds), so each runs here on the small configuration
with one round: the flags, the rows and sections each flag adds, and the check that both
models have the same parameters, not the figures (the page quotes those from real runs)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from docs_commands import benchmark_commands

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "training.md"
SCRIPT = "benchmarks/bench_train_throughput.py"


def bench_commands() -> list[list[str]]:
    return benchmark_commands(PAGE)


def test_the_page_shows_each_flag_of_the_benchmark():
    flags = {arg for command in bench_commands() for arg in command if arg.startswith("--")}
    assert {command[1] for command in bench_commands()} == {SCRIPT}
    shown = {
        "--breakdown", "--compile", "--hf-act", "--levers", "--kernels", "--fixed-cost",
        "--from-python",
    }  # fmt: skip
    assert shown <= flags


@pytest.mark.slow
@pytest.mark.parametrize("command", bench_commands(), ids=" ".join)
def test_the_benchmark_command_runs_quick(command):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}
    argv = [sys.executable, *command[1:], "--quick", "--rounds", "1"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    rows = {line[7:29].strip() for line in out.splitlines() if line.startswith("small ")}
    assert rows == {"HF", "scratchllm", "scratchllm torch ops"} | (
        {"scratchllm compiled"} if "--compile" in command else set()
    ) | ({"scratchllm from Python"} if "--from-python" in command else set()), out
    assert not any(line.startswith("baby ") for line in out.splitlines())  # --quick
    hf_act = command[command.index("--hf-act") + 1] if "--hf-act" in command else "gelu"
    assert f"activation: ours gelu, HF {hf_act}\n" in out
    assert ("scratchllm compiled" in out) == ("--compile" in command)
    assert ("MFU bound, matmul only" in out) == ("--breakdown" in command)
    assert ("51 matrix products replayed alone" in out) == ("--breakdown" in command)
    assert ("AdamW fused" in out) == ("--levers" in command)
    assert ("C++ training kernels vs PyTorch's ops" in out) == ("--kernels" in command)
    assert ("the fixed cost of a step" in out) == ("--fixed-cost" in command)


def test_the_breakdown_replays_every_product_of_a_step():
    """``--breakdown``'s replay catches the products of the block Function's forward and
    backward as well as the head's, and PyTorch's path's ``addmm``: 4 blocks x (4 forward
    + 8 backward) + 3 for the head."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_train_throughput as bench
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    L, H, C, T, B = 4, 4, 128, 64, 2
    _, step = bench.ours_step_fn(L, H, C, T, B, "gelu")
    chunk = bench.make_batches(T, B, 1)[0]
    for run in (step, bench.torch_ops(step)):  # on the kernels, and on PyTorch's path
        (ordered, ordered_rate, n), (hot, hot_rate, n_hot) = bench.replay_products(run, chunk)
        assert n == n_hot == L * 12 + 3
        assert ordered > 0 and hot > 0 and ordered_rate > 0 and hot_rate > 0
