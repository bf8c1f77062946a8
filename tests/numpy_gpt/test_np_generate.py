"""Generation in NumPy against PyTorch's ``generate`` on the same weights: the KV cache
equals the full forward, greedy and seeded sampling give the same tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from np_twins import numpy_model, tiny_config, torch_twin

from scratchllm.generation import generate as torch_generate
from scratchllm.generation.processors import RepetitionPenalty, TopK, TopP
from scratchllm.numpy_gpt.generate import (
    TorchCompatibleRandom,
    generate,
    repetition_penalty,
    stream_tokens,
    top_k_filter,
    top_p_filter,
)

VARIANTS = [{}, {"pos": "sinusoidal", "act": "relu"}, {"tie_weights": False, "bias": False}]


@pytest.mark.parametrize("changes", VARIANTS)
def test_prefill_then_one_token_at_a_time_equals_the_full_forward(changes):
    config = tiny_config(**changes)
    model = numpy_model(config, "float64")
    ids = np.random.default_rng(0).integers(0, config.vocab_size, size=(2, 10))
    full, _ = model(ids)
    state = model.new_state(2, 10)
    steps = [model.forward_step(ids[:, :4], state)]
    steps += [model.forward_step(ids[:, t : t + 1], state) for t in range(4, 7)]
    steps.append(model.forward_step(ids[:, 7:], state))  # several tokens after a prefix
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="more do not fit"):
        model.forward_step(ids[:, :1], state)


def test_left_padded_rows_decode_like_their_prompts_alone():
    config = tiny_config()
    model = numpy_model(config, "float64")
    ids = np.random.default_rng(1).integers(0, config.vocab_size, size=(2, 6))
    pad = np.ones((2, 6), dtype=bool)
    pad[1, :2] = False
    state = model.new_state(2, 8)
    prefill = model.forward_step(ids, state, pad)
    nxt = model.forward_step(np.array([[3], [4]]), state)
    alone = model.new_state(1, 8)
    a = model.forward_step(ids[1:, 2:], alone)
    b = model.forward_step(np.array([[4]]), alone)
    np.testing.assert_allclose(prefill[1, 2:], a[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(nxt[1], b[0], rtol=1e-12, atol=1e-12)


def torch_tokens(twin, prompts, n, **kw):
    out = torch_generate(twin, prompts, n, **kw)
    return out.numpy()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("changes", VARIANTS)
def test_greedy_tokens_equal_pytorchs_past_the_context(dtype, changes):
    config = tiny_config(**changes)  # block_size 12: 20 new tokens slide the window
    model = numpy_model(config, dtype)
    twin = torch_twin(model).eval()
    prompts = [[1, 2, 3, 4, 5], [7, 8], [9, 10, 11, 12]]
    ours = generate(model, prompts, 20, temperature=0, pad_token_id=0)
    theirs = torch_tokens(twin, prompts, 20, temperature=0, pad_token_id=0)
    np.testing.assert_array_equal(ours, theirs)
    uncached = generate(model, prompts, 20, temperature=0, pad_token_id=0, use_cache=False)
    np.testing.assert_array_equal(uncached, ours)


@pytest.mark.parametrize(
    "kw",
    [
        dict(temperature=1.0),
        dict(temperature=0.7, top_k=5),
        dict(temperature=1.3, top_p=0.8),
        dict(top_k=8, top_p=0.9, repetition_penalty=1.4),
    ],
)
def test_seeded_sampling_draws_the_same_tokens_as_pytorch(kw):
    config = tiny_config()
    model = numpy_model(config, "float64")
    twin = torch_twin(model).eval()
    prompts = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    ours = generate(model, prompts, 16, seed=11, **kw)
    np.testing.assert_array_equal(ours, torch_tokens(twin, prompts, 16, seed=11, **kw))
    np.testing.assert_array_equal(ours, generate(model, prompts, 16, seed=11, **kw))  # repeats
    assert not np.array_equal(ours, generate(model, prompts, 16, seed=12, **kw))


def test_eos_ends_a_row_and_pads_it_as_pytorch_does():
    config = tiny_config()
    model = numpy_model(config, "float64")
    twin = torch_twin(model).eval()
    first = generate(model, [[1, 2, 3]], 6, seed=0)[0, 3:]
    eos = int(first[2])  # a token the row will emit at its third step
    kw = dict(seed=0, eos_token_id=eos, pad_token_id=0)
    ours = generate(model, [[1, 2, 3], [4, 5, 6]], 6, **kw)
    np.testing.assert_array_equal(ours, torch_tokens(twin, [[1, 2, 3], [4, 5, 6]], 6, **kw))
    assert ours[0, 5] == eos and (ours[0, 6:] == 0).all()
    streamed = list(stream_tokens(model, [1, 2, 3], 6, seed=0, eos_token_id=eos))
    assert streamed == first[:2].tolist()  # the eos ends the stream, unyielded


@pytest.mark.parametrize("seed", [0, 1, 1337, 2**31 + 5, 2**40 + 3])
def test_the_uniform_stream_is_torch_rands(seed):
    ours = TorchCompatibleRandom(seed)
    g = torch.Generator().manual_seed(seed)
    for _ in range(50):
        assert ours.uniform() == torch.rand(1, generator=g).item()


def test_the_logits_processors_equal_pytorchs():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(4, 30))
    logits[0, :5] = 2.5  # ties at the k-th value stay in
    ids = rng.integers(0, 30, size=(4, 7))
    t = torch.from_numpy(logits)
    for k in (1, 3, 5, 30, 50):
        np.testing.assert_array_equal(top_k_filter(logits, k), TopK(k)(None, t).numpy())
    # (exact ties at the nucleus edge are kept in sort order, and torch.sort's order among
    # ties is unspecified: compare on distinct logits)
    distinct = rng.normal(size=(4, 30))
    for p in (0.05, 0.5, 0.9, 0.999, 1.0):
        np.testing.assert_array_equal(
            top_p_filter(distinct, p), TopP(p)(None, torch.from_numpy(distinct)).numpy()
        )
    np.testing.assert_allclose(
        repetition_penalty(ids, logits, 1.7),
        RepetitionPenalty(1.7)(torch.from_numpy(ids), t).numpy(),
        rtol=1e-15,
    )


def test_bad_generation_arguments_are_clear_errors():
    model = numpy_model(tiny_config())
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        generate(model, [[1, 99]], 3)
    with pytest.raises(ValueError, match="need pad_token_id"):
        generate(model, [[1, 2], [3]], 3)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        generate(model, [[1]], 3, temperature=-1)
    with pytest.raises(ValueError, match="top_p must be in"):
        generate(model, [[1]], 3, top_p=1.5)
    with pytest.raises(ValueError, match="empty prompt"):
        generate(model, [[]], 3)
