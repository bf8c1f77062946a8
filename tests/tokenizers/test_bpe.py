"""BPETokenizer on its own: training, the incremental trainer against a naive one, encode/decode
round trips, special tokens, save/load, and every kind of bad input."""

import functools
import json
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.tokenizers import bpe as bpe_module
from scratchllm.tokenizers import bpe_pattern
from scratchllm.tokenizers.bpe import BPETokenizer
from scratchllm.tokenizers.bpe_bytes import (
    BYTE_TO_CHAR,
    HF_BYTE_ORDER,
    str_to_token,
    token_to_str,
)
from scratchllm.tokenizers.bpe_train import learn_merges

MULTILINGUAL = (
    "Hello, world! It's 2024: the year's 3.14159 best     spaces\t\ttabs\r\nand CRLF.\n\n"
    "Ça va? Übergrößenträger straße. Привет, как дела? Γειά σου κόσμε. "
    "日本語のテキストと漢字。中文也可以。한국어 문장입니다. مرحبا بالعالم. नमस्ते दुनिया। "
    "emoji 🙂🙂 👩‍👩‍👧‍👦 👍🏽 🇫🇷 combining e\u0301 a\u0308\u0323 zalgo Z\u0351\u0352\u0353 "
    "I'LL we've THEY'RE don't 12345678 x=1+2*3; /* code */ {'k': [1, 2]}\n" * 3
)

SPECIAL = "<|endoftext|>"


@pytest.fixture(scope="module", params=["gpt2", "gpt4"])
def tok(request):
    return BPETokenizer.train(MULTILINGUAL, 400, pattern=request.param, special_tokens=[SPECIAL])


# ----------------------------------------------------------------- training


def test_classic_example():
    tok = BPETokenizer.train("aaabdaaabac", vocab_size=256 + 3)
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    # "aa" is the most frequent pair; then "aa"+"a" and "a"+"b" tie at 2 and the smaller
    # pair in HF's order wins (raw byte 97 < merged 256), so "ab" comes before "aaab".
    assert [tok.token_bytes(i) for i in (256, 257, 258)] == [b"aa", b"ab", b"aaab"]
    assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"


def test_id_layout_bytes_then_merges_then_specials():
    tok = BPETokenizer.train(MULTILINGUAL, 300, special_tokens=["<|a|>", "<|b|>"])
    assert tok.vocab_size == 300
    assert all(tok.vocab[b] == bytes([b]) for b in range(256))
    assert len(tok.merges) == 300 - 256 - 2
    assert sorted(tok.vocab) == list(range(298))
    assert tok.special_tokens == {"<|a|>": 298, "<|b|>": 299}
    # Each merge made the next id, and its bytes are the two parts joined.
    for k, (a, b) in enumerate(tok.merges):
        assert tok.vocab[256 + k] == tok.vocab[a] + tok.vocab[b]


def test_training_stops_when_nothing_is_left_to_merge():
    tok = BPETokenizer.train("ab ab", 1000)
    # Chunks "ab" and " ab": merges "ab", then " " + "ab"; then no pair is left.
    assert [tok.token_bytes(i) for i in range(256, tok.vocab_size)] == [b"ab", b" ab"]


def test_pretokenization_bounds_tokens():
    tok = BPETokenizer.train("dog1 dog1 dog1 dog1", 300)
    # The GPT-2 pattern splits letters from digits, so no token holds both.
    for t in tok.vocab.values():
        assert not (any(chr(c).isalpha() for c in t) and any(chr(c).isdigit() for c in t))


