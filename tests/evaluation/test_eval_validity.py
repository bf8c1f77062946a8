"""Validity, uniqueness, novelty and KL, checked with models whose answers we know."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from scratchllm.data import languages
from scratchllm.evaluation.validity import evaluate_language, kl_to_language
from scratchllm.models import LanguageModel, NGram, NGramConfig
from scratchllm.tokenizers import CharTokenizer

SPEC = "markov:order=2,alphabet=4,branch=2,length=6"


@pytest.fixture(scope="module")
def setup():
    lang = languages.get(SPEC)
    tok = CharTokenizer(sorted(lang.alphabet))
    rng = random.Random(0)
    heldout = [lang.sample(rng) for _ in range(25)]
    return lang, tok, heldout


class Oracle(LanguageModel):
    """Predicts the language's true next-symbol distribution from the window's text."""

    family = "oracle-probe"

    def __init__(self, lang, tok):
        super().__init__(NGramConfig(n=2, vocab_size=tok.vocab_size))
        self.lang, self.tok, self.cache = lang, tok, {}

    @property
    def context_length(self):
        return 128

    def forward(self, idx, targets=None, loss_mask=None):
        B, T = idx.shape
        out = torch.full((B, T, self.vocab_size), -math.inf)
        for b in range(B):
            text = self.tok.decode(idx[b].tolist())
            for t in range(T):
                prefix = text[: t + 1].rsplit("\n", 1)[-1]
                if prefix not in self.cache:
                    row = torch.full((self.vocab_size,), -math.log(self.vocab_size))
                    try:
                        dist = self.lang.next_distribution(prefix)
                    except ValueError:  # a window that starts mid-sample: never scored
                        dist = None
                    if dist is not None:
                        row[:] = -math.inf
                        for sym, p in dist.items():
                            row[self.tok.encode(sym)[0]] = math.log(p)
                    self.cache[prefix] = row
                out[b, t] = self.cache[prefix]
        return out, None


def true_stats(lang, samples, V):
    """Mean true next-symbol NLL and mean KL(true || uniform over V), by hand."""
    nll, kl_uniform, count = 0.0, 0.0, 0
    for s in samples:
        for i, ch in enumerate(s):
            dist = lang.next_distribution(s[:i])
            nll -= math.log(dist[ch])
            kl_uniform += sum(p * math.log(p * V) for p in dist.values() if p > 0)
            count += 1
    return nll / count, kl_uniform / count, count


def test_oracle_is_valid_with_zero_kl(setup):
    lang, tok, heldout = setup
    report = evaluate_language(Oracle(lang, tok), tok, lang, n_samples=40, heldout=heldout)
    assert report.valid == 1.0
    assert report.kl == pytest.approx(0.0, abs=1e-6)
    nll, _, count = true_stats(lang, heldout, tok.vocab_size)
    assert report.kl_positions == count
    # held-out loss: the END that opens the stream is context, every other symbol is scored
    assert report.val_loss == pytest.approx(nll, rel=1e-5)
    assert report.perplexity == pytest.approx(math.exp(nll), rel=1e-5)


def test_uniform_model_kl_matches_hand_computation(setup):
    lang, tok, heldout = setup
    uniform = NGram(NGramConfig(n=3, vocab_size=tok.vocab_size))  # nothing counted
    kl, count = kl_to_language(uniform, tok, lang, heldout)
    _, expected, expected_count = true_stats(lang, heldout, tok.vocab_size)
    assert count == expected_count
    assert kl == pytest.approx(expected, rel=1e-5)
    report = evaluate_language(uniform, tok, lang, n_samples=100, heldout=heldout)
    assert report.valid < 0.5  # random strings are rarely valid
    assert report.perplexity == pytest.approx(tok.vocab_size, rel=1e-5)


def test_unique_and_novel(setup):
    lang, tok, _ = setup
    sample = lang.sample(random.Random(3))
    parrot = NGram(NGramConfig(n=30, vocab_size=tok.vocab_size, smoothing=0))
    parrot.fit(tok.encode("\n" + sample))  # can only say this one sample
    seen = evaluate_language(parrot, tok, lang, n_samples=20, train_samples=[sample])
    assert seen.valid == 1.0 and seen.unique == pytest.approx(1 / 20) and seen.novel == 0.0
    unseen = evaluate_language(parrot, tok, lang, n_samples=20, train_samples=["x\n"])
    assert unseen.novel == 1.0
    assert evaluate_language(parrot, tok, lang, n_samples=5).novel is None
    assert seen.mean_length == len(sample)


def test_invalid_samples_are_reported_with_reasons(setup):
    lang, tok, heldout = setup
    uniform = NGram(NGramConfig(n=2, vocab_size=tok.vocab_size))
    report = evaluate_language(uniform, tok, lang, n_samples=30, seed=1, heldout=heldout)
    assert report.invalid_examples
    for e in report.invalid_examples:
        verdict = lang.verify(e["sample"])
        assert not verdict.valid and e["reason"] == verdict.reason
    data = json.loads(json.dumps(report.to_dict()))
    assert set(data) >= {"valid", "unique", "novel", "kl", "val_loss", "perplexity"}
    table = report.format_table()
    assert "valid" in table and "invalid samples" in table
    # max_new_tokens bounds runaway samples: they end up invalid (no END), not endless
    short = evaluate_language(uniform, tok, lang, n_samples=10, max_new_tokens=1)
    assert all(len(e["sample"]) <= 1 for e in short.invalid_examples)


def test_kl_unknown_without_a_true_distribution(setup):
    lang, tok, heldout = setup

    class NoDistribution:
        END, alphabet, spec = lang.END, lang.alphabet, "x"

        def next_distribution(self, prefix):
            return None

    model = NGram(NGramConfig(n=2, vocab_size=tok.vocab_size))
    assert kl_to_language(model, tok, NoDistribution(), heldout) is None


def test_vocab_mismatch(setup):
    lang, tok, _ = setup
    model = NGram(NGramConfig(n=2, vocab_size=tok.vocab_size + 1))
    with pytest.raises(ValueError, match="vocab_size"):
        evaluate_language(model, tok, lang, n_samples=2)
