"""Every example in docs/serving.md runs, in order, in one scratch directory: the ```bash
blocks' `scratchllm` and `curl` lines (`scratchllm serve` in its own process, on a free port
instead of 8000) and the ```python blocks."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scratchllm.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "serving.md"


def doc_steps(text: str) -> list[tuple[str, object]]:
    """``("command", argv)`` for each bash line we run and ``("python", code)`` per block."""
    steps = []
    for kind, body in re.findall(r"```(bash|python)\n(.*?)```", text, flags=re.S):
        if kind == "python":
            steps.append(("python", body))
            continue
        for line in re.sub(r"\\\n\s*", " ", body).splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] in ("scratchllm", "curl"):
                steps.append(("command", words))
    return steps


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_doc_has_examples_of_everything():
    steps = doc_steps(DOC.read_text(encoding="utf-8"))
    verbs = [s[1][1] if s[1][0] == "scratchllm" else "curl" for s in steps if s[0] == "command"]
    for verb in ("train", "serve", "fewshot", "export", "curl"):
        assert verb in verbs, verb
    assert sum(kind == "python" for kind, _ in steps) >= 2
    assert "FIGURES" not in DOC.read_text(encoding="utf-8"), "the speed table is missing"


@pytest.mark.slow
def test_every_example_in_the_doc_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    port = str(free_port())
    server = None
    try:
        for kind, step in doc_steps(DOC.read_text(encoding="utf-8")):
            if kind == "python":
                code = step.replace(":8000", f":{port}")
                with contextlib.redirect_stdout(io.StringIO()) as out:
                    exec(compile(code, str(DOC), "exec"), {"__name__": "__doc_example__"})
                assert out.getvalue(), code
                continue
            argv = [w.replace(":8000", f":{port}") for w in step]
            if argv[0] == "curl":
                run_curl(argv)
            elif argv[1] == "serve":
                argv[argv.index("--port") + 1] = port
                server = start_server(argv[1:])
            else:
                assert main(argv[1:]) == 0, argv
        assert (tmp_path / "fewshot" / "report.md").is_file()
        assert (tmp_path / "hf" / "bpe-gpt" / "model.safetensors").is_file()
    finally:
        if server is not None:
            server.terminate()
            server.wait(20)


def start_server(args: list[str]) -> subprocess.Popen:
    """`scratchllm serve ...` in its own process, running this checkout's package."""
    import os

    import scratchllm

    src = str(Path(scratchllm.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "scratchllm", *args], stderr=subprocess.PIPE, text=True, env=env
    )
    line = proc.stderr.readline()
    assert "serving" in line, line + proc.stderr.read()
    time.sleep(0.2)
    return proc


def run_curl(argv: list[str]) -> None:
    """Run a curl line; its answer is JSON (or an SSE stream of JSON ending in [DONE]), an
    error exactly when the example asks for one."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (argv, result.stderr)
    out = result.stdout
    wants_error = '"temperature": 3' in " ".join(argv)
    if out.startswith("data: "):
        events = [line[6:] for line in out.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert chunks and all("error" not in c for c in chunks)
        return
    body = json.loads(out)
    assert ("error" in body) == wants_error, (argv, body)


@pytest.mark.slow
def test_the_speed_sections_benchmarks_run_briefly():
    """The page's `python benchmarks/bench_serve.py ...` lines, with few requests and tokens:
    their rows, not their figures (the page quotes those from a real run)."""
    import os

    from docs_commands import benchmark_commands

    commands = benchmark_commands(DOC)
    assert len(commands) == 2  # the 4 x 4 x 128 table and the 6 x 6 x 384 one
    root = DOC.parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root / "src"), *sys.path]))
    for command in commands:
        brief = ["--requests", "4", "--max-tokens", "8", "--rounds", "1"]
        argv = [sys.executable, *_without(command[1:], "--requests", "--rounds"), *brief]
        done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        clients = []
        for word in command[command.index("--clients") + 1 :]:
            if not word.isdigit():
                break
            clients.append(int(word))
        want = ["library, no HTTP", *(f"served, {c} client{'s' * (c > 1)}" for c in clients)]
        want.append("served, 1 client, every token written")
        rows = [line[:38].strip() for line in done.stdout.splitlines()[-len(want) :]]
        assert rows == want, done.stdout


def _without(argv: list[str], *options: str) -> list[str]:
    """``argv`` without the given options and their values."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in options:
            skip = True
        else:
            out.append(a)
    return out
