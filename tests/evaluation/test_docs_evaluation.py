"""docs/data-and-evaluation.md runs: `scratchllm eval` and its Python call give one result."""

from __future__ import annotations

import json

from docs_commands import DOCS, run_page

PAGE = DOCS / "data-and-evaluation.md"


def test_eval_from_the_command_line_is_evaluate_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    done = run_page(PAGE, capsys)
    printed = json.loads(done.output_of("eval"))
    assert printed == json.loads(json.dumps(done.namespace["result"]))
    assert printed["valid"] > 0.9  # a trigram has the context markov:order=2 needs
