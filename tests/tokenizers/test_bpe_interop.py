"""BPETokenizer held against the libraries people trust: HF ``tokenizers`` and tiktoken.

- training learns the same merges as HF's BpeTrainer (same ties, same order);
- our tokenizer.json, read by HF, and our tiktoken export give the ids we give;
- tokenizer.json / vocab.json + merges.txt files written by HF load and give HF's ids.
"""

import json
import random
import tempfile
import unicodedata
from pathlib import Path

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from scratchllm.tokenizers.bpe import BPETokenizer
from scratchllm.tokenizers.bpe_bytes import token_to_str
from scratchllm.tokenizers.bpe_pattern import GPT4_PATTERN, PATTERNS, split

SHAKESPEARE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "tinyshakespeare.txt"
SPECIAL = "<|endoftext|>"

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "It's",
    "we'll",
    "THEY'VE",
    "don't",
    "façade",
    "naïve",
    "Übergrößenträger",
    "straße",
    "déjà-vu",
    "garçon",
    "Привет",
    "мир",
    "как",
    "дела",
    "хорошо",
    "спасибо",
    "Γειά",
    "σου",
    "κόσμε",
    "καλημέρα",
    "日本語",
    "テキスト",
    "漢字",
    "中文",
    "可以",
    "한국어",
    "문장",
    "입니다",
    "مرحبا",
    "بالعالم",
    "नमस्ते",
    "दुनिया",
    "🙂",
    "🙂🙂",
    "👩\u200d👩\u200d👧\u200d👦",
    "👍🏽",
    "🇫🇷",
    "é",
    "ạ̈",
    "0",
    "7",
    "42",
    "2024",
    "3.14159",
    "1,000,000",
    "x=1+2*3;",
    "{'k':",
    "[1,",
    "2]}",
    "/*",
    "c",
    "*/",
    "--",
    "...",
    "!!!",
    "??",
]
SEPARATORS = [" ", " ", " ", "  ", "\n", "\n\n", "\t", " \n", "\r\n", ", ", ". "]


def multilingual(seed: int, n_words: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(WORDS) + rng.choice(SEPARATORS) for _ in range(n_words))


def corpus(name: str) -> tuple[str, str]:
    """(training text, held-out text)."""
    if name == "multilingual":
        return multilingual(0, 6000), multilingual(1, 1500)
    if not SHAKESPEARE.is_file():
        pytest.skip(f"{SHAKESPEARE} is not here (it is in CI)")
    text = SHAKESPEARE.read_text(encoding="utf-8")
    return text[:150_000], text[150_000:190_000]


def hf_tokenizer(pattern: str) -> Tokenizer:
    """An untrained HF byte-level BPE with the given pre-tokenization, set up like GPT-2's."""
    tok = Tokenizer(models.BPE())
    if pattern == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(GPT4_PATTERN), "isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    tok.decoder = decoders.ByteLevel()
    return tok


def hf_train(text: str, vocab_size: int, pattern: str, specials=()) -> Tokenizer:
    tok = hf_tokenizer(pattern)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([text], trainer)
    return tok


def hf_merges(tok: Tokenizer) -> list[tuple[str, str]]:
    merges = json.loads(tok.to_str())["model"]["merges"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]


def our_merges(tok: BPETokenizer) -> list[tuple[str, str]]:
    return [(token_to_str(tok.vocab[a]), token_to_str(tok.vocab[b])) for a, b in tok.merges]


VOCAB = {"tinyshakespeare": 1000, "multilingual": 700}


@pytest.fixture(
    scope="module",
    params=[(c, p) for c in ("tinyshakespeare", "multilingual") for p in ("gpt2", "gpt4")],
    ids=lambda cp: "-".join(cp),
)
def setup(request):
    name, pattern = request.param
    train, held_out = corpus(name)
    ours = BPETokenizer.train(train, VOCAB[name], pattern=pattern, special_tokens=[SPECIAL])
    theirs = hf_train(train, VOCAB[name], pattern, specials=[SPECIAL])
    return ours, theirs, train, held_out


def test_same_merges_as_hf_trainer(setup):
    ours, theirs, _, _ = setup
    assert ours.vocab_size == theirs.get_vocab_size()
    assert our_merges(ours) == hf_merges(theirs)
    ours_strings = {token_to_str(t) for t in ours.vocab.values()} | set(ours.special_tokens)
    assert ours_strings == set(theirs.get_vocab())


def test_ids_equal_hf_and_tiktoken(setup, tmp_path):
    ours, _, train, held_out = setup
    hf = Tokenizer.from_file(str(ours.save(tmp_path)))
    enc = ours.to_tiktoken()
    with_special = held_out[:3000] + SPECIAL + held_out[3000:6000] + SPECIAL
    for text in (train[:50_000], held_out):
        ids = ours.encode(text)
        assert ids == hf.encode(text).ids
        assert ids == enc.encode_ordinary(text)
        assert ours.decode(ids) == text == hf.decode(ids) == enc.decode(ids)
    ids = ours.encode(with_special, allowed_special="all")
    assert ids == hf.encode(with_special).ids == enc.encode(with_special, allowed_special="all")
    assert ids.count(ours.special_tokens[SPECIAL]) == 2
    # tiktoken and we agree on refusing a special token that is not allowed.
    with pytest.raises(ValueError):
        enc.encode(with_special)
    with pytest.raises(ValueError, match="not allowed"):
        ours.encode(with_special)


