"""The theory check: a counting n-gram learns a language exactly when n >= context_needed.

For ``markov:order=k`` the next symbol depends on the last k symbols, so a (k+1)-gram can
represent the chain exactly and one with a shorter context cannot. Trained on enough
samples, the (k+1)-gram's samples are (nearly) all valid and its next-symbol predictions
match the true ones (KL near 0); the k-gram's are clearly worse. Same for ``sticky``, whose
context_needed is derived from its run-length rule.
"""

from __future__ import annotations

import random

import pytest

from scratchllm.data import languages
from scratchllm.evaluation.validity import evaluate_language
from scratchllm.models import NGram, NGramConfig
from scratchllm.tokenizers import CharTokenizer


def check_theory(spec: str, n_train: int, expected_context: int):
    lang = languages.get(spec)
    assert lang.context_needed == expected_context
    rng = random.Random(0)
    train = [lang.sample(rng) for _ in range(n_train)]
    held_rng = random.Random(1)
    heldout = [lang.sample(held_rng) for _ in range(60)]
    tok = CharTokenizer(sorted(lang.alphabet))
    ids = tok.encode("".join(train))
    reports = {}
    for n in (lang.context_needed - 1, lang.context_needed):
        model = NGram(NGramConfig(n=n, vocab_size=tok.vocab_size, smoothing=0.001)).fit(ids)
        reports[n] = evaluate_language(
            model, tok, lang, n_samples=200, seed=2, train_samples=train, heldout=heldout
        )
    short, enough = reports[lang.context_needed - 1], reports[lang.context_needed]
    assert enough.valid >= 0.99, enough.invalid_examples
    assert enough.kl < 0.03
    assert short.valid <= enough.valid - 0.3  # clearly fewer valid samples
    assert short.kl > 0.1 and short.kl > 5 * enough.kl
    assert enough.novel > 0.3  # it generalises rather than replaying the training set
    return short, enough


@pytest.mark.parametrize("k", [1, 2, 3])
def test_markov_order_k_needs_a_k_plus_1_gram(k):
    short, enough = check_theory(f"markov:order={k}", n_train=3000, expected_context=k + 1)
    assert enough.perplexity < short.perplexity


@pytest.mark.parametrize("k, n_train", [(1, 4000), (2, 8000), (3, 16000)])
def test_sticky_k_needs_k_plus_2_gram(k, n_train):
    # a run of one class lasts >= k+1 symbols: deciding whether a switch is allowed needs the
    # last k+1 symbols, so n = k + 2
    check_theory(f"sticky:k={k}", n_train=n_train, expected_context=k + 2)


def test_sticky_strict_variant():
    check_theory("sticky:k=2,strict=true", n_train=4000, expected_context=4)
