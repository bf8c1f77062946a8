"""Beam search against exhaustive search and against itself batched / cached."""

import itertools
import math

import pytest
import torch

from scratchllm.generation import beam_search, generate


def sequence_logprob(model, prompt: list[int], tokens: list[int]) -> float:
    seq, total = list(prompt), 0.0
    with torch.no_grad():
        for t in tokens:
            logp = model(torch.tensor([seq[-model.context_length :]]))[0][0, -1].log_softmax(-1)
            total += float(logp[t])
            seq.append(t)
    return total


def all_hypotheses(V: int, L: int, eos: int | None):
    """Every continuation of up to L tokens that ends at eos or at length L."""
    for n in range(1, L + 1):
        for seq in itertools.product(range(V), repeat=n):
            if eos is not None and eos in seq[:-1]:
                continue
            if n < L and (eos is None or seq[-1] != eos):
                continue
            yield list(seq)


@pytest.mark.parametrize("eos, length_penalty", [(None, 1.0), (0, 0.0), (0, 1.0), (0, 2.0)])
def test_wide_beam_equals_exhaustive_search(toy, eos, length_penalty):
    V, L = 3, 3
    model = toy(vocab_size=V, ctx=8, seed=2)
    prompt = [1, 2]
    scored = []
    for seq in all_hypotheses(V, L, eos):
        scored.append((sequence_logprob(model, prompt, seq) / len(seq) ** length_penalty, seq))
    scored.sort(key=lambda x: -x[0])
    out = beam_search(
        model, prompt, L, num_beams=V**L, eos_token_id=eos, length_penalty=length_penalty,
        early_stopping="never", num_return_sequences=3,
    )  # fmt: skip
    for r in range(3):
        score, seq = scored[r]
        n = int(out.new_tokens[0, r])
        assert out.sequences[0, r, 2 : 2 + n].tolist() == seq
        assert math.isclose(float(out.scores[0, r]), score, rel_tol=1e-4, abs_tol=1e-5)
    if eos is not None:  # finished-early hypotheses are padded with the eos id
        n0 = int(out.new_tokens[0, 0])
        assert set(out.sequences[0, 0, 2 + n0 :].tolist()) <= {eos}


def test_one_beam_is_greedy(toy):
    model = toy()
    out = beam_search(model, [[1, 2, 3]], 7, num_beams=1)
    assert torch.equal(out.sequences[:, 0], generate(model, [[1, 2, 3]], 7, temperature=0))


def test_beams_beat_greedy_in_log_probability(toy):
    model = toy(seed=5)
    greedy = generate(model, [4], 6, temperature=0)[0, 1:].tolist()
    out = beam_search(model, [4], 6, num_beams=6, length_penalty=0.0)
    best = out.sequences[0, 0, 1:].tolist()
    assert sequence_logprob(model, [4], best) >= sequence_logprob(model, [4], greedy) - 1e-5
    assert math.isclose(float(out.scores[0, 0]), sequence_logprob(model, [4], best), rel_tol=1e-4)


@pytest.mark.parametrize("use_cache", [True, False])
def test_batched_beams_equal_one_by_one(toy, use_cache):
    model = toy(seed=1)
    prompts = [[1, 2, 3], [7], [5, 5]]
    out = beam_search(
        model, prompts, 5, num_beams=3, eos_token_id=2, pad_token_id=0,
        num_return_sequences=2, use_cache=use_cache,
    )  # fmt: skip
    for b, p in enumerate(prompts):
        alone = beam_search(
            model, p, 5, num_beams=3, eos_token_id=2, pad_token_id=0, num_return_sequences=2
        )
        n = alone.sequences.shape[-1] - len(p)
        got = out.sequences[b, :, 3 - len(p) :]
        assert torch.equal(got[:, : len(p) + n], alone.sequences[0])
        torch.testing.assert_close(out.scores[b], alone.scores[0])


def test_cache_with_reorder_equals_no_cache(toy):
    model = toy(seed=3, ctx=8)
    kw = dict(num_beams=4, eos_token_id=1, num_return_sequences=3, length_penalty=0.5)
    a = beam_search(model, [[2, 3]], 10, **kw)  # 12 tokens > ctx 8: the window slides
    b = beam_search(model, [[2, 3]], 10, use_cache=False, **kw)
    assert torch.equal(a.sequences, b.sequences)
    torch.testing.assert_close(a.scores, b.scores)


def test_generate_with_beams_returns_the_best_sequence(toy):
    model = toy(seed=4)
    out = beam_search(model, [[1, 2]], 6, num_beams=3, eos_token_id=0)
    assert torch.equal(generate(model, [[1, 2]], 6, num_beams=3, eos_token_id=0),
                       out.sequences[:, 0])  # fmt: skip


def test_beam_errors(toy):
    with pytest.raises(ValueError, match="num_return_sequences"):
        beam_search(toy(), [1, 2], 4, num_beams=2, num_return_sequences=3)
    with pytest.raises(ValueError, match="early_stopping"):
        beam_search(toy(), [1, 2], 4, num_beams=2, early_stopping="sometimes")
    with pytest.raises(ValueError, match="stop strings"):
        generate(toy(), [1, 2], 4, num_beams=2, stop=["x"], tokenizer=lambda ids: "")