def _naive_merges(chunks: Counter, n_tokens: int) -> list[tuple[bytes, bytes]]:
    """Reference: recount every pair of every chunk before each merge (minbpe's way), taking
    the highest count and, on a tie, the smallest pair in HF's alphabet order."""
    order = {b: r for r, b in enumerate(HF_BYTE_ORDER)}
    token = {i: bytes([i]) for i in range(256)}
    id_of = {t: i for i, t in token.items()}
    words = {w: list(w) for w in chunks}
    merges = []
    while len(token) < 256 + n_tokens:
        stats = Counter()
        for w, c in chunks.items():
            for p in zip(words[w], words[w][1:]):
                stats[p] += c
        if not stats:
            break

        def key(p, stats=stats):
            return (-stats[p], *(order[t] if t < 256 else t for t in p))

        a, b = min(stats, key=key)
        made = token[a] + token[b]
        if made not in id_of:
            id_of[made] = len(token)
            token[len(token)] = made
        new = id_of[made]
        merges.append((token[a], token[b]))
        for w, ids in words.items():
            out, i = [], 0
            while i < len(ids):
                if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            words[w] = out
    return merges


@settings(max_examples=60, deadline=None)
@given(
    st.text(alphabet=st.sampled_from("aab bc\n"), min_size=1, max_size=60),
    st.integers(0, 25),
)
def test_incremental_trainer_equals_naive_recount(text, n):
    # A tiny alphabet gives long runs ("aaaa": overlapping pairs) and many ties.
    chunks = Counter(s.encode() for s in bpe_pattern.split(bpe_pattern.GPT2_PATTERN, text))
    merges, vocab = learn_merges(chunks, n)
    assert [(vocab[a], vocab[b]) for a, b, _ in merges] == _naive_merges(chunks, n)


def test_incremental_trainer_equals_naive_recount_on_real_text():
    chunks = Counter(s.encode() for s in bpe_pattern.split(bpe_pattern.GPT4_PATTERN, MULTILINGUAL))
    merges, vocab = learn_merges(chunks, 60)
    assert [(vocab[a], vocab[b]) for a, b, _ in merges] == _naive_merges(chunks, 60)


def test_progress_bar_is_shown_on_request(capsys):
    BPETokenizer.train(MULTILINGUAL, 280, progress=True)
    assert "BPE merges" in capsys.readouterr().err


# ----------------------------------------------------------------- round trips

SAMPLES = [
    "",
    " ",
    "\n\n\n",
    "   leading and trailing   ",
    "tabs\t\tand\r\nCRLF\r\n",
    "🙂",
    "👩‍👩‍👧‍👦👍🏽🇫🇷",
    "e\u0301 a\u0308\u0323 Z\u0351\u0352\u0353",
    "日本語 中文 한국어",
    "\x00\x01\x7f\x80\u00a0\u00ad\ufeff\U0010ffff",
    "I'LL we've THEY'RE 12345678",
    "never seen: qzxj ŋŧŧ ∮ ∯",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip_samples(tok, text):
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text
    assert tok.decode_bytes(ids) == text.encode("utf-8")


@settings(max_examples=120, deadline=None)
@given(st.text())  # hypothesis' text covers all planes, combining marks, emoji, controls
def test_round_trip_any_unicode(text):
    for t in _toks():
        assert t.decode(t.encode(text)) == text


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(SAMPLES + [" ", "\n", SPECIAL, "<|", "|>"]), max_size=8))
def test_round_trip_with_specials(parts):
    text = "".join(parts)
    for t in _toks():
        ids = t.encode(text, allowed_special="all")
        assert t.decode(ids) == text
        assert ids.count(t.special_tokens[SPECIAL]) == text.count(SPECIAL)
        assert t.decode(t.encode(text, disallowed_special=())) == text


@functools.cache
def _toks():
    return [
        BPETokenizer.train(MULTILINGUAL, 350, pattern=p, special_tokens=[SPECIAL])
        for p in ("gpt2", "gpt4")
    ]


def test_encoding_is_merge_by_rank(tok):
    # Re-derive each chunk's ids the slow, obvious way: repeatedly merge the lowest-ranked
    # pair present. The fast path (cache + tight loop) must agree.
    rank = {p: r for r, p in reversed(list(enumerate(tok.merges)))}
    made = {p: tok._id_of[tok.vocab[p[0]] + tok.vocab[p[1]]] for p in tok.merges}
    for chunk in bpe_pattern.split(tok.pattern, MULTILINGUAL + "unseen wordsss"):
        ids = list(chunk.encode())
        while True:
            pairs = [p for p in zip(ids, ids[1:]) if p in rank]
            if not pairs:
                break
            best = min(pairs, key=rank.get)
            i = next(i for i in range(len(ids) - 1) if (ids[i], ids[i + 1]) == best)
            ids[i : i + 2] = [made[best]]
        assert tok.encode(chunk) == ids


