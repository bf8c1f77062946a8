"""docs/tasks.md is true: its Python blocks run, in order, in one namespace, and each one
followed by a ```text block prints exactly that."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "tasks.md"


def blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block with a language, in order."""
    return re.findall(r"^```(\w+)\n(.*?)^```", text, flags=re.S | re.M)


def test_the_doc_has_examples_with_outputs():
    found = blocks(DOC.read_text(encoding="utf-8"))
    kinds = [kind for kind, _ in found]
    assert kinds.count("python") == 6 and kinds.count("text") == 6
    assert all(b == "text" for a, b in zip(kinds, kinds[1:]) if a == "python")
    assert "scratchllm " not in "".join(body for _, body in found)  # no command to run yet


@pytest.mark.slow  # an n-gram evaluated on 1200 completions: about half a minute on 2 cores
def test_every_example_prints_what_the_doc_shows():
    found = blocks(DOC.read_text(encoding="utf-8"))
    namespace: dict = {}
    for k, (kind, body) in enumerate(found):
        if kind != "python":
            continue
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(body, f"{DOC.name} block {k}", "exec"), namespace)
        assert out.getvalue() == found[k + 1][1], f"block {k}:\n{body}"
