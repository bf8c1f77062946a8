"""The counting n-gram model against a plain-dict reference, plus save/load and bad input."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import scratchllm.models.ngram as ngram_module
from scratchllm.models import NGram, NGramConfig, load


def reference_logprobs(docs, n, V, k, window):
    """log P(next | context) at each position of ``window``, from plain dict counting.

    Every position of every document counts under its contexts of length 0..n-1 (as many as
    exist before it); a window position with j tokens up to it uses the min(j, n-1) newest.
    """
    counts: Counter = Counter()
    totals: Counter = Counter()
    for doc in docs:
        for p, tok in enumerate(doc):
            for j in range(0, min(p, n - 1) + 1):
                ctx = tuple(doc[p - j : p])
                counts[ctx, tok] += 1
                totals[ctx] += 1
    out = []
    for t in range(len(window)):
        j = min(t + 1, n - 1)
        ctx = tuple(window[t + 1 - j : t + 1]) if j else ()
        denom = totals[ctx] + k * V
        row = []
        for v in range(V):
            if denom == 0:
                row.append(-math.log(V))
            else:
                p = (counts[ctx, v] + k) / denom
                row.append(math.log(p) if p > 0 else -math.inf)
        out.append(row)
    return torch.tensor(out, dtype=torch.float64)


def assert_matches_reference(model, docs, window):
    c = model.config
    expected = reference_logprobs(docs, c.n, c.vocab_size, c.smoothing, window)
    logits, _ = model(torch.tensor([window]))
    torch.testing.assert_close(logits[0].double(), expected, rtol=1e-5, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 4),
    V=st.integers(1, 5),
    k=st.sampled_from([0.0, 0.5, 1.0]),
    data=st.data(),
)
def test_forward_matches_dict_counting(n, V, k, data):
    docs = data.draw(st.lists(st.lists(st.integers(0, V - 1), max_size=30), min_size=1, max_size=3))
    window = data.draw(st.lists(st.integers(0, V - 1), min_size=1, max_size=12))
    model = NGram(NGramConfig(n=n, vocab_size=V, smoothing=k))
    for doc in docs:
        model.fit(doc)
    assert_matches_reference(model, docs, window)
    # The sparse path (models too large for the dense tables) gives the same numbers.
    dense = model(torch.tensor([window]))[0]
    original = ngram_module.DENSE_TABLE_LIMIT
    ngram_module.DENSE_TABLE_LIMIT = 0
    try:
        assert_matches_reference(model, docs, window)
        assert torch.equal(model(torch.tensor([window]))[0], dense)
    finally:
        ngram_module.DENSE_TABLE_LIMIT = original


def test_dense_tables_follow_new_counts_and_loads(tmp_path):
    model = NGram(NGramConfig(n=3, vocab_size=4, smoothing=0.5)).fit([0, 1, 2, 0, 1])
    window = torch.tensor([[0, 1, 3, 2]])
    before = model(window)[0]
    assert model.dense_logprobs is not None and model.dense_child is not None
    model.fit([1, 3, 2, 2, 1, 3])  # new contexts and counts: the tables are rebuilt
    assert model.dense_logprobs is None
    after = model(window)[0]
    assert not torch.equal(before, after)
    assert_matches_reference(model, [[0, 1, 2, 0, 1], [1, 3, 2, 2, 1, 3]], window[0].tolist())
    model.save(tmp_path)
    assert "dense_logprobs" not in load(tmp_path).state_dict()  # derived, never saved
    torch.testing.assert_close(load(tmp_path)(window)[0], after)


def test_probabilities_sum_to_one_and_loss_is_mean_nll():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 7, size=500)
    model = NGram(NGramConfig(n=3, vocab_size=7, smoothing=0.1)).fit(ids)
    x = torch.as_tensor(rng.integers(0, 7, size=(4, 16)))
    y = torch.as_tensor(rng.integers(0, 7, size=(4, 16)))
    logits, loss = model(x, y)
    assert logits.shape == (4, 16, 7)
    torch.testing.assert_close(logits.exp().sum(-1), torch.ones(4, 16))
    expected = -logits.gather(-1, y[..., None]).mean()
    torch.testing.assert_close(loss, expected)
    mask = torch.zeros(4, 16, dtype=torch.bool)
    mask[:, -3:] = True
    _, masked = model(x, y, loss_mask=mask)
    torch.testing.assert_close(masked, -logits.gather(-1, y[..., None])[:, -3:].mean())


def test_chunked_counting_equals_one_pass(monkeypatch):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 5, size=300)
    whole = NGram(NGramConfig(n=4, vocab_size=5)).fit(ids)
    monkeypatch.setattr(ngram_module, "_FIT_CHUNK", 17)
    chunked = NGram(NGramConfig(n=4, vocab_size=5)).fit(ids)
    # Node numbering depends on the order contexts were met; the statistics must not.
    assert chunked.num_contexts == whole.num_contexts
    assert torch.equal(chunked.counts.sort().values, whole.counts.sort().values)
    x = torch.as_tensor(ids[None, :])
    assert torch.equal(chunked(x)[0], whole(x)[0])


def test_memmap_input(tmp_path):
    ids = np.random.default_rng(2).integers(0, 9, size=1000).astype(np.uint16)
    path = tmp_path / "tokens.bin"
    ids.tofile(path)
    mm = np.memmap(path, dtype=np.uint16, mode="r")
    a = NGram(NGramConfig(n=3, vocab_size=9)).fit(mm)
    b = NGram(NGramConfig(n=3, vocab_size=9)).fit(ids.tolist())
    assert a.total_count == b.total_count == 1000
    assert torch.equal(a.counts, b.counts)


def test_storage_is_sparse():
    # V^n = 1000^4 cells dense; a 2000-token corpus has at most 2000 contexts per order.
    ids = np.random.default_rng(3).integers(0, 1000, size=2000)
    model = NGram(NGramConfig(n=4, vocab_size=1000)).fit(ids)
    assert model.num_contexts <= 1 + 3 * 2000
    assert model.counts.numel() <= 4 * 2000
    assert model.total_count == 2000


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_save_load_round_trip(tmp_path, n):
    ids = np.random.default_rng(n).integers(0, 6, size=400)
    model = NGram(NGramConfig(n=n, vocab_size=6, smoothing=0.25)).fit(ids)
    model.save(tmp_path / "ckpt")
    back = load(tmp_path / "ckpt")
    assert isinstance(back, NGram) and back.config == model.config
    x = torch.as_tensor(np.random.default_rng(9).integers(0, 6, size=(3, 10)))
    torch.testing.assert_close(back(x)[0], model(x)[0])
    back.fit([1, 2, 3])  # a loaded model keeps counting
    assert back.total_count == model.total_count + 3


def test_untrained_and_tiny_models_are_uniform():
    fresh = NGram(NGramConfig(n=3, vocab_size=4, smoothing=0.0))
    logits, _ = fresh(torch.tensor([[0, 1, 2]]))
    torch.testing.assert_close(logits.exp(), torch.full((1, 3, 4), 0.25))
    one = NGram(NGramConfig(n=3, vocab_size=4, smoothing=0.0)).fit([2])
    assert one.probs([]).tolist() == [0.0, 0.0, 1.0, 0.0]  # unigram: only 2 was seen
    torch.testing.assert_close(one.probs([2]), torch.full((4,), 0.25))  # unseen context


def test_corrupt_tables_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    model = NGram(NGramConfig(n=2, vocab_size=4)).fit([0, 1, 2, 3, 0])
    model.save(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["next_token"] = tensors["next_token"] + 10
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="outside 0..3"):
        load(tmp_path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n": 0}, "n \\(0\\) must be an integer >= 1"),
        ({"vocab_size": 0}, "vocab_size"),
        ({"smoothing": -1.0}, "smoothing"),
        ({"smoothing": float("nan")}, "smoothing"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NGramConfig(**kwargs)


def test_bad_ids():
    model = NGram(NGramConfig(n=2, vocab_size=4))
    with pytest.raises(ValueError, match="token id 7 at position 2 is outside 0..3"):
        model.fit([0, 1, 7])
    with pytest.raises(ValueError, match="1-D"):
        model.fit([[0, 1]])
    with pytest.raises(ValueError, match="outside 0..3"):
        model(torch.tensor([[0, 4]]))
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        model(torch.tensor([0, 1]))


def test_context_length_and_family():
    model = NGram(NGramConfig(n=4, vocab_size=3))
    assert model.context_length == 3
    assert model.family == "ngram"
    assert model.num_parameters() == 0