def test_cache_reset_keeps_results(monkeypatch):
    tok = BPETokenizer.train(MULTILINGUAL, 300)
    want = tok.encode(MULTILINGUAL)
    monkeypatch.setattr(bpe_module, "_CACHE_LIMIT", 5)
    fresh = BPETokenizer(tok.vocab, tok.merges)
    assert fresh.encode(MULTILINGUAL) == want
    backwards = MULTILINGUAL[::-1]  # new chunks overflow the cache and force a reset
    assert fresh.decode(fresh.encode(backwards)) == backwards
    assert fresh.encode(MULTILINGUAL) == want
    assert len(fresh._cache) <= 5


def test_custom_pattern_keeps_unmatched_text():
    # r"\w+" skips spaces and punctuation; those gaps become chunks of their own.
    assert bpe_pattern.split(r"\w+", "hi, you!") == ["hi", ", ", "you", "!"]
    tok = BPETokenizer.train("hi, you! hi, you!", 270, pattern=r"\w+")
    assert tok.decode(tok.encode("hi, you! what?")) == "hi, you! what?"
    assert tok.pattern == r"\w+" and tok.pattern_name is None


def test_gpt4_pattern_groups_digits_in_threes():
    assert bpe_pattern.split(bpe_pattern.GPT4_PATTERN, "1234567") == ["123", "456", "7"]
    assert bpe_pattern.split(bpe_pattern.GPT2_PATTERN, "1234567") == ["1234567"]


def test_byte_alphabet():
    assert len(set(BYTE_TO_CHAR)) == 256
    assert all(c.isprintable() and not c.isspace() for c in BYTE_TO_CHAR)
    assert token_to_str(b" \n") == "ĠĊ"
    every = bytes(range(256))
    assert str_to_token(token_to_str(every)) == every


# ----------------------------------------------------------------- special tokens


def test_specials_need_permission(tok):
    text = f"a{SPECIAL}b"
    with pytest.raises(ValueError, match=r"special token '<\|endoftext\|>' at position 1"):
        tok.encode(text)
    sid = tok.special_tokens[SPECIAL]
    assert sid in tok.encode(text, allowed_special="all")
    assert tok.encode(text, allowed_special={SPECIAL}) == tok.encode(text, allowed_special="all")
    as_text = tok.encode(text, disallowed_special=())
    assert sid not in as_text and as_text == tok.encode_ordinary(text)
    assert tok.decode(as_text) == text


def test_special_never_split_and_not_learned():
    text = f"hello{SPECIAL}hello{SPECIAL}" * 20
    tok = BPETokenizer.train(text, 300, special_tokens=[SPECIAL])
    sid = tok.special_tokens[SPECIAL]
    assert tok.encode(SPECIAL, allowed_special="all") == [sid]
    # Training cut the specials out: only "hello" was left to learn from ("<|", "endoftext"
    # and "|>" would otherwise be merged), so training stopped after its 4 merges.
    learned = [tok.token_bytes(i) for i in range(256, 260)]
    assert learned == [b"el", b"hel", b"lo", b"hello"]  # ties: smallest pair in HF's order
    assert tok.vocab_size == 261 and sid == 260


def test_longest_special_wins():
    tok = BPETokenizer.train("abc", 258, special_tokens=["<|x|>", "<|x|>y"])
    ids = tok.encode("<|x|>y<|x|>", allowed_special="all")
    assert ids == [tok.special_tokens["<|x|>y"], tok.special_tokens["<|x|>"]]


def test_allowed_special_errors(tok):
    with pytest.raises(ValueError, match="not special tokens"):
        tok.encode("x", allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match="wrap one token in a set"):
        tok.encode("x", allowed_special=SPECIAL)


# ----------------------------------------------------------------- decoding


