import doctest
import json
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.tokenizers import word as word_module
from scratchllm.tokenizers.word import (
    BOS,
    EOS,
    PAD,
    SPECIAL_TOKENS,
    UNK,
    WordTokenizer,
    count_pre_tokens,
    normalize,
    pre_tokenize,
)

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
texts = st.text(min_size=1).filter(lambda s: s.strip())

MULTILINGUAL = (
    "The quick brown fox — jumps!  Over the lazy dog.\n\n"
    "Été à Paris, naïve café; straße ﬁne Ⅻ ①.\t"
    "日本語のテキスト。 Привет, мир! مرحبا بالعالم 🙂👍🏽 नमस्ते दुनिया x² don't\r\n"
)


def test_worked_example_from_the_docstring():
    tok = WordTokenizer.train("the cat sat on the mat.")
    assert tok.words[:4] == [" ", "the", ".", "cat"]
    assert tok.encode("the cat", add_bos=True) == [BOS, 5, 4, 7]
    assert tok.decode(tok.encode("the dog sat.")) == "the <unk> sat."


def test_pre_tokenize_splits_words_punctuation_and_whitespace_runs():
    assert pre_tokenize("Hi,  you!\n\ndon't_stop 42x") == [
        "Hi", ",", "  ", "you", "!", "\n\n", "don", "'", "t_stop", " ", "42x",
    ]  # fmt: skip
    # Combining marks stay inside their word (decomposed "é" is e + U+0301).
    assert pre_tokenize("cafe\u0301 नमस्ते") == ["cafe\u0301", " ", "नमस्ते"]


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_pre_tokens_cover_the_text_exactly_and_are_maximal(text):
    tokens = pre_tokenize(text)
    assert "".join(tokens) == text
    assert all(pre_tokenize(t) == [t] for t in tokens)
    # Neighbours never merge: the split is the same wherever the text is cut between tokens.
    assert all(pre_tokenize(a + b) == [a, b] for a, b in zip(tokens, tokens[1:]))


def test_special_tokens_have_fixed_ids():
    tok = WordTokenizer.train(MULTILINGUAL, vocab_size=30)
    assert (PAD, UNK, BOS, EOS) == (0, 1, 2, 3)
    assert [tok.token_to_id(s) for s in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert [tok.id_to_token(i) for i in range(4)] == list(SPECIAL_TOKENS)
    # Text spelling a special token is split like any text, never read as the special token.
    ids = tok.encode("<pad><bos>")
    assert not {PAD, BOS} & set(ids)
    assert ids == tok.encode("<") + tok.encode("pad") + tok.encode("><") + tok.encode("bos>")


def test_vocabulary_order_most_frequent_first_ties_by_code_point():
    tok = WordTokenizer.train("b a b c a d\n")
    # " ": 5, then a and b (2 each, "a" < "b"), then "\n", c, d (1 each, in code-point order).
    assert tok.words == [" ", "a", "b", "\n", "c", "d"]
    assert tok.vocab_size == 4 + 6


@settings(max_examples=60, deadline=None)
@given(texts)
def test_vocabulary_matches_an_independent_count(text):
    counts = Counter(pre_tokenize(text))
    tok = WordTokenizer.train(text)
    assert sorted(tok.words) == sorted(counts)
    freqs = [counts[w] for w in tok.words]
    assert freqs == sorted(freqs, reverse=True)
    for a, b in zip(tok.words, tok.words[1:]):  # equal counts: code-point order
        assert counts[a] > counts[b] or a < b


def test_min_frequency_and_vocab_size_caps():
    text = "a a a a b b b c c d"  # " ": 9, a: 4, b: 3, c: 2, d: 1
    assert WordTokenizer.train(text, min_frequency=2).words == [" ", "a", "b", "c"]
    assert WordTokenizer.train(text, min_frequency=4).words == [" ", "a"]
    capped = WordTokenizer.train(text, vocab_size=7)
    assert capped.vocab_size == 7 and capped.words == [" ", "a", "b"]
    both = WordTokenizer.train(text, vocab_size=100, min_frequency=3)
    assert both.words == [" ", "a", "b"]
    assert capped.encode("a c d") == [5, 4, UNK, 4, UNK]
    assert capped.decode(capped.encode("a c d")) == "a <unk> <unk>"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"vocab_size": 4}, "vocab_size must be an integer >= 5 .* got 4"),
        ({"vocab_size": 10.0}, "vocab_size must be an integer >= 5 .* got 10.0"),
        ({"min_frequency": 0}, "min_frequency must be an integer >= 1, got 0"),
        ({"min_frequency": 1.5}, "min_frequency must be an integer >= 1, got 1.5"),
        ({"min_frequency": 50}, "no token occurs at least min_frequency=50 times"),
    ],
)
def test_bad_caps_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WordTokenizer.train("a b c", **kwargs)


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t"])
def test_empty_or_whitespace_training_text_is_rejected(text):
    with pytest.raises(ValueError, match="training text is (empty|only whitespace)"):
        WordTokenizer.train(text)


@settings(max_examples=150, deadline=None)
@given(texts, st.booleans(), st.booleans())
def test_round_trip_reproduces_the_normalised_text(text, lowercase, nfkc):
    tok = WordTokenizer.train(text, lowercase=lowercase, nfkc=nfkc)
    ids = tok.encode(text)
    assert UNK not in ids
    assert tok.decode(ids) == normalize(text, lowercase, nfkc) == tok.normalize(text)


