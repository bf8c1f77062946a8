"""Each logits processor against its Hugging Face twin on random logits."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from scratchllm.generation import (
    ProcessorChain,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopP,
    build_processors,
)


def random_logits(seed: int, B: int = 4, V: int = 50) -> torch.Tensor:
    return torch.randn(B, V, generator=torch.Generator().manual_seed(seed)) * 3


def random_ids(seed: int, B: int = 4, T: int = 12, V: int = 50) -> torch.Tensor:
    # A small id range so tokens repeat within a row.
    return torch.randint(0, V // 3, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("t", [0.3, 0.7, 1.0, 2.5])
def test_temperature_matches_hf(t):
    logits, ids = random_logits(0), random_ids(0)
    torch.testing.assert_close(Temperature(t)(ids, logits), TemperatureLogitsWarper(t)(ids, logits))


@pytest.mark.parametrize("k", [1, 2, 7, 49, 50, 80])
def test_top_k_matches_hf(k):
    logits, ids = random_logits(k), random_ids(k)
    ours = TopK(k)(ids, logits)
    torch.testing.assert_close(ours, TopKLogitsWarper(k)(ids, logits))
    assert (ours.isfinite().sum(-1) == min(k, 50)).all()


def test_top_k_keeps_ties_like_hf():
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0]])
    assert TopK(1)(None, logits).isfinite().tolist() == [[False, True, True, False]]
    torch.testing.assert_close(TopK(1)(None, logits), TopKLogitsWarper(1)(None, logits))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), p=st.floats(0.01, 1.0), scale=st.floats(0.1, 8.0))
def test_top_p_matches_hf(seed, p, scale):
    logits = random_logits(seed) * scale
    torch.testing.assert_close(TopP(p)(None, logits), TopPLogitsWarper(p)(None, logits))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), p=st.floats(0.05, 0.99))
def test_top_p_keeps_the_smallest_set_reaching_p(seed, p):
    logits = random_logits(seed, B=1)[0]
    kept = TopP(p)(None, logits[None])[0].isfinite()
    probs = logits.softmax(-1)
    assert probs[kept].sum() >= p - 1e-6  # enough mass
    # Dropping the least likely kept token would fall short (the set is minimal).
    assert probs[kept].sum() - probs[kept].min() < p + 1e-6
    if (~kept).any():
        assert probs[kept].min() >= probs[~kept].max()  # the kept ones are the top ones


@pytest.mark.parametrize("penalty", [0.5, 1.0, 1.3, 2.0])
def test_repetition_penalty_matches_hf(penalty):
    logits, ids = random_logits(3), random_ids(3)
    ours = RepetitionPenalty(penalty)(ids, logits)
    torch.testing.assert_close(ours, RepetitionPenaltyLogitsProcessor(penalty)(ids, logits.clone()))
    if penalty != 1.0:
        untouched = torch.ones_like(logits, dtype=torch.bool).scatter(1, ids, False)
        assert torch.equal(ours[untouched], logits[untouched])
        assert not torch.equal(ours, logits)


def test_chain_matches_hf_order():
    logits, ids = random_logits(5), random_ids(5)
    ours = build_processors(
        do_sample=True, temperature=0.7, top_k=10, top_p=0.8, repetition_penalty=1.4
    )
    theirs = LogitsProcessorList(
        [
            RepetitionPenaltyLogitsProcessor(1.4),
            TemperatureLogitsWarper(0.7),
            TopKLogitsWarper(10),
            TopPLogitsWarper(0.8),
        ]
    )
    torch.testing.assert_close(ours(ids, logits), theirs(ids, logits.clone()))
    assert [type(p).__name__ for p in ours] == ["RepetitionPenalty", "Temperature", "TopK", "TopP"]


def test_greedy_chain_keeps_only_what_changes_the_argmax():
    chain = build_processors(do_sample=False, temperature=0.5, top_k=3, repetition_penalty=1.2)
    assert [type(p).__name__ for p in chain] == ["RepetitionPenalty"]
    assert build_processors(do_sample=True) == ProcessorChain()  # nothing to do per token


def test_processors_do_not_modify_their_input():
    logits, ids = random_logits(7), random_ids(7)
    before = logits.clone()
    for proc in [Temperature(0.5), TopK(3), TopP(0.5), RepetitionPenalty(1.5)]:
        proc(ids, logits)
    assert torch.equal(logits, before)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Temperature(0.0), "temperature"),
        (lambda: Temperature(-1.0), "temperature"),
        (lambda: TopK(0), "top_k"),
        (lambda: TopK(2.5), "top_k"),
        (lambda: TopP(0.0), "top_p"),
        (lambda: TopP(1.5), "top_p"),
        (lambda: RepetitionPenalty(0.0), "repetition_penalty"),
    ],
)
def test_bad_settings_are_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()
