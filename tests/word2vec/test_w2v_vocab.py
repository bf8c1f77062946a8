"""The vocabulary, subsampling and noise tables equal gensim's, to the word and the count."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from gensim.models import Word2Vec

from scratchllm.word2vec.trainer import initial_vectors
from scratchllm.word2vec.vocab import (
    build_vocab,
    draw_noise,
    keep_probabilities,
    noise_buckets,
    noise_table,
    pick_noise,
)

logging.getLogger("gensim").setLevel(logging.WARNING)


def gensim_model(sentences, **kwargs) -> Word2Vec:
    model = Word2Vec(workers=1, **kwargs)
    model.build_vocab(sentences)
    return model


@pytest.mark.parametrize(
    "settings",
    [
        {"min_count": 5},
        {"min_count": 1},
        {"min_count": 3, "max_final_vocab": 500},
        {"min_count": 1, "max_final_vocab": 2000},
        {"min_count": 2, "max_vocab_size": 3000},
        {"min_count": 1, "max_vocab_size": 10_000, "max_final_vocab": 800},
    ],
)
def test_vocabulary_order_and_counts_equal_gensims(lee, settings):
    ours = build_vocab(lee, **settings)
    theirs = gensim_model(lee, **settings).wv
    assert ours.words == theirs.index_to_key
    assert ours.counts.tolist() == [theirs.get_vecattr(w, "count") for w in ours.words]
    assert len(ours) > 100  # the settings leave a real vocabulary to compare


def test_ties_go_to_the_later_first_appearance_as_in_gensim():
    sentences = [["b", "a", "c", "a", "b", "d", "c", "e"], ["f", "f", "g", "e", "d"]]
    ours = build_vocab(sentences, min_count=1)
    assert ours.words == gensim_model(sentences, min_count=1).wv.index_to_key
    assert ours.words == ["f", "e", "d", "c", "a", "b", "g"]  # counts 2, 2, 2, 2, 2, 2, 1


def test_pruning_while_counting_forgets_and_restarts_a_word():
    # 4 types > 3 after the first sentence: the first pruning (count < 1) removes nothing;
    # the second (count < 2) leaves only "a", and "x" seen again restarts at 1.
    sentences = [["x", "y", "z", "w"], ["a", "a", "b"], ["x", "a"]]
    ours = build_vocab(sentences, min_count=1, max_vocab_size=3)
    assert ours.words == gensim_model(sentences, min_count=1, max_vocab_size=3).wv.index_to_key
    assert dict(zip(ours.words, ours.counts.tolist(), strict=True)) == {"a": 3, "x": 1}


def test_the_corpus_totals_are_gensims(lee):
    ours = build_vocab(lee)
    model = gensim_model(lee)
    assert (ours.total_words, ours.sentences) == (model.corpus_total_words, model.corpus_count)


@pytest.mark.parametrize("sample", [1e-3, 1e-5, 0.0, 20.0])
def test_keep_probabilities_are_gensims(lee, sample):
    vocab = build_vocab(lee)
    wv = gensim_model(lee, sample=sample).wv
    theirs = np.array([wv.get_vecattr(w, "sample_int") for w in vocab.words]) / (2**32 - 1)
    ours = keep_probabilities(vocab.counts, sample)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)  # gensim stores 32-bit ints
    if sample:
        assert (ours < 1).sum() >= 5  # frequent words really are downsampled


@pytest.mark.parametrize("exponent", [0.75, 0.5, 1.0])
def test_noise_table_is_gensims_cum_table(lee, exponent):
    vocab = build_vocab(lee)
    model = gensim_model(lee, ns_exponent=exponent)
    np.testing.assert_array_equal(noise_table(vocab.counts, exponent), model.cum_table)


def test_noise_draws_follow_the_unigram_to_the_three_quarters():
    counts = np.array([1000, 300, 100, 30, 10, 3, 1])
    expected = counts**0.75 / (counts**0.75).sum()
    n = 400_000
    drawn = draw_noise(np.random.default_rng(0), noise_table(counts), n)
    observed = np.bincount(drawn, minlength=len(counts)) / n
    # binomial standard errors are <= 0.0008 here; 4 of them is a real failure, not noise
    np.testing.assert_allclose(observed, expected, atol=0.0032)
    chi2 = (((observed - expected) * n) ** 2 / (expected * n)).sum()
    assert chi2 < 22.5  # chi-square, 6 degrees of freedom: p = 0.001


@pytest.mark.parametrize("per_word", [64, 1])  # 1: buckets holding many table entries
def test_the_bucket_lookup_picks_the_words_bisection_picks(lee, per_word):
    table = noise_table(build_vocab(lee).counts).astype(np.int64)
    buckets = noise_buckets(table, per_word=per_word)
    top = int(table[-1])
    edges = np.concatenate([table - 1, table, table + 1, [0, 1, top - 1]])
    x = np.concatenate([edges[(edges >= 0) & (edges < top)], np.arange(0, top, 9973)])
    np.testing.assert_array_equal(pick_noise(x, table, buckets), np.searchsorted(table, x))
    same = [draw_noise(np.random.default_rng(3), table, (50, 5), b) for b in (None, buckets)]
    np.testing.assert_array_equal(*same)
    assert len(buckets[1]) <= 2 * per_word * len(table) + 2  # the lookup stays small


def test_initial_vectors_are_gensims_for_the_same_seed(lee):
    vocab = build_vocab(lee)
    for seed in (0, 7):
        model = gensim_model(lee, vector_size=16, seed=seed)
        np.testing.assert_array_equal(initial_vectors(len(vocab), 16, seed), model.wv.vectors)


def test_empty_corpus_and_too_high_min_count_are_clear_errors():
    with pytest.raises(ValueError, match="no words"):
        build_vocab([[], []])
    with pytest.raises(ValueError, match=r"min_count=5 times .* occurs 2 times\); lower min_count"):
        build_vocab([["a", "b", "a"]], min_count=5)
