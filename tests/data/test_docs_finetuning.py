"""docs/finetuning.md is true: its Python blocks run, in order, in one namespace, and each
one followed by a ```text block prints exactly that; its JSONL examples load; its
chat_template.json is what the template writes."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from scratchllm.data.sft import read_examples
from scratchllm.models import GPT, load

DOC = Path(__file__).resolve().parents[2] / "docs" / "finetuning.md"


def blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block, in order."""
    return re.findall(r"^```(\w+)\n(.*?)^```", text, flags=re.S | re.M)


def test_the_doc_has_examples_with_outputs():
    kinds = [kind for kind, _ in blocks(DOC.read_text(encoding="utf-8"))]
    assert kinds.count("python") >= 10 and kinds.count("text") >= 10 and kinds.count("bash") >= 4
    assert kinds.count("jsonl") == 3 and kinds.count("json") == 1


@pytest.mark.slow  # the instruction set parses the standard library once (a few seconds)
def test_every_example_runs_and_prints_what_the_doc_shows(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # the LoRA examples write base/, adapter/ and merged/
    found = blocks(DOC.read_text(encoding="utf-8"))
    namespace: dict = {}
    for k, (kind, body) in enumerate(found):
        if kind == "python":
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(body, f"{DOC.name} block {k}", "exec"), namespace)
            if k + 1 < len(found) and found[k + 1][0] == "text":
                assert out.getvalue() == found[k + 1][1], f"block {k}:\n{body}"
        elif kind == "jsonl":
            path = tmp_path / f"block{k}.jsonl"
            path.write_text(body, encoding="utf-8")
            assert len(read_examples(path)) == 1
        elif kind == "json":
            assert json.loads(body) == namespace["chat"].to_dict()
    merged = load(tmp_path / "merged")  # the LoRA example's merge: a plain model
    assert merged.num_parameters() == GPT(merged.config).num_parameters()