def test_normalisation_options():
    assert normalize("Ⓐ ﬁ Straße", lowercase=True) == "ⓐ ﬁ straße"
    assert normalize("Ⓐ ﬁ Straße", nfkc=True) == "A fi Straße"
    # NFKC runs first, so what it produces is lowercased too.
    assert normalize("Ⓐ ﬁ Straße", lowercase=True, nfkc=True) == "a fi straße"
    tok = WordTokenizer.train("Hello hello HELLO", lowercase=True)
    assert tok.words == ["hello", " "]
    assert tok.encode("HeLLo") == [4]
    nfkc = WordTokenizer.train("ﬁne", nfkc=True)  # the "ﬁ" ligature becomes "fi"
    assert nfkc.words == ["fine"] and nfkc.encode("fine") == nfkc.encode("ﬁne")
    assert unicodedata.is_normalized("NFKC", nfkc.decode(nfkc.encode("ﬁne")))


def test_bos_eos_and_special_skipping_on_decode():
    tok = WordTokenizer.train("to be or not to be")
    ids = tok.encode("to be", add_bos=True, add_eos=True)
    assert ids[0] == BOS and ids[-1] == EOS
    assert tok.decode(ids) == "to be"
    assert tok.decode([PAD, PAD] + ids) == "to be"
    assert tok.decode([PAD] + ids, keep_special=True) == "<pad><bos>to be<eos>"
    assert tok.decode([UNK]) == "<unk>"  # UNK stands for text, so it is always shown


def test_decode_rejects_ids_outside_the_vocabulary():
    tok = WordTokenizer.train("a b")
    n = tok.vocab_size
    for bad in ([0, n], [-1], [4, "x"]):
        with pytest.raises(ValueError, match=rf"is not a token id.*0\.\.{n - 1}"):
            tok.decode(bad)


@settings(max_examples=60, deadline=None)
@given(st.text(), st.integers(min_value=1, max_value=8))
def test_chunked_counting_equals_counting_the_whole_text(text, chunk):
    original = word_module._CHUNK
    word_module._CHUNK = chunk  # tiny chunks: many cuts, each must fall on a token boundary
    try:
        assert count_pre_tokens(text) == Counter(pre_tokenize(text))
    finally:
        word_module._CHUNK = original


@pytest.mark.parametrize("lookup", ["hash", "binary", "linear"])
def test_save_load_round_trip(tmp_path, lookup):
    tok = WordTokenizer.train(MULTILINGUAL, lowercase=True, nfkc=True, vocab_size=40)
    path = tok.save(tmp_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert (data["kind"], data["version"], data["lowercase"], data["nfkc"]) == (
        "word",
        1,
        True,
        True,
    )
    assert data["vocab"][:4] == list(SPECIAL_TOKENS)
    back = WordTokenizer.load(tmp_path, lookup=lookup)
    assert back == tok and back.lookup_name == lookup
    assert back.encode(MULTILINGUAL) == tok.encode(MULTILINGUAL)


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"vocab": ["<pad>", "<unk>", "<bos>", "<eos>", "a", "a"]}, "more than once"),
        ({"vocab": ["<unk>", "<pad>", "<bos>", "<eos>", "a"]}, "must start with the special"),
        ({"vocab": ["<pad>", "<unk>", "<bos>", "<eos>", "a b"]}, "exactly one pre-token"),
        ({"lowercase": "yes"}, "booleans"),
        ({"version": 9}, "version 9"),
    ],
)
def test_load_rejects_corrupt_content(tmp_path, edit, message):
    path = WordTokenizer.train("a b c").save(tmp_path)
    path.write_text(json.dumps(json.loads(path.read_text()) | edit))
    with pytest.raises(ValueError, match=message) as e:
        WordTokenizer.load(path)
    assert str(path) in str(e.value)


def _hf_word_level(tok: WordTokenizer):
    """The same tokenizer assembled from Hugging Face `tokenizers` parts."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

    vocab = {tok.id_to_token(i): i for i in range(tok.vocab_size)}
    hf = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    hf.pre_tokenizer = pre_tokenizers.Split(
        Regex(word_module.PRE_TOKEN_PATTERN), behavior="isolated"
    )
    steps = ([normalizers.NFKC()] if tok.nfkc else []) + (
        [normalizers.Lowercase()] if tok.lowercase else []
    )
    if steps:
        hf.normalizer = normalizers.Sequence(steps)
    return hf


@pytest.mark.parametrize("lowercase, nfkc", [(False, False), (True, True)])
def test_same_ids_as_hugging_face_word_level(lowercase, nfkc):
    # Python lowercases a word-final capital sigma to "ς", Rust's per-character lowercase to
    # "σ"; this sample has no Greek so the two normalisers agree.
    train = MULTILINGUAL * 2 + "rare words appear once"
    tok = WordTokenizer.train(train, min_frequency=2, lowercase=lowercase, nfkc=nfkc)
    hf = _hf_word_level(tok)
    query = MULTILINGUAL + " plus unseen words, ÉTÉ!"
    assert tok.encode(query) == hf.encode(query).ids
    assert UNK in tok.encode(query)


def test_same_ids_as_hugging_face_on_tinyshakespeare():
    path = SHARED_DATA / "tinyshakespeare.txt"
    if not path.exists():
        pytest.skip(f"{path} not present")
    text = path.read_text(encoding="utf-8")
    tok = WordTokenizer.train(text[:300_000], vocab_size=2000)
    sample = text[-200_000:]
    assert tok.encode(sample) == _hf_word_level(tok).encode(sample).ids


def test_docstring_examples_run():
    result = doctest.testmod(word_module)
    assert result.attempted > 0 and result.failed == 0
