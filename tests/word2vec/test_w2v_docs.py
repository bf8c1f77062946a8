"""docs/word2vec.md runs: its commands (train, similar, analogy) and its Python example, which
finds the same neighbours as `scratchllm word2vec similar` (the page's first line copies
gensim's Lee corpus into the scratch directory; so does this test)."""

from __future__ import annotations

import shutil

import pytest
from docs_commands import DOCS, run_page, steps

from scratchllm.word2vec.compare import gensim_data

PAGE = DOCS / "word2vec.md"


def test_the_page_shows_each_command_and_a_real_table():
    text = PAGE.read_text(encoding="utf-8")
    argv = [s.command.argv[:2] for s in steps(text) if s.command]
    assert ["word2vec", "train"] in argv and ["word2vec", "similar"] in argv
    assert ["word2vec", "analogy"] in argv
    assert "BENCHMARK_" not in text  # the tables come from a real run, pasted in


@pytest.mark.slow
def test_the_commands_and_the_python_example_agree(tmp_path, monkeypatch, capsys):
    shutil.copy(gensim_data("lee_background.cor"), tmp_path)
    monkeypatch.chdir(tmp_path)
    done = run_page(PAGE, capsys)
    printed = [line.split()[0] for line in done.output_of("word2vec", "similar").splitlines()]
    assert printed == [w for w, _ in done.namespace["neighbours"]]
    assert done.namespace["emb"].matrix.shape == done.namespace["init"].shape
    assert (tmp_path / "vecs" / "vectors.txt").is_file()
