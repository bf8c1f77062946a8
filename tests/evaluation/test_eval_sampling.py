"""The simple ancestral sampler: right distribution, temperature, stop token, any model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scratchllm.evaluation.sampling import sample_tokens
from scratchllm.models import LanguageModel, NGram, NGramConfig


class FixedNext(LanguageModel):
    """Predicts the same logits everywhere: the sampler's draws must follow softmax(logits/T)."""

    family = "fixed-probe"

    def __init__(self, logits):
        super().__init__(NGramConfig(n=1, vocab_size=len(logits)))
        self.register_buffer("row", torch.tensor(logits, dtype=torch.float32))

    @property
    def context_length(self):
        return 4

    def forward(self, idx, targets=None, loss_mask=None):
        B, T = idx.shape
        return self.row.expand(B, T, -1).clone(), None


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_draws_follow_softmax_over_temperature(temperature):
    logits = [0.0, 1.0, -1.0, 2.0]
    model = FixedNext(logits)
    draws = sample_tokens(model, [0], n=6000, max_new_tokens=1, temperature=temperature, seed=3)
    freq = np.bincount([d[0] for d in draws], minlength=4) / 6000
    expected = torch.softmax(torch.tensor(logits) / temperature, -1).numpy()
    # 6000 draws: each frequency is within ~4 standard errors (<= 0.026) of its probability
    assert np.abs(freq - expected).max() < 0.026, (freq, expected)


def test_greedy_and_seeds():
    model = FixedNext([0.0, 3.0, 1.0])
    assert sample_tokens(model, [0], n=3, max_new_tokens=5, temperature=0) == [[1] * 5] * 3
    a = sample_tokens(model, [0], n=20, max_new_tokens=6, seed=1)
    b = sample_tokens(model, [0], n=20, max_new_tokens=6, seed=1)
    c = sample_tokens(model, [0], n=20, max_new_tokens=6, seed=2)
    assert a == b and a != c


def test_ngram_chain_and_stop_token():
    # a deterministic cycle 0 -> 1 -> 2 -> 3 -> 0 with 3 as the stop token
    model = NGram(NGramConfig(n=2, vocab_size=4, smoothing=0)).fit([0, 1, 2, 3] * 10)
    out = sample_tokens(model, [3], n=5, max_new_tokens=10, stop_token=3, seed=0, batch_size=2)
    assert out == [[0, 1, 2, 3]] * 5
    # without a stop token it runs to max_new_tokens, following the cycle
    assert sample_tokens(model, [1], n=1, max_new_tokens=6) == [[2, 3, 0, 1, 2, 3]]


def test_uses_only_the_models_context():
    # A trigram conditions on two tokens: the sampler must feed them, not just the last one.
    seq = [0, 0, 1, 0, 1, 1] * 20  # after (0,0) comes 1; after (1,0) comes 1; after (0,1): 0|1
    model = NGram(NGramConfig(n=3, vocab_size=2, smoothing=0)).fit(seq)
    out = sample_tokens(model, [0, 0], n=20, max_new_tokens=12, seed=4)
    for row in out:
        full = [0, 0, *row]
        for i in range(2, len(full)):
            p = model.probs(full[i - 2 : i])[full[i]]
            assert p > 0, f"sampled an impossible token in {full}"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"n": 0}, "n \\(0\\)"),
        ({"prompt": []}, "at least one token"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"prompt": [0], "n": 1, "max_new_tokens": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        sample_tokens(FixedNext([0.0, 1.0]), **args)


def test_the_samples_are_what_generate_gives_with_their_seeds():
    # The measured samples are what `generate` (and so `scratchllm sample`) makes: each
    # row alone, with its seed, through the KV cache and past the context (block 8).
    from scratchllm.evaluation.sampling import sample_seeds
    from scratchllm.generation import generate
    from scratchllm.models import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=5, n_layer=1, n_head=1, n_embd=8, block_size=8)).eval()
    out = sample_tokens(model, [0], n=5, max_new_tokens=12, seed=3, stop_token=4, batch_size=2)
    for row, seed in zip(out, sample_seeds(3, 5)):
        alone = generate(model, [[0]], 12, eos_token_id=4, seed=seed)[0, 1:].tolist()
        assert row == (alone[: alone.index(4) + 1] if 4 in alone else alone)
    assert len({tuple(r) for r in out}) > 1  # not one sample five times
    assert sample_tokens(model, [0], n=5, max_new_tokens=12, seed=3, stop_token=4) == out
    assert sample_tokens(model, [0], n=3, max_new_tokens=12, seed=3, stop_token=4) == out[:3]
    assert not set(sample_seeds(1, 50)) & set(sample_seeds(2, 50))  # seeds do not overlap
