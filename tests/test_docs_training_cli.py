"""docs/training-cli.md runs: its commands (train, sample, resume, eval, demo) and its
Python examples, which give the same run and the same samples as the commands; its
`--init-embeddings` example (on gensim's Lee corpus, which the page copies into the scratch
directory; so does this test) prints the line the page quotes and starts the word rows of
the token embeddings from the vectors' geometry."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from docs_commands import DOCS, run_page, steps

from scratchllm.cli.sample import SEPARATOR
from scratchllm.tokenizers import load as load_tokenizer
from scratchllm.word2vec import load as load_vectors
from scratchllm.word2vec import token_embeddings
from scratchllm.word2vec.compare import gensim_data

PAGE = DOCS / "training-cli.md"


def test_the_page_runs_every_verb_it_documents():
    argv = [s.command.argv[0] for s in steps(PAGE.read_text(encoding="utf-8")) if s.command]
    assert {"train", "sample", "eval", "demo"} <= set(argv)


def _output_of_run(done, out: str) -> str:
    for step, printed in done.outputs:
        if step.command and step.command.argv[:1] == ["train"] and out in step.command.argv:
            return printed
    raise KeyError(f"no scratchllm train --out {out} in the page")


def _cosines(m: np.ndarray) -> np.ndarray:
    u = m / np.linalg.norm(m, axis=1, keepdims=True)
    return u @ u.T


def _agreement_with_vectors(run, vectors) -> float:
    """Correlation of the word rows' cosines in ``run``'s token embeddings with those of the
    vectors as ``token_embeddings`` projects them (1: the same geometry)."""
    from safetensors.numpy import load_file

    tok = load_tokenizer(run / "last")
    tensors = load_file(str(run / "last" / "model.safetensors"))
    table = tensors.get("transformer.wte.weight", tensors.get("lm_head.weight"))
    made = token_embeddings(load_vectors(vectors).vectors, tok, np.zeros_like(table))
    rows = np.flatnonzero(made.found)
    upper = np.triu_indices(len(rows), 1)
    ours, theirs = _cosines(table[rows])[upper], _cosines(made.matrix[rows])[upper]
    return float(np.corrcoef(ours, theirs)[0, 1])


def _losses(path):
    return [(r["step"], r["loss"]) for r in map(json.loads, path.read_text().splitlines())]


@pytest.mark.slow
def test_the_commands_and_the_python_calls_agree(tmp_path, monkeypatch, capsys):
    shutil.copy(gensim_data("lee_background.cor"), tmp_path)
    monkeypatch.chdir(tmp_path)
    done = run_page(PAGE, capsys)
    # train_run made the same run as `scratchllm train` (whose run was resumed to 40 steps)
    cli = _losses(tmp_path / "runs/markov/metrics.jsonl")
    py = _losses(tmp_path / "runs/markov-py/metrics.jsonl")
    assert cli[-1][0] == 40 and py[-1][0] == 30
    assert [row for row in cli if row[0] <= 30] == py
    # complete() gave the samples `scratchllm sample` printed (prompt '' on each)
    printed = done.output_of("sample", "runs/markov")
    assert printed == ("\n" + SEPARATOR + "\n").join(done.namespace["texts"]) + "\n"
    assert "val_loss" in done.output_of("eval") and (tmp_path / "runs/demo/best").is_dir()
    # --init-embeddings: the line the page quotes, and after 20 steps the word rows still
    # have the vectors' geometry (measured 0.84), which the run without them lacks (0.14)
    quoted = re.search(r"The first run prints `(embedding [^`]*)`", PAGE.read_text()).group(1)
    assert quoted in _output_of_run(done, "runs/lee-w2v")
    assert "embedding" not in _output_of_run(done, "runs/lee")
    assert _agreement_with_vectors(tmp_path / "runs/lee-w2v", tmp_path / "vecs") > 0.6
    assert _agreement_with_vectors(tmp_path / "runs/lee", tmp_path / "vecs") < 0.4
