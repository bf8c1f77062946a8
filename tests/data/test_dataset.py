"""TokenDataset: memory-mapped token files, splits, random and sequential batches, masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from scratchllm.data.dataset import MASK_FILE, META_FILE, TOKENS_FILE, TokenDataset
from scratchllm.tokenizers import CharTokenizer

TEXT = "".join(f"line {i}: the quick brown fox {i * 7 % 13}\n" for i in range(200))


@pytest.fixture
def char_ds(tmp_path):
    tok = CharTokenizer.train(TEXT)
    return TokenDataset.from_text(TEXT, tok, tmp_path / "ds"), tok


def addition_samples(n, seed=0):
    """'a+b=c\\n' with the answer 'c\\n' as the part that counts."""
    rng = np.random.default_rng(seed)
    samples, masks = [], []
    for a, b in rng.integers(0, 50, size=(n, 2)):
        prompt, answer = f"{a}+{b}=", f"{a + b}\n"
        samples.append(prompt + answer)
        masks.append([False] * len(prompt) + [True] * len(answer))
    return samples, masks


def test_tokens_and_meta_on_disk(char_ds):
    ds, tok = char_ds
    ids = np.fromfile(ds.directory / TOKENS_FILE, dtype=np.uint16)
    assert ids.tolist() == tok.encode(TEXT)
    meta = json.loads((ds.directory / META_FILE).read_text())
    assert meta["n_tokens"] == len(TEXT) and meta["vocab_size"] == tok.vocab_size
    assert meta["dtype"] == "uint16" and meta["tokenizer_kind"] == "char"
    assert ds.tokenizer() == tok
    # the validation split is the last 10 % of the tokens
    assert ds.meta.split_index == len(TEXT) - round(0.1 * len(TEXT))
    assert not (ds.directory / MASK_FILE).exists()


def test_random_batches_are_windows_of_the_train_split(char_ds):
    ds, tok = char_ds
    x, y, mask = ds.get_batch("train", batch_size=16, block_size=24, rng=3)
    assert x.shape == y.shape == (16, 24) and x.dtype == y.dtype == torch.int64
    assert mask is None
    train = np.asarray(tok.encode(TEXT))[: ds.meta.split_index]
    windows = np.lib.stride_tricks.sliding_window_view(train, 25)  # every (x, y) window
    for xr, yr in zip(x.numpy(), y.numpy()):
        assert np.array_equal(xr[1:], yr[:-1])
        row = np.concatenate([xr, yr[-1:]])
        assert (windows == row).all(axis=1).any()  # a real slice that stays inside train


def test_batches_are_deterministic_per_seed(char_ds):
    ds, _ = char_ds
    a = ds.get_batch("val", 8, 16, rng=7)
    b = ds.get_batch("val", 8, 16, rng=7)
    c = ds.get_batch("val", 8, 16, rng=8)
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    stream = ds.batches("train", 4, 8, seed=1)
    first, second = next(stream), next(stream)
    again = ds.batches("train", 4, 8, seed=1)
    assert torch.equal(next(again).x, first.x) and torch.equal(next(again).x, second.x)


def test_random_windows_cover_the_whole_split(char_ds):
    ds, _ = char_ds
    lo, hi = ds.split_range("val")
    x, y, _ = ds.get_batch("val", 4000, 10, rng=0)
    seen = set(x[:, 0].tolist())
    ids = ds.tokens[lo:hi]
    starts_possible = {int(ids[i]) for i in range(hi - lo - 10)}
    assert seen == starts_possible  # neither start nor end of the split is left out


@pytest.mark.parametrize("block", [1, 5, 64])
def test_sequential_predicts_each_token_once(char_ds, block):
    ds, tok = char_ds
    val = tok.encode(TEXT)[ds.meta.split_index :]
    xs, ys = [], []
    for x, y, _ in ds.sequential("val", block_size=block, batch_size=3):
        assert x.shape[1] <= block
        xs.extend(x.reshape(-1).tolist())
        ys.extend(y.reshape(-1).tolist())
    assert ys == val[1:] and xs == val[:-1]


def test_split_falls_between_samples(tmp_path):
    samples, _ = addition_samples(101)
    tok = CharTokenizer.train("".join(samples))
    ds = TokenDataset.from_samples(samples, tok, tmp_path, val_fraction=0.2)
    lengths = np.cumsum([len(s) for s in samples])
    assert ds.meta.split_index in set(lengths.tolist())
    assert ds.meta.split_index >= 0.8 * lengths[-1]
    assert ds.meta.n_samples == 101
    assert tok.decode(ds.split_tokens("val")[:1].tolist()) != "\n"
    assert tok.decode([int(ds.tokens[ds.meta.split_index - 1])]) == "\n"


def test_loss_mask_travels_with_batches(tmp_path):
    samples, masks = addition_samples(300, seed=1)
    text = "".join(samples)
    char_mask = [m for ms in masks for m in ms]
    tok = CharTokenizer.train(text)
    ds = TokenDataset.from_samples(samples, tok, tmp_path, masks=masks)
    got_y, got_m = [], []
    for split in ("train", "val"):
        for _, y, m in ds.sequential(split, block_size=32):
            got_y.extend(y.reshape(-1).tolist())
            got_m.extend(m.reshape(-1).tolist())
    split = ds.meta.split_index
    expected_m = char_mask[1:split] + char_mask[split + 1 :]
    assert got_m == expected_m
    x, y, m = ds.get_batch("train", 64, 12, rng=0)
    assert m.dtype == torch.bool and m.shape == y.shape
    # a target counts exactly when it is part of an answer: after '=', up to the END
    eq, nl = tok.encode("=")[0], tok.encode("\n")[0]
    checked = 0
    for xr, mr in zip(x.tolist(), m.tolist()):
        for i, flag in enumerate(mr):
            before = xr[: i + 1]
            last_eq = max((j for j, t in enumerate(before) if t == eq), default=-1)
            last_nl = max((j for j, t in enumerate(before) if t == nl), default=-1)
            if max(last_eq, last_nl) >= 0:  # the window shows which part we are in
                assert flag == (last_eq > last_nl), (tok.decode(xr), i)
                checked += 1
    assert checked > 500


def test_from_corpus_and_from_file_agree_with_from_text(tmp_path):
    from scratchllm.data.corpus import Corpus

    tok = CharTokenizer.train(TEXT)
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    a = TokenDataset.from_text(TEXT, tok, tmp_path / "a")
    b = TokenDataset.from_file(path, tok, tmp_path / "b")
    c = TokenDataset.from_corpus(Corpus(text=TEXT, source="x"), tok, tmp_path / "c")
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.tokens, c.tokens)
    assert a.meta.split_index == b.meta.split_index == c.meta.split_index


def test_large_vocab_uses_uint32(tmp_path):
    chars = [chr(0x20000 + i) for i in range(70_000)]  # beyond what uint16 can index
    tok = CharTokenizer(chars)
    text = "".join(chars[-5:] * 20)
    ds = TokenDataset.from_text(text, tok, tmp_path)
    assert ds.meta.dtype == "uint32" and ds.tokens.dtype == np.uint32
    assert ds.tokens[:5].tolist() == list(range(69_995, 70_000))
    x, _, _ = ds.get_batch("train", 2, 4, rng=0)
    assert int(x.max()) >= 69_995


def test_too_short_and_empty_corpora_say_how_long(tmp_path):
    tok = CharTokenizer.train("abc")
    ds = TokenDataset.from_text("abcabcabcabc", tok, tmp_path / "short", val_fraction=0.25)
    with pytest.raises(ValueError, match="has 9 tokens, but block_size 16 needs at least 17"):
        ds.get_batch("train", 2, 16)
    with pytest.raises(ValueError, match="block_size 16 needs at least 17"):
        ds.batches("val", 2, 16)
    with pytest.raises(ValueError, match="is empty"):
        TokenDataset.from_text("", tok, tmp_path / "empty")
    with pytest.raises(ValueError, match="split 'test' is not one of"):
        ds.split_range("test")
    with pytest.raises(ValueError, match="batch_size"):
        ds.get_batch("train", 0, 2)


def test_damaged_datasets_are_clear_errors(tmp_path, char_ds):
    with pytest.raises(FileNotFoundError, match="not a token dataset"):
        TokenDataset(tmp_path / "nowhere")
    ds, _ = char_ds
    with open(ds.directory / TOKENS_FILE, "r+b") as f:
        f.truncate(10)
    with pytest.raises(ValueError, match="corrupt: rebuild it"):
        TokenDataset(ds.directory)
    (ds.directory / META_FILE).write_text("{not json")
    with pytest.raises(ValueError, match="meta.json: not a token dataset"):
        TokenDataset(ds.directory)


def _rss_anon_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    pytest.skip("no /proc/self/status RssAnon on this system")


@pytest.mark.slow
def test_a_file_larger_than_memory_budget_streams_in_constant_memory(tmp_path):
    """300 MB of tokens written and served while anonymous memory grows < 64 MB."""
    tok = CharTokenizer([chr(0x100 + i) for i in range(1000)])
    chunk, n_chunks = 1 << 22, 36  # 36 x 4M uint16 tokens = 302 MB
    base = _rss_anon_mb()
    peak = base

    def chunks():
        nonlocal peak
        rng = np.random.default_rng(0)
        for _ in range(n_chunks):
            peak = max(peak, _rss_anon_mb())
            yield rng.integers(0, 1000, size=chunk, dtype=np.uint16)

    ds = TokenDataset.from_token_chunks(chunks(), tok, tmp_path)
    assert (tmp_path / TOKENS_FILE).stat().st_size == chunk * n_chunks * 2
    for i in range(50):  # random windows from all over the file
        ds.get_batch("train", 64, 256, rng=i)
    tail = next(iter(ds.sequential("val", block_size=1024, batch_size=64)))
    assert tail.x.shape == (64, 1024)
    peak = max(peak, _rss_anon_mb())
    assert peak - base < 64, f"anonymous memory grew by {peak - base:.0f} MB"


@pytest.mark.slow
def test_from_file_streams_the_text(tmp_path):
    """A 32 MB text file: tokenizing it whole would hold ~300 MB of ids; streaming does not."""

    class Watched(CharTokenizer):
        peak = 0.0

        def encode(self, text):
            ids = super().encode(text)
            Watched.peak = max(Watched.peak, _rss_anon_mb())
            return ids

    line = "".join(chr(0x61 + i % 26) for i in range(63)) + "\n"
    path = tmp_path / "big.txt"
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(32):
            f.write(line * (1 << 14))  # 1 MiB per write
    tok = Watched(sorted(set(line)))
    base = _rss_anon_mb()
    ds = TokenDataset.from_file(path, tok, tmp_path / "ds")
    assert len(ds) == path.stat().st_size
    assert ds.tokens[-64:].tolist() == tok.encode(line)
    assert Watched.peak - base < 150, f"anonymous memory grew by {Watched.peak - base:.0f} MB"