def test_decode_cut_character():
    tok = BPETokenizer.train("abc", 256)
    ids = tok.encode("é")  # two bytes, two tokens
    assert len(ids) == 2
    assert tok.decode(ids[:1]) == "\ufffd"
    with pytest.raises(UnicodeDecodeError):
        tok.decode(ids[:1], errors="strict")


@pytest.mark.parametrize("bad", [-1, 400, 10**9, "3", 2.0, None])
def test_decode_unknown_id(tok, bad):
    with pytest.raises(ValueError, match=f"token id {bad!r} is not in"):
        tok.decode([1, bad])


# ----------------------------------------------------------------- save / load


def test_save_load_round_trip(tok, tmp_path):
    path = tok.save(tmp_path / "t")
    assert path == tmp_path / "t" / "tokenizer.json"
    back = BPETokenizer.load(tmp_path / "t")
    assert back.vocab == tok.vocab and back.merges == tok.merges
    assert back.special_tokens == tok.special_tokens and back.pattern == tok.pattern
    text = MULTILINGUAL + SPECIAL + "more"
    assert back.encode(text, allowed_special="all") == tok.encode(text, allowed_special="all")
    assert BPETokenizer.load(path).vocab_size == tok.vocab_size  # the file itself works too


def test_custom_pattern_survives_save(tmp_path):
    tok = BPETokenizer.train("hi, you! hi, you!", 270, pattern=r"\w+|\s+")
    assert BPETokenizer.load(tok.save(tmp_path)).pattern == r"\w+|\s+"


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        BPETokenizer.load(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("", "is empty"),
        ('{"model": {"type": "WordPiece", "vocab": {}}}', "not a BPE tokenizer.json"),
        ('{"kind": "char", "chars": ["a"]}', "not a BPE tokenizer.json"),
        (
            '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, '
            '"pre_tokenizer": {"type": "Whitespace"}}',
            "is not byte-level BPE's",
        ),
        (
            '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, '
            '"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": true}}',
            "add_prefix_space=true",
        ),
        (
            '{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a c"]}, '
            '"pre_tokenizer": {"type": "ByteLevel"}}',
            "merge #1 'a c'",
        ),
        (
            '{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}, '
            '"pre_tokenizer": {"type": "ByteLevel"}}',
            "makes b'ab', which is not in the vocab",
        ),
        (
            '{"model": {"type": "BPE", "vocab": {"a b": 0}, "merges": []}, '
            '"pre_tokenizer": {"type": "ByteLevel"}}',
            "not a byte-level token",
        ),
        (
            '{"normalizer": {"type": "NFC"}, "model": {"type": "BPE", "vocab": {}, "merges": []}}',
            "normalizer",
        ),
    ],
)
def test_load_corrupt_or_foreign_file(tmp_path, content, message):
    file = tmp_path / "tokenizer.json"
    file.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as err:
        BPETokenizer.load(file)
    assert str(file) in str(err.value)


def test_saved_file_is_readable_json(tok, tmp_path):
    data = json.loads(tok.save(tmp_path).read_text(encoding="utf-8"))
    assert data["model"]["type"] == "BPE"
    assert data["added_tokens"][0]["content"] == SPECIAL
    assert data["model"]["vocab"]["Ġ"] == ord(" ")  # a space is written as GPT-2's "Ġ"


def test_gpt2_files_round_trip(tok, tmp_path):
    vocab_json, merges_txt = tok.save_gpt2_files(tmp_path)
    assert merges_txt.read_text(encoding="utf-8").startswith("#version: 0.2\n")
    back = BPETokenizer.from_gpt2_files(vocab_json, merges_txt)
    assert back.special_tokens == tok.special_tokens  # declared in tokenizer_config.json
    assert back.vocab == tok.vocab and back.merges == tok.merges


