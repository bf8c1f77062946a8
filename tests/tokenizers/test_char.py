import doctest
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.tokenizers import char as char_module
from scratchllm.tokenizers.char import UNK_TEXT, CharTokenizer

CORPUS = "First Citizen:\nBefore we proceed any further, hear me speak.\nÉté 🙂 日本\n"
ALPHABET = sorted(set(CORPUS))


def test_ids_are_code_point_ranks():
    tok = CharTokenizer.train(CORPUS)
    assert tok.chars == ALPHABET
    assert tok.vocab_size == len(ALPHABET)
    # The id of a character is its rank among the corpus's characters, in code-point order.
    assert tok.encode(CORPUS) == [ALPHABET.index(c) for c in CORPUS]
    assert tok.unk_id is None


def test_worked_example_from_the_docstring():
    tok = CharTokenizer.train("hello")
    assert tok.encode("hello") == [1, 0, 2, 2, 3]
    assert tok.decode([3, 2, 0]) == "ole"


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(ALPHABET)))
def test_round_trip_over_the_alphabet(text):
    tok = CharTokenizer.train(CORPUS)
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1).filter(lambda s: s.strip()))
def test_round_trip_any_unicode_trained_on_itself(text):
    # Includes lone surrogates, astral-plane characters and ids in the surrogate range.
    tok = CharTokenizer.train(text)
    assert tok.decode(tok.encode(text)) == text


def test_unknown_character_error_names_it_and_its_position():
    tok = CharTokenizer.train("abc")
    with pytest.raises(ValueError, match=r"'z' \(U\+007A\) at position 4") as e:
        tok.encode("abcazb")
    assert "unk=True" in str(e.value)  # says what to do


@settings(max_examples=100, deadline=None)
@given(st.text(), st.text(min_size=1).filter(lambda s: s.strip()))
def test_unk_maps_every_unseen_character(text, corpus):
    tok = CharTokenizer.train(corpus, unk=True)
    assert tok.unk_id == tok.vocab_size - 1
    assert tok.token_to_id("<unk>") == tok.unk_id
    ids = tok.encode(text)
    known = set(corpus)
    assert [i == tok.unk_id for i in ids] == [c not in known for c in text]
    assert tok.decode(ids) == "".join(c if c in known else UNK_TEXT for c in text)


def test_unk_keeps_the_character_ids():
    assert CharTokenizer.train(CORPUS, unk=True).encode(CORPUS) == CharTokenizer.train(
        CORPUS
    ).encode(CORPUS)


def test_vocab_size_keeps_most_frequent_characters():
    text = "aaaa bbb cc d e"  # ' ': 4, a: 4, b: 3, c: 2, d/e: 1
    tok = CharTokenizer.train(text, unk=True, vocab_size=4)
    assert tok.chars == [" ", "a", "b"]  # 3 characters + <unk>, still in code-point order
    assert tok.decode(tok.encode("abcd")) == "ab" + UNK_TEXT * 2
    with pytest.raises(ValueError, match="6 distinct characters but vocab_size is 4.*unk=True"):
        CharTokenizer.train(text, vocab_size=4)
    with pytest.raises(ValueError, match="vocab_size"):
        CharTokenizer.train(text, unk=True, vocab_size=1)
    with pytest.raises(ValueError, match="vocab_size must be an integer"):
        CharTokenizer.train(text, unk=True, vocab_size=3.5)
    assert CharTokenizer.train(text, vocab_size=100) == CharTokenizer.train(text)


@pytest.mark.parametrize("text", ["", " ", "\n\t  \r\n"])
def test_empty_or_whitespace_training_text_is_rejected(text):
    with pytest.raises(ValueError, match="training text is (empty|only whitespace)"):
        CharTokenizer.train(text)


def test_decode_rejects_ids_outside_the_vocabulary():
    tok = CharTokenizer.train("abc")
    for bad in ([0, 3], [-1], [0, 1.5], ["a"]):
        with pytest.raises(ValueError, match=r"at position \d+ is not a token id.*0\.\.2"):
            tok.decode(bad)
    assert tok.decode(np.array([2, 0, 1])) == "cab"  # NumPy integers are ids too


def test_helpers():
    tok = CharTokenizer.train("abc", unk=True)
    assert [tok.id_to_token(i) for i in range(4)] == ["a", "b", "c", "<unk>"]
    assert tok.token_to_id("c") == 2
    assert tok.token_to_id("z") is None
    assert CharTokenizer.train("abc").token_to_id("<unk>") is None
    with pytest.raises(ValueError, match="outside"):
        tok.id_to_token(4)


@pytest.mark.parametrize("unk", [False, True])
def test_save_load_round_trip(tmp_path, unk):
    tok = CharTokenizer.train(CORPUS + "\ud800", unk=unk)  # a lone surrogate must survive too
    path = tok.save(tmp_path / "tok")
    assert path == tmp_path / "tok" / "tokenizer.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert (data["kind"], data["version"], data["unk"]) == ("char", 1, unk)
    for where in (tmp_path / "tok", path):
        back = CharTokenizer.load(where)
        assert back == tok
        assert back.encode(CORPUS) == tok.encode(CORPUS)


def test_saved_file_is_readable_utf8(tmp_path):
    path = CharTokenizer.train("日本 é").save(tmp_path)
    assert "日" in path.read_text(encoding="utf-8")  # not \\u65e5 escapes


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"vocab": ["a", "a"]}, "repeats"),
        ({"vocab": ["ab"]}, "single characters"),
        ({"vocab": "abc"}, "must be a list"),
        ({"version": 3}, "version 3"),
        ({"kind": "word"}, "not 'char'"),
    ],
)
def test_load_rejects_corrupt_content(tmp_path, edit, message):
    path = CharTokenizer.train("abc").save(tmp_path)
    data = json.loads(path.read_text()) | edit
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message) as e:
        CharTokenizer.load(tmp_path)
    assert str(path) in str(e.value)


def test_encode_is_fast_on_a_megabyte():
    import time

    text = (CORPUS * (1_000_000 // len(CORPUS)))[:1_000_000]
    tok = CharTokenizer.train(text)
    start = time.perf_counter()
    ids = tok.encode(text)
    elapsed = time.perf_counter() - start
    assert len(ids) == len(text)
    # str.translate + a memoryview cast: ~20 ms here; a Python loop over a dict takes ~70 ms.
    assert elapsed < 0.5, f"encoding 1 MB took {elapsed:.2f} s"


def test_docstring_examples_run():
    result = doctest.testmod(char_module)
    assert result.attempted > 0 and result.failed == 0
