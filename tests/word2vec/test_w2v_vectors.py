"""Neighbours and analogies rank as gensim's KeyedVectors; files cross to and from gensim."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gensim.models import KeyedVectors

from scratchllm.word2vec import UnknownWordError, Word2VecConfig, WordVectors, load, save, train
from scratchllm.word2vec.store import META_FILE, VECTORS_FILE, VOCAB_FILE

WORDS = [f"w{i}" for i in range(200)]


@pytest.fixture
def pair():
    """The same random vectors as ours and as gensim's KeyedVectors."""
    vectors = np.random.default_rng(0).normal(size=(len(WORDS), 12)).astype(np.float32)
    kv = KeyedVectors(12)
    kv.add_vectors(WORDS, vectors)
    return WordVectors(WORDS, vectors), kv


@pytest.mark.parametrize("query", ["w0", "w17", "w199"])
def test_most_similar_ranks_as_gensim(pair, query):
    ours, kv = pair
    got, want = ours.most_similar(query, topn=15), kv.most_similar(query, topn=15)
    assert [w for w, _ in got] == [w for w, _ in want]
    np.testing.assert_allclose([c for _, c in got], [c for _, c in want], atol=1e-6)


@pytest.mark.parametrize("a, b, c", [("w1", "w2", "w3"), ("w50", "w9", "w120")])
def test_analogy_is_gensims_3cosadd(pair, a, b, c):
    ours, kv = pair
    got = ours.analogy(a, b, c, topn=8)
    want = kv.most_similar(positive=[b, c], negative=[a], topn=8)
    assert [w for w, _ in got] == [w for w, _ in want]
    assert not {a, b, c} & {w for w, _ in got}
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-6)


def test_unknown_word_names_it_and_close_spellings(pair):
    ours, _ = pair
    with pytest.raises(
        UnknownWordError, match=r"'w1000' is not in the vocabulary .*close ones: w1"
    ):
        ours.most_similar("w1000")
    assert isinstance(UnknownWordError("x"), ValueError)  # the CLI prints it as one line


def test_our_text_file_reads_in_gensim_exactly(tmp_path, pair):
    ours, _ = pair
    path = ours.save_word2vec_format(tmp_path / "v.txt")
    kv = KeyedVectors.load_word2vec_format(str(path))
    assert kv.index_to_key == WORDS
    np.testing.assert_array_equal(kv.vectors, ours.vectors)  # shortest repr: float32 exact


def test_gensims_text_file_reads_in_ours_exactly(tmp_path, pair):
    _, kv = pair
    kv.save_word2vec_format(str(tmp_path / "g.txt"), binary=False)
    back = WordVectors.load_word2vec_format(tmp_path / "g.txt")
    assert back.words == WORDS
    np.testing.assert_allclose(back.vectors, kv.vectors, rtol=1e-6)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "line 1: expected the header"),
        ("hello world\n", "line 1: expected the header"),
        ("2 3\na 1 2 3\nb 1 2\n", "line 3: expected a word and 3 numbers"),
        ("1 2\na 1 x\n", "line 2: a value is not a number"),
        ("3 2\na 1 2\n", "the header says 3 words but the file has 1"),
        ("1 2\na 1 2\nb 3 4\n", "line 3: the header says 1 words, but the file goes on"),
    ],
)
def test_corrupt_vector_files_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "v.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        WordVectors.load_word2vec_format(path)


# ---- a trained directory ------------------------------------------------------------------

CORPUS = [["the", "cat", "sat", "on", "the", "mat"], ["a", "dog", "sat", "on", "a", "log"]] * 30


@pytest.fixture
def trained(tmp_path):
    model = train(CORPUS, Word2VecConfig(vector_size=8, min_count=1, epochs=2))
    return model, save(model, tmp_path / "vecs", extra={"data": "toy"})


def test_a_saved_directory_loads_back_and_into_gensim_with_counts(trained):
    model, directory = trained
    saved = load(directory)
    assert saved.vectors.words == model.vocab.words
    np.testing.assert_array_equal(saved.vectors.vectors, model.vectors)
    assert saved.vectors.counts.tolist() == model.vocab.counts.tolist()
    assert saved.config == model.config and saved.lowercase and saved.meta["data"] == "toy"
    kv = KeyedVectors.load_word2vec_format(
        str(directory / VECTORS_FILE), fvocab=str(directory / VOCAB_FILE)
    )
    assert [kv.get_vecattr(w, "count") for w in kv.index_to_key] == model.vocab.counts.tolist()
    np.testing.assert_array_equal(kv.vectors, model.vectors)


def test_broken_directories_are_clear_errors(trained, tmp_path):
    _, directory = trained
    with pytest.raises(FileNotFoundError, match="not a directory made by"):
        load(tmp_path / "nowhere")
    meta = directory / META_FILE
    meta.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="is corrupt"):
        load(directory)
    meta.write_text(json.dumps({"format": "scratchllm-word2vec", "version": 9}), encoding="utf-8")
    with pytest.raises(ValueError, match="format version 9"):
        load(directory)
