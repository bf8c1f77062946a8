"""The Python examples of docs/losses.md run, and print what their comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[2] / "docs" / "losses.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.S)


def _run(code: str) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(PAGE), "exec"), {})
    return out.getvalue().splitlines()


def test_every_example_runs_and_prints_the_documented_values():
    blocks = _blocks()
    assert len(blocks) == 3
    logprobs, dpo, passk = (_run(b) for b in blocks)
    assert logprobs == ["tensor([-4.8283, -1.6094])"]  # 3 log(1/5), log(1/5)
    assert dpo == ["0.5981 0.2"]  # -log sigmoid(0.2) = log(1 + e^-0.2)
    assert passk == ["0.5", "0.5952"]  # 1 - C(6,4)/C(8,4) = 11/14 for the middle problem
