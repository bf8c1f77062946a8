"""Every command in docs/numpy-gpt.md runs: its ```python blocks, in order, in one
namespace inside a scratch directory, and its ```bash commands as written."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "numpy-gpt.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def bash_commands() -> list[list[str]]:
    return [shlex.split(line) for b in blocks("bash") for line in b.splitlines() if line.strip()]


def test_the_doc_has_code_and_commands():
    assert len(blocks("python")) >= 3
    assert all(c[:2] == ["python", "benchmarks/bench_numpy_gpt.py"] for c in bash_commands())


def test_the_python_examples_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for code in blocks("python"):
        exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102
    out = capsys.readouterr().out
    assert "(50, 32)" in out and "completed" in out
    assert (tmp_path / "np-run" / "last" / "trainer_state.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("command", bash_commands(), ids=" ".join)
def test_the_benchmark_commands_run(command):
    env = {
        **os.environ,
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src")] + sys.path),
    }
    proc = subprocess.run(
        [sys.executable, *command[1:]], cwd=ROOT, capture_output=True, text=True, env=env,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "numpy" in proc.stdout.lower()
