"""Long pre-token chunks: the linked-list merge gives the same ids as the textbook merge,
as tiktoken and as HF, for runs far past the length where the O(n^2) rescan stalled.

Timing lives in ``benchmarks/bench_bpe.py --only long``; these tests check ids only.
"""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from scratchllm.tokenizers import bpe as bpe_module
from scratchllm.tokenizers.bpe import BPETokenizer
from scratchllm.tokenizers.bpe_merge import int_ranks, merge_long, merge_scan

TEXT = (
    "the quick brown fox jumps over the lazy dog; xxxx yyyy xyxyxy aaaa abababab "
    "base64: QUJDRA== aGVsbG8gd29ybGQ= " * 20
)


def reference_merge(ids: list[int], merges: list[tuple[int, int]], made: list[int]) -> list[int]:
    """The textbook rule, written for clarity: find the lowest-ranked pair present, merge its
    leftmost occurrence, repeat until no pair has a rank."""
    rank: dict[tuple[int, int], int] = {}
    for r, p in enumerate(merges):
        rank.setdefault(p, r)
    ids = list(ids)
    while True:
        ranked = [(rank[p], i) for i, p in enumerate(zip(ids, ids[1:])) if p in rank]
        if not ranked:
            return ids
        r, i = min(ranked)
        ids[i : i + 2] = [made[r]]


def merges_of(tok: BPETokenizer) -> tuple[list[tuple[int, int]], list[int]]:
    return tok.merges, tok._made_by_rank


@pytest.fixture(scope="module")
def runs_tok():
    # The reproducer: merges x+x, xx+xx, ... up to 64 x's.
    return BPETokenizer.train("x" * 64, 256 + 6)


@pytest.fixture(scope="module")
def text_tok():
    return BPETokenizer.train(TEXT, 256 + 120)


@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 66, 127, 128, 129, 1000, 1023])
def test_identical_runs_equal_reference(runs_tok, n):
    merges, made = merges_of(runs_tok)
    want = reference_merge(list(b"x" * n), merges, made)
    assert runs_tok.encode("x" * n) == want
    assert runs_tok.decode(want) == "x" * n


@pytest.mark.parametrize("n", [65, 300, 2000])
@pytest.mark.parametrize("alphabet", ["xy", "ab", "abc", "QUJDRAaGVsbG8gd29ybGQ"])
def test_long_mixed_runs_equal_reference(text_tok, n, alphabet):
    rng = random.Random(n)
    chunk = "".join(rng.choice(alphabet) for _ in range(n))  # one chunk: letters only
    merges, made = merges_of(text_tok)
    assert text_tok.encode(chunk) == reference_merge(list(chunk.encode()), merges, made)


def test_long_path_is_the_one_taken_past_the_limit(text_tok, monkeypatch):
    # Both paths give the same ids on every chunk; forcing each in turn proves it on text.
    chunks = [TEXT.replace(" ", "")[:k] for k in (10, 64, 65, 500, 3000)]
    for limit in (0, 10**9):
        monkeypatch.setattr(bpe_module, "_SCAN_LIMIT", limit)
        fresh = BPETokenizer(text_tok.vocab, text_tok.merges)
        got = [fresh.encode(c) for c in chunks]
        merges, made = merges_of(fresh)
        assert got == [reference_merge(list(c.encode()), merges, made) for c in chunks]


def test_a_million_identical_characters(runs_tok):
    # Before the fix this never finished; now it is about a second (see the benchmark).
    n = 1_000_000
    ids = runs_tok.encode("x" * n)
    x64 = runs_tok._id_of[b"x" * 64]
    assert ids == [x64] * (n // 64)  # 1e6 = 64 * 15625 exactly
    assert ids == runs_tok.to_tiktoken().encode_ordinary("x" * n)


@pytest.mark.parametrize("n", [100_000, 100_003])
def test_long_runs_equal_tiktoken_and_hf(runs_tok, text_tok, tmp_path, n):
    for tok, text in ((runs_tok, "x" * n), (text_tok, ("abab" * n)[:n])):
        ids = tok.encode(text)
        assert ids == tok.to_tiktoken().encode_ordinary(text)
        hf = Tokenizer.from_file(str(tok.save(tmp_path / str(len(tok.merges)))))
        assert ids == hf.encode(text).ids
        assert tok.decode(ids) == text


def test_lower_rank_made_mid_sweep():
    # A hand-made merge list where a merge creates a pair that ranks *lower* than itself:
    # rank 0 joins "ab" + "a", rank 1 makes "ab". In "ababa..." each "ab" made at rank 1
    # can at once join the "a" after it at rank 0, before the next "ab" is made, so
    # sweeping all of rank 1 first would be wrong ("ab ab a" instead of "aba b a").
    vocab = {b: bytes([b]) for b in range(256)} | {256: b"ab", 257: b"aba"}
    tok = BPETokenizer(vocab, [(256, 97), (97, 98)])
    for n in (5, 64, 65, 200, 201):
        chunk = ("ab" * n)[:n]
        want = reference_merge(list(chunk.encode()), tok.merges, tok._made_by_rank)
        assert tok.encode(chunk) == want
    assert tok.encode("ababa") == [257, 98, 97]
    # tiktoken cannot express this vocabulary (it ranks merges by token id); we refuse.
    with pytest.raises(ValueError, match="tiktoken"):
        tok.to_tiktoken()


@st.composite
def merge_tables(draw):
    """A random merge list over a 4-letter alphabet, in any order (not only trained ones),
    and a sequence to merge."""
    tokens = [bytes([c]) for c in b"abcd"]
    pairs: list[tuple[int, int]] = []
    for _ in range(draw(st.integers(1, 12))):
        a, b = draw(st.integers(0, len(tokens) - 1)), draw(st.integers(0, len(tokens) - 1))
        made = tokens[a] + tokens[b]
        if made not in tokens:
            tokens.append(made)
        pairs.append((a, b))
    order = draw(st.permutations(range(len(pairs))))
    merges = [pairs[k] for k in order]
    made = [tokens.index(tokens[a] + tokens[b]) for a, b in merges]
    seq = draw(st.lists(st.integers(0, 3), min_size=0, max_size=300))
    return merges, made, seq


@settings(max_examples=300, deadline=None)
@given(merge_tables())
def test_both_merges_equal_reference_on_any_merge_list(table):
    merges, made, seq = table
    rank: dict[tuple[int, int], int] = {}
    for r, p in enumerate(merges):
        rank.setdefault(p, r)
    want = reference_merge(seq, merges, made)
    assert merge_scan(list(seq), rank, made) == want
    assert merge_long(list(seq), int_ranks(rank), made) == want


def test_docstring_examples_run():
    import doctest

    from scratchllm.tokenizers import bpe_merge

    result = doctest.testmod(bpe_merge)
    assert result.attempted > 0 and result.failed == 0