def test_gpt2_files_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="vocab.json"):
        BPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    (tmp_path / "vocab.json").write_text("[1, 2]", encoding="utf-8")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="JSON object"):
        BPETokenizer.from_gpt2_files(tmp_path / "vocab.json", tmp_path / "merges.txt")


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"text": ""}, "training text is empty"),
        ({"text": " \n\t "}, "only whitespace"),
        ({"vocab_size": 255}, r"vocab_size \(255\) is smaller than .* \(256\)"),
        ({"vocab_size": 257, "special_tokens": ["<a>", "<b>"]}, r"use at least 258"),
        ({"vocab_size": 300.0}, "vocab_size must be an int"),
        ({"pattern": "gpt-4"}, "unknown pattern name 'gpt-4'"),
        ({"pattern": "(unclosed"}, "not a valid regular expression"),
        ({"special_tokens": "<|eot|>"}, "must be a list of strings"),
        ({"special_tokens": ["<a>", "<a>"]}, "listed more than once"),
        ({"special_tokens": [""]}, "non-empty strings"),
        ({"text": "ok \ud800 no"}, "lone surrogate U\\+D800 at position 3"),
    ],
)
def test_train_bad_input(kwargs, message):
    args = {"text": "some text", "vocab_size": 300, **kwargs}
    with pytest.raises(ValueError, match=message):
        BPETokenizer.train(**args)


@pytest.mark.parametrize("text", ["\ud800", "ok\udfffno", "🙂\udc00"])
def test_encode_rejects_lone_surrogates(tok, text):
    pos = next(i for i, c in enumerate(text) if 0xD800 <= ord(c) <= 0xDFFF)
    with pytest.raises(ValueError, match=f"lone surrogate .* at position {pos}"):
        tok.encode(text)
    with pytest.raises(ValueError, match=f"at position {pos}"):
        tok.encode(text, allowed_special="all")


def test_byte_without_token_is_a_clear_error():
    tok = BPETokenizer({i: bytes([i]) for i in range(128)}, [])  # ASCII only
    assert tok.encode("hi") == [104, 105]
    with pytest.raises(ValueError, match="byte 0xc3 has no token"):
        tok.encode("é")


def test_constructor_checks_merges():
    with pytest.raises(ValueError, match="not in the vocab"):
        BPETokenizer({0: b"a", 1: b"b"}, [(0, 1)])
    with pytest.raises(ValueError, match="same bytes"):
        BPETokenizer({0: b"a", 1: b"a"}, [])
    with pytest.raises(ValueError, match="also ordinary token ids"):
        BPETokenizer({0: b"a"}, [], special_tokens={"<s>": 0})


def test_importing_bpe_pulls_in_no_heavy_library():
    code = (
        "import sys, scratchllm.tokenizers.bpe as b\n"
        "t = b.BPETokenizer.train('hello hello', 260)\n"
        "t.save(sys.argv[1])\n"
        "b.BPETokenizer.load(sys.argv[1])\n"
        "bad = {'torch', 'tiktoken', 'tokenizers', 'transformers'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-c", code, d], check=True)


def test_decode_accepts_numpy_ids(tok):
    import numpy as np

    ids = tok.encode(MULTILINGUAL)
    assert tok.decode(np.array(ids, dtype=np.int64)) == MULTILINGUAL
    with pytest.raises(ValueError, match="token id 99999 is not in"):
        tok.decode(np.array([1, 99999]))


@pytest.mark.parametrize("name", ["gpt2", "gpt4"])
def test_ascii_fast_path_equals_unicode_regex(name):
    # All-ASCII text is split by a stdlib-`re` twin of the pattern; it must cut exactly where
    # the `regex` module does, for every ASCII character in every context.
    pattern = bpe_pattern.PATTERNS[name]
    ascii_chars = [chr(c) for c in range(128)]
    text = "".join(f"a{c}b 1{c}2  {c}{c}x '{c}S\n{c} \r\n{c}" for c in ascii_chars) + "  \n"
    assert text.isascii()
    assert bpe_pattern.split(pattern, text) == bpe_pattern.compiled(pattern).findall(text)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=40))
def test_ascii_fast_path_equals_unicode_regex_on_random_text(text):
    for pattern in bpe_pattern.PATTERNS.values():
        assert bpe_pattern.split(pattern, text) == bpe_pattern.compiled(pattern).findall(text)
