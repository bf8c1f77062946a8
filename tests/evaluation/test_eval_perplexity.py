"""Perplexity and bits per char/byte: windows score each target once, values match peers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.evaluation.perplexity import evaluate_ids, evaluate_text, next_token_logprobs
from scratchllm.models import LanguageModel, NGram, NGramConfig
from scratchllm.tokenizers import CharTokenizer


class ContextProbe(LanguageModel):
    """A model whose prediction at a position reveals how many tokens it saw (and which)."""

    family = "probe"

    def __init__(self, context: int, vocab: int = 64):
        super().__init__(NGramConfig(n=context + 1, vocab_size=vocab))
        self.context = context

    @property
    def context_length(self) -> int:
        return self.context

    def forward(self, idx, targets=None, loss_mask=None):
        B, T = idx.shape
        assert self.context >= T, "a window longer than the context"
        seen = torch.arange(1, T + 1).expand(B, T)  # tokens visible at each position
        logits = torch.full((B, T, self.vocab_size), -1e9)
        logits.scatter_(2, seen[..., None] % self.vocab_size, 0.0)
        return logits, None


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 60), context=st.integers(1, 12), data=st.data())
def test_every_target_scored_once_with_enough_context(n, context, data):
    W = min(context, n - 1)
    stride = data.draw(st.integers(1, W))
    probe = ContextProbe(context)
    positions, seen = [], []
    for pos, logprobs in next_token_logprobs(probe, np.zeros(n, dtype=np.int64), stride, 4):
        positions.extend(pos.tolist())
        seen.extend(logprobs.argmax(-1).tolist())
    assert positions == list(range(1, n))
    for p, s in zip(positions, seen):
        assert s == min(p, W) or s >= W - stride + 1  # all the context there is, or enough


def test_ngram_matches_brute_force_and_its_own_loss():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 6, size=3000)
    held = rng.integers(0, 6, size=150)
    for n in (1, 2, 3, 5):
        model = NGram(NGramConfig(n=n, vocab_size=6, smoothing=0.5)).fit(train)
        nll, count = evaluate_ids(model, held)
        brute = -sum(
            math.log(float(model.probs(held[max(0, p - n + 1) : p])[held[p]]))
            for p in range(1, len(held))
        )
        assert count == len(held) - 1
        assert nll == pytest.approx(brute, rel=1e-6)
        # the n-gram also accepts the whole text as one window: same answer
        _, loss = model(torch.as_tensor(held[None, :-1]), torch.as_tensor(held[None, 1:]))
        assert nll / count == pytest.approx(float(loss), rel=1e-5)


def test_uniform_model_has_perplexity_vocab_size():
    tok = CharTokenizer.train("abcdefg")
    model = NGram(NGramConfig(n=3, vocab_size=tok.vocab_size))  # nothing counted: uniform
    report = evaluate_text(model, tok, "gfedcbaabcdefg" * 3)
    assert report.perplexity == pytest.approx(7.0)
    assert report.bits_per_token == pytest.approx(math.log2(7))
    assert report.bits_per_char == pytest.approx(math.log2(7))  # one token per character
    assert report.n_tokens == report.n_chars == 14 * 3 - 1


def test_bits_per_byte_counts_utf8_bytes():
    text = "héllo wörld ünïcode " * 5
    tok = CharTokenizer.train(text)
    model = NGram(NGramConfig(n=2, vocab_size=tok.vocab_size)).fit(tok.encode(text))
    r = evaluate_text(model, tok, text)
    total_bits = r.loss * r.n_tokens / math.log(2)
    assert r.n_chars == len(text) - 1
    assert r.n_bytes == len(text.encode()) - 1
    assert r.bits_per_byte == pytest.approx(total_bits / r.n_bytes)
    assert r.bits_per_byte < r.bits_per_char
    assert set(r.to_dict()) >= {"loss", "perplexity", "bits_per_char", "bits_per_byte"}
    assert "perplexity" in r.format_table()


@pytest.mark.slow  # importing transformers takes seconds
def test_matches_transformers_gpt2_loss():
    """A Hugging Face GPT-2 wrapped in our contract: same nll as its own loss."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=16, vocab_size=11)
    hf = transformers.GPT2LMHeadModel(cfg).eval()

    class Wrapped(LanguageModel):
        family = "hf-probe"

        def __init__(self):
            super().__init__(NGramConfig(n=9, vocab_size=11))
            self.hf = hf

        @property
        def context_length(self):
            return 8

        def forward(self, idx, targets=None, loss_mask=None):
            return self.hf(idx).logits, None

    ids = torch.randint(0, 11, (30,), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        short = ids[:9]  # fits one window of 8 inputs
        nll, count = evaluate_ids(Wrapped(), short.numpy())
        expected = hf(short[None], labels=short[None]).loss.item() * 8
        assert count == 8 and nll == pytest.approx(expected, rel=1e-5)
        # stride 1 over a longer text: each target predicted from the 8 tokens before it
        nll, count = evaluate_ids(Wrapped(), ids.numpy(), stride=1)
        first = hf(ids[None, :9], labels=ids[None, :9]).loss.item() * 8
        rest = sum(
            -torch.log_softmax(hf(ids[None, p - 8 : p]).logits[0, -1], -1)[ids[p]].item()
            for p in range(9, 30)
        )
        assert count == 29 and nll == pytest.approx(first + rest, rel=1e-5)


def test_bad_input():
    tok = CharTokenizer.train("abc")
    small = NGram(NGramConfig(n=2, vocab_size=2))
    with pytest.raises(ValueError, match="tokenizer has 3 tokens but the model's vocab_size is 2"):
        evaluate_text(small, tok, "abcabc")
    model = NGram(NGramConfig(n=2, vocab_size=3))
    with pytest.raises(ValueError, match="at least 2"):
        evaluate_text(model, tok, "a")
    with pytest.raises(ValueError, match="stride"):
        evaluate_ids(NGram(NGramConfig(n=4, vocab_size=3)), [0, 1, 2, 0, 1], stride=5)
