"""Shared fixtures: gensim's shipped corpora, tokenized the way our CLI tokenizes text."""

from __future__ import annotations

import functools

import pytest

from scratchllm.word2vec import LineCorpus
from scratchllm.word2vec.compare import gensim_data


@functools.cache
def _lee() -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(s) for s in LineCorpus(gensim_data("lee_background.cor")))


@pytest.fixture
def lee() -> list[list[str]]:
    """The Lee background corpus (300 news texts, ~60k words), one sentence per line."""
    return [list(s) for s in _lee()]
