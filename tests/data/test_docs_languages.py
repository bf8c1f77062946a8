"""docs/languages.md runs: `scratchllm data` and its Python calls give the same samples."""

from __future__ import annotations

from docs_commands import DOCS, run_page

PAGE = DOCS / "languages.md"


def test_the_data_verb_and_the_python_calls_agree(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    done = run_page(PAGE, capsys)
    ns = done.namespace
    assert (tmp_path / "samples.txt").read_text() == ns["text"]  # `data sample` is .samples
    assert done.output_of("data", "verify").endswith(f"5 of 5 valid ({ns['lang'].spec})\n")
    assert ns["n"] == 6 and [i for i, _, _ in ns["invalid"]] == [6]  # the one broken sample
    assert "sticky" in done.output_of("data", "languages")
