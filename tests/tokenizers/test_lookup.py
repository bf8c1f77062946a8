import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.tokenizers import lookup as lookup_module
from scratchllm.tokenizers.lookup import (
    LOOKUPS,
    BinarySearchLookup,
    HashLookup,
    LinearScanLookup,
    make_lookup,
)
from scratchllm.tokenizers.word import WordTokenizer

STRATEGIES = list(LOOKUPS)


def test_registry_names_the_three_strategies():
    assert {
        "linear": LinearScanLookup,
        "binary": BinarySearchLookup,
        "hash": HashLookup,
    } == LOOKUPS


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_token_finds_its_position_and_others_none(name):
    vocab = ["the", "cat", " ", "Été", "a", "<pad>", "zebra", "🙂"]
    lk = make_lookup(name, vocab)
    assert isinstance(lk, LOOKUPS[name])
    assert [lk.lookup(t) for t in vocab] == list(range(len(vocab)))
    for missing in ["", "The", "ca", "cats", "zz", "\x00", "é"]:
        assert lk.lookup(missing) is None
    assert lk.lookup_many(["cat", "dog", "a"], default=-1) == [1, -1, 4]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.text(max_size=6), unique=True, max_size=60),
    st.lists(st.text(max_size=6), max_size=60),
)
def test_strategies_agree_on_any_vocabulary(vocab, queries):
    expected = {t: i for i, t in enumerate(vocab)}
    for name in STRATEGIES:
        lk = make_lookup(name, vocab)
        assert [lk.lookup(q) for q in queries] == [expected.get(q) for q in queries]
        assert lk.lookup_many(queries, -7) == [expected.get(q, -7) for q in queries]


def test_binary_search_keeps_a_parallel_id_array():
    lk = BinarySearchLookup(["the", "cat", "sat"])
    assert lk._sorted == ["cat", "sat", "the"]
    assert lk._ids == [1, 2, 0]


@pytest.mark.parametrize("name", STRATEGIES)
def test_repeated_token_is_rejected(name):
    with pytest.raises(ValueError, match=r"\['a'\] more than once"):
        make_lookup(name, ["a", "b", "a"])


def test_unknown_strategy_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown vocabulary lookup 'trie'.*linear, binary, hash"):
        make_lookup("trie", ["a"])
    with pytest.raises(ValueError, match="unknown vocabulary lookup"):
        WordTokenizer.train("a b", lookup="bisect")


@settings(max_examples=60, deadline=None)
@given(
    st.text(min_size=1).filter(lambda s: s.strip()),
    st.text(),
    st.integers(min_value=5, max_value=40),
)
def test_word_tokenizer_ids_identical_across_strategies(corpus, text, vocab_size):
    toks = {n: WordTokenizer.train(corpus, vocab_size=vocab_size, lookup=n) for n in STRATEGIES}
    assert {t.lookup_name for t in toks.values()} == set(STRATEGIES)
    encoded = {n: t.encode(corpus + text) for n, t in toks.items()}
    assert encoded["linear"] == encoded["binary"] == encoded["hash"]


def test_docstring_examples_run():
    result = doctest.testmod(lookup_module)
    assert result.attempted > 0 and result.failed == 0