def test_hf_written_tokenizer_json_loads(setup, tmp_path):
    _, theirs, _, held_out = setup
    theirs.save(str(tmp_path / "tokenizer.json"))
    loaded = BPETokenizer.load(tmp_path)
    # HF numbers specials first and the byte alphabet in code-point order: its ids, not ours.
    assert loaded.special_tokens == {SPECIAL: 0}
    text = held_out + SPECIAL + held_out[:500]
    assert loaded.encode(text, allowed_special="all") == theirs.encode(text).ids
    assert loaded.decode(theirs.encode(text).ids) == text
    assert loaded.vocab_size == theirs.get_vocab_size()


def test_gpt2_files_written_by_hf_load(setup, tmp_path):
    _, theirs, _, held_out = setup
    vocab_json, merges_txt = theirs.model.save(str(tmp_path))
    ours = BPETokenizer.from_gpt2_files(vocab_json, merges_txt)
    assert ours.special_tokens == {SPECIAL: 0}  # GPT-2's <|endoftext|>: special by default
    reference = Tokenizer(models.BPE.from_file(vocab_json, merges_txt))
    reference.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    reference.add_special_tokens([SPECIAL])
    text = held_out + SPECIAL
    assert ours.encode(text, allowed_special="all") == reference.encode(text).ids


def test_our_gpt2_files_read_by_hf(setup, tmp_path):
    ours, _, _, held_out = setup
    if ours.pattern_name != "gpt2":
        pytest.skip("vocab.json + merges.txt imply the GPT-2 pattern")
    vocab_json, merges_txt = ours.save_gpt2_files(tmp_path)
    hf = Tokenizer(models.BPE.from_file(str(vocab_json), str(merges_txt)))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.add_special_tokens([SPECIAL])
    text = held_out + SPECIAL + held_out[:100]
    assert hf.encode(text).ids == ours.encode(text, allowed_special="all")


@settings(max_examples=25, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from("aabbc d  \n'é日🙂1"), min_size=1, max_size=120),
    n_merges=st.integers(1, 30),
    pattern=st.sampled_from(["gpt2", "gpt4"]),
)
def test_same_merges_as_hf_trainer_on_random_text(text, n_merges, pattern):
    if not text.strip():
        return  # rejected by our trainer on purpose (tested in test_bpe.py)
    ours = BPETokenizer.train(text, 256 + n_merges, pattern=pattern)
    theirs = hf_train(text, 256 + n_merges, pattern)
    assert our_merges(ours) == hf_merges(theirs)
    with tempfile.TemporaryDirectory() as d:
        assert ours.encode(text) == Tokenizer.from_file(str(ours.save(d))).encode(text).ids


def test_to_tiktoken_refuses_ids_out_of_merge_order():
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"ab", 257: b"cd"}
    tok = BPETokenizer(vocab, [(99, 100), (97, 98)])  # "cd" (id 257) is merged first
    assert tok.encode("abcd") == [256, 257]
    with pytest.raises(ValueError, match="ranks merges by token id"):
        tok.to_tiktoken()


def test_to_tiktoken_is_a_tiktoken_encoding():
    tok = BPETokenizer.train(multilingual(2, 500), 300, special_tokens=[SPECIAL])
    enc = tok.to_tiktoken(name="mine")
    assert isinstance(enc, tiktoken.Encoding) and enc.name == "mine"
    assert enc.n_vocab == tok.vocab_size
    assert enc.eot_token == tok.special_tokens[SPECIAL]


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
def test_pretokenization_equals_hf(pattern):
    # Every third code point up to U+3000, every space and control character, and some
    # astral ones, in contexts that exercise each branch of the patterns (letters, digits,
    # spaces, contractions, newlines). Code points unassigned in Python's Unicode tables are
    # left out: the regex module's newer tables may call them letters where Oniguruma's
    # older ones do not.
    spaces = [c for c in range(0x3001) if chr(c).isspace() or unicodedata.category(chr(c)) == "Cc"]
    astral = [0x1F642, 0x10400, 0x1D7D8, 0x1F1EB, 0xE0001]
    chars = [chr(c) for c in sorted({*range(0, 0x3001, 3), *spaces, *astral})]
    chars = [c for c in chars if unicodedata.category(c) not in ("Cn", "Cs")]
    text = "".join(f"a{c}b1{c}  {c}{c}'S\n" for c in chars)
    ours = [token_to_str(chunk.encode()) for chunk in split(PATTERNS[pattern], text)]
    theirs = [s for s, _ in hf_tokenizer(pattern).pre_tokenizer.pre_tokenize_str(text)]
    assert ours == theirs


@pytest.mark.parametrize("ignore_merges", [False, True])
def test_ignore_merges_file_matches_hf(tmp_path, ignore_merges):
    # "bc" is merged before "ab", so by merges "abc" -> a + bc; but "abc" is a token too, and
    # Llama-3-style files set "ignore_merges": a chunk that is a token is then taken whole.
    a, b, c = b"abc"
    vocab = {i: bytes([i]) for i in range(256)} | {256: b"bc", 257: b"ab", 258: b"abc"}
    tok = BPETokenizer(vocab, [(b, c), (a, b), (257, c)])
    file = tok.save(tmp_path)
    data = json.loads(file.read_text(encoding="utf-8"))
    data["model"]["ignore_merges"] = ignore_merges
    file.write_text(json.dumps(data), encoding="utf-8")
    ours, hf = BPETokenizer.load(file), Tokenizer.from_file(str(file))
    assert ours.ignore_merges == ignore_merges
    text = "abc xabc abcd"
    assert ours.encode(text) == hf.encode(text).ids
    assert ours.encode("abc") == ([258] if ignore_merges else [a, 256])
