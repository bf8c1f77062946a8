"""Every `scratchllm` command in docs/word2vec.md runs, in order, in one scratch directory
(the doc's first line copies gensim's Lee corpus there; so does this test)."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from scratchllm.cli import main
from scratchllm.word2vec.compare import gensim_data

DOC = Path(__file__).resolve().parents[2] / "docs" / "word2vec.md"


def doc_commands(text: str) -> list[list[str]]:
    """The argument lists of the `scratchllm` commands in the text's ```bash blocks."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "scratchllm":
                commands.append(words[1:])
    return commands


def test_the_doc_shows_each_command_and_its_tables():
    text = DOC.read_text(encoding="utf-8")
    verbs = [c[:2] for c in doc_commands(text)]
    assert ["word2vec", "train"] in verbs and ["word2vec", "similar"] in verbs
    assert ["word2vec", "analogy"] in verbs
    assert "BENCHMARK_" not in text  # the tables come from a real run, pasted in
    assert "lee_background.cor" in text


@pytest.mark.slow
def test_every_command_in_the_doc_runs(tmp_path, monkeypatch, capsys):
    shutil.copy(gensim_data("lee_background.cor"), tmp_path)
    monkeypatch.chdir(tmp_path)
    for args in doc_commands(DOC.read_text(encoding="utf-8")):
        code = main(args)
        out = capsys.readouterr()
        assert code == 0, (args, out.out[-2000:], out.err[-2000:])
        assert out.out.strip(), args
    assert (tmp_path / "vecs" / "vectors.txt").is_file()
