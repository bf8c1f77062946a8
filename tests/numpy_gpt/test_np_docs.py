"""Every command in docs/numpy-gpt.md runs: its ```python blocks, in order, in one
namespace inside a scratch directory; its ``scratchllm`` commands and ```python run
examples through ``docs_commands.run_page``; and its benchmark commands as written."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from docs_commands import run_page

from scratchllm.cli.sample import SEPARATOR

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "numpy-gpt.md"


def blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def bash_commands() -> list[list[str]]:
    """The benchmark commands (the ``scratchllm`` ones run through ``run_page``)."""
    lines = [line for b in blocks("bash") for line in re.sub(r"\\\n\s*", " ", b).splitlines()]
    return [shlex.split(line) for line in lines if line.startswith("python ")]


def test_the_doc_has_code_and_commands():
    assert len(blocks("python")) >= 3
    assert len(bash_commands()) >= 2
    assert all(c[:2] == ["python", "benchmarks/bench_numpy_gpt.py"] for c in bash_commands())
    words = " ".join(" ".join(b.split()) for b in blocks("bash"))
    for command in ("train --engine numpy", "--resume", "sample runs/np --engine numpy",
                    "--init-from runs/np"):  # fmt: skip
        assert command in words


def test_the_command_line_section_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    done = run_page(DOC, capsys)
    numpy_text = done.output_of("sample", "runs/np", "--engine", "numpy")
    torch_text = done.output_of("sample", "runs/np", "--prompt")
    assert numpy_text == torch_text and numpy_text.count(SEPARATOR) == 2
    assert done.namespace["worst"] < 1e-4 and len(done.namespace["rows"]["numpy"]) == 10
    assert 'engine = "numpy"' in (tmp_path / "runs/np/train.toml").read_text()


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
