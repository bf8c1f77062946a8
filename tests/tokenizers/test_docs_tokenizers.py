"""docs/tokenizers.md runs: the `tokenizer` verb and `train_tokenizer` make one tokenizer."""

from __future__ import annotations

from docs_commands import DOCS, run_page

PAGE = DOCS / "tokenizers.md"


def test_the_verb_and_the_python_call_agree(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    done = run_page(PAGE, capsys)
    ns = done.namespace
    cli_ids = [int(i) for i in (tmp_path / "ids.txt").read_text().split()]
    assert cli_ids == ns["ids"]  # `encode` printed what bpe.encode gives
    assert done.output_of("tokenizer", "decode") == "17,18,19\n"
    assert ns["load"]("bpe_tok/") == ns["bpe"]  # the saved tokenizer is the Python one
