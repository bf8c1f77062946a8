"""The benchmark command of docs/gpt.md's speed section runs, on two small sizes with one
round: its rows and the thread count it says ``threads_for`` picks, not its figures (the
page quotes those from a real run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from docs_commands import benchmark_commands

from scratchllm.models import decode_kernel

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "gpt.md"


def test_the_page_shows_the_threads_benchmark():
    assert [c[1] for c in benchmark_commands(PAGE)] == ["benchmarks/bench_decode_threads.py"]


@pytest.mark.parametrize("command", benchmark_commands(PAGE), ids=" ".join)
def test_the_benchmark_command_runs_briefly(command):
    env = {**os.environ, "OMP_NUM_THREADS": "2",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}  # fmt: skip
    argv = [sys.executable, *command[1:], "--sizes", "2x2x64", "4x4x128", "--rounds", "1",
            "--new", "16"]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines() if line[:1].isdigit()]
    assert [r[0] for r in rows] == ["2x2x64", "4x4x128"]
    assert f"one core's L2: {decode_kernel.l2_cache_bytes() / 2**20:.1f} MB" in done.stdout
    limit = decode_kernel.one_thread_below()  # this machine's: 1 MB on the reference ones
    weights = [float(r[1].removesuffix("MB")) * 2**20 for r in rows]
    assert weights[0] < limit < weights[1]  # 0.39 MB and 3.04 MB
    assert [r[-1] for r in rows] == ["1", "2"]


def test_a_bad_size_is_refused_with_the_form_it_wants():
    argv = [sys.executable, "benchmarks/bench_decode_threads.py", "--sizes", "4x4"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "LAYERSxHEADSxWIDTH" in done.stderr
