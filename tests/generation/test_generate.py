"""The decode loop: greedy, sampling, eos, batching, cache vs no cache, errors."""

import pytest
import torch

from scratchllm.generation import PromptTruncatedWarning, generate
from scratchllm.models import GPT, GPTConfig, NGram, NGramConfig


def lively_gpt(pos: str = "learned", block_size: int = 12, seed: int = 0) -> GPT:
    """A tiny random GPT whose greedy output is not one token repeated."""
    torch.manual_seed(seed)
    config = GPTConfig(
        n_layer=2, n_head=2, n_embd=32, block_size=block_size, vocab_size=23, pos=pos
    )
    model = GPT(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0)  # GPT-2's 0.02 init gives near-uniform, repetitive predictions
    return model


def continuation(out: torch.Tensor, row: int, prompt_len: int, n: int) -> list[int]:
    return out[row, out.shape[1] - n - prompt_len :].tolist()


def test_greedy_matches_the_obvious_loop(toy, greedy_ref):
    model = toy()
    out = generate(model, [1, 2, 3], 12, temperature=0)
    assert out.tolist() == [greedy_ref(model, [1, 2, 3], 12)]
    assert len(set(out[0, 3:].tolist())) > 3  # a real sequence, not one token repeated


def test_temperature_zero_and_do_sample_false_are_greedy(toy):
    model = toy()
    greedy = generate(model, [4, 5], 10, do_sample=False)
    assert torch.equal(generate(model, [4, 5], 10, temperature=0), greedy)
    assert torch.equal(generate(model, [4, 5], 10, temperature=0, do_sample=True), greedy)
    sampled = [generate(model, [4, 5], 10, seed=s) for s in range(4)]  # default: sampling
    assert any(not torch.equal(s, greedy) for s in sampled)


@pytest.mark.parametrize("pos", ["learned", "sinusoidal", "rope"])
def test_gpt_cache_equals_no_cache_including_past_the_context(pos, greedy_ref):
    model = lively_gpt(pos, block_size=12)
    prompt = [3, 1, 4, 1, 5]
    cached = generate(model, prompt, 20, temperature=0)  # 25 tokens > block 12: slides
    plain = generate(model, prompt, 20, temperature=0, use_cache=False)
    assert torch.equal(cached, plain)
    assert cached.tolist() == [greedy_ref(model, prompt, 20)]
    assert len(set(cached[0, 5:].tolist())) >= 3


def test_toy_cache_equals_sliding_reference_and_uses_one_step_per_token(toy, greedy_ref):
    model = toy(ctx=8)
    prompt = [1, 2, 3]
    model.calls = 0
    out = generate(model, prompt, 4, temperature=0)  # 7 tokens: fits, no sliding
    assert model.calls == 4  # one prefill, then one forward_step per new token (not the last)
    long = generate(model, prompt, 15, temperature=0)
    assert long.tolist() == [greedy_ref(model, prompt, 15)]
    assert long[:, :7].tolist() == out.tolist()


def test_long_prompt_is_cut_with_a_warning(toy, greedy_ref):
    model = toy(ctx=8)
    prompt = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    with pytest.warns(PromptTruncatedWarning, match="context_length 8"):
        out = generate(model, prompt, 5, temperature=0)
    assert out[0, :11].tolist() == prompt  # the output keeps the whole prompt
    assert out.tolist() == [greedy_ref(model, prompt, 5)]  # conditioned on the last 8


@pytest.mark.parametrize("use_cache", [True, False])
def test_batch_of_unequal_prompts_equals_one_by_one_greedy(use_cache):
    model = lively_gpt("rope", block_size=16)
    prompts = [[1, 2, 3, 4, 5, 6], [7], [8, 9, 10]]
    out = generate(model, prompts, 14, temperature=0, pad_token_id=0, use_cache=use_cache)
    assert out.shape == (3, 6 + 14)
    for b, p in enumerate(prompts):
        alone = generate(model, p, 14, temperature=0, use_cache=use_cache)
        assert continuation(out, b, len(p), 14) == alone[0].tolist()
        assert out[b, : 6 - len(p)].tolist() == [0] * (6 - len(p))  # left padding kept


def test_batch_equals_one_by_one_with_seeded_sampling(toy):
    model = toy(ctx=8)
    prompts = [[1, 2], [3, 4, 5, 6], [7]]
    out = generate(model, prompts, 9, seed=[11, 22, 33], top_k=5, pad_token_id=0)
    for b, (p, s) in enumerate(zip(prompts, [11, 22, 33])):
        alone = generate(model, p, 9, seed=s, top_k=5)
        assert continuation(out, b, len(p), 9) == alone[0].tolist()
    # An int seed means seed + row.
    again = generate(model, prompts, 9, seed=11, top_k=5, pad_token_id=0)
    assert (
        continuation(again, 1, 4, 9) == generate(model, prompts[1], 9, seed=12, top_k=5)[0].tolist()
    )


def test_tensor_with_attention_mask_equals_list_input(toy):
    model = toy()
    ids = torch.tensor([[0, 0, 5, 6], [1, 2, 3, 4]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    a = generate(model, ids, 6, temperature=0, attention_mask=mask)
    b = generate(model, [[5, 6], [1, 2, 3, 4]], 6, temperature=0, pad_token_id=0)
    assert torch.equal(a, b)


def test_seed_reproduces_and_leaves_the_global_rng_alone(toy):
    model = toy()
    state = torch.random.get_rng_state()
    a = generate(model, [1, 2], 20, seed=123, temperature=1.3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(generate(model, [1, 2], 20, seed=123, temperature=1.3), a)
    assert not torch.equal(generate(model, [1, 2], 20, seed=124, temperature=1.3), a)


class FixedDistribution(torch.nn.Module):
    """Next-token logits that never change: sampling frequencies are checkable."""

    context_length, vocab_size = 4, 6

    def __init__(self):
        super().__init__()
        self.logits = torch.nn.Parameter(torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0]))

    def forward(self, idx, targets=None, loss_mask=None):
        return self.logits.expand(*idx.shape, -1), None


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(temperature=0.5), dict(top_k=3), dict(top_p=0.8), dict(temperature=2.0)],
)
def test_sampling_frequencies_follow_the_processed_distribution(kwargs):
    from scratchllm.generation import build_processors

    model = FixedDistribution()
    n = 4000
    out = generate(model, [[0]] * n, 1, seed=7, **kwargs)
    counts = torch.bincount(out[:, 1], minlength=6).double()
    logits = build_processors(do_sample=True, **kwargs)(None, model.logits.detach()[None])[0]
    expected = logits.softmax(-1).double() * n
    assert counts[expected == 0].sum() == 0  # filtered tokens never appear
    # Chi-square with 5 degrees of freedom: 20.5 is the 0.999 quantile.
    nz = expected > 0
    chi2 = float(((counts[nz] - expected[nz]) ** 2 / expected[nz]).sum())
    assert chi2 < 20.5


def test_eos_ends_rows_pads_them_and_stops_early(toy):
    model = toy()
    free = generate(model, [[1, 2], [6, 6]], 12, temperature=0)
    eos = int(free[0, 4])  # row 0 emits this as its 3rd new token
    out = generate(model, [[1, 2], [6, 6]], 12, temperature=0, eos_token_id=eos, pad_token_id=0)
    row0 = out[0, 2:].tolist()
    assert row0[: row0.index(eos) + 1] == free[0, 2 : 2 + row0.index(eos) + 1].tolist()
    assert set(row0[row0.index(eos) + 1 :]) <= {0}  # padded after its eos
    if eos not in free[1, 2:].tolist():
        assert out.shape[1] == free.shape[1]  # row 1 never ends: full length
    single = generate(model, [1, 2], 12, temperature=0, eos_token_id=eos)
    assert single[0, -1] == eos and single.shape[1] == 2 + row0.index(eos) + 1  # stops early


def test_eos_list_and_default_padding_is_eos(toy):
    model = toy()
    free = generate(model, [[1, 2], [3, 4]], 10, temperature=0)
    eos = [int(free[0, 3]), int(free[1, 3])]
    out = generate(model, [[1, 2], [3, 4]], 10, temperature=0, eos_token_id=eos)
    assert out.shape[1] <= 4 or all(t in eos for t in out[:, -1].tolist())
    for b in range(2):
        tail = out[b, 3:].tolist()
        assert set(tail) <= set(eos)  # ended, then padded with the first eos id


def test_max_new_tokens_zero_returns_the_prompt(toy):
    assert generate(toy(), [[1, 2, 3]], 0).tolist() == [[1, 2, 3]]


def test_generation_runs_in_eval_mode_and_restores_training():
    model = lively_gpt()
    model.config.dropout = 0.5
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.5
    model.train()
    a = generate(model, [1, 2], 8, temperature=0)
    b = generate(model, [1, 2], 8, temperature=0)
    assert torch.equal(a, b) and model.training


def test_ngram_greedy_follows_its_counts():
    ids = [0, 1, 2, 0, 1, 3, 0, 1, 2, 0, 1, 2, 3, 3, 0]
    model = NGram(NGramConfig(n=3, vocab_size=4, smoothing=0.1)).fit(ids)
    out = generate(model, [[0, 1], [3]], 8, temperature=0, pad_token_id=0)
    for b, p in enumerate([[0, 1], [3]]):
        seq = list(p)
        for _ in range(8):
            seq.append(int(model.probs(seq).argmax()))
        assert continuation(out, b, len(p), 8) == seq
    sampled = generate(model, [0, 1], 30, seed=3)
    assert sampled.shape == (1, 32)


def test_repetition_penalty_greedy_matches_a_manual_loop(toy):
    model = toy()
    seq = [1, 2]
    with torch.no_grad():
        for _ in range(10):
            logits = model(torch.tensor([seq[-8:]]))[0][0, -1].clone()
            for t in set(seq):  # CTRL's rule: shrink a seen token's logit toward "less likely"
                logits[t] = logits[t] * 3.0 if logits[t] < 0 else logits[t] / 3.0
            seq.append(int(logits.argmax()))
    penalised = generate(model, [1, 2], 10, temperature=0, repetition_penalty=3.0)
    assert penalised.tolist() == [seq]
    assert not torch.equal(penalised, generate(model, [1, 2], 10, temperature=0))


def test_batch_with_repetition_penalty_ignores_padding(toy):
    model = toy()
    prompts = [[5], [1, 2, 3]]
    out = generate(model, prompts, 8, temperature=0, repetition_penalty=2.0, pad_token_id=4)
    alone = generate(model, [5], 8, temperature=0, repetition_penalty=2.0)
    assert continuation(out, 0, 1, 8) == alone[0].tolist()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(temperature=-0.5), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.2), "top_p"),
        (dict(top_k=0), "top_k"),
        (dict(num_beams=0), "num_beams"),
        (dict(max_new_tokens=-1), "max_new_tokens"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(num_beams=2, do_sample=True), "beam"),
        (dict(stop=["\n"]), "tokenizer"),
        (dict(eos_token_id=-3), "eos_token_id"),
        (dict(seed=[1, 2, 3]), "seed"),
    ],
)
def test_bad_settings_raise_clear_errors(toy, kwargs, match):
    args = dict(max_new_tokens=4) | kwargs
    with pytest.raises(ValueError, match=match):
        generate(toy(), [[1, 2]], **args)


@pytest.mark.parametrize(
    "idx, kwargs, match",
    [
        ([], {}, "empty"),
        ([[1, 2], []], {"pad_token_id": 0}, "row 1 is empty"),
        (torch.zeros(1, 0, dtype=torch.long), {}, "empty"),
        ([[1, 2], [3]], {}, "pad_token_id"),
        ([1, 99], {}, "99"),
        (torch.tensor([[1.0, 2.0]]), {}, "integer"),
        ("hello", {}, "tokenizer"),
        (torch.tensor([[1, 2, 3]]), {"attention_mask": torch.tensor([[1, 1, 0]])}, "left"),
        (torch.tensor([[1, 2, 3]]), {"attention_mask": torch.tensor([[0, 0, 0]])}, "padding"),
        (torch.tensor([[1, 2, 3]]), {"attention_mask": torch.tensor([[1, 1]])}, "shape"),
    ],
)
def test_bad_prompts_raise_clear_errors(toy, idx, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(toy(), idx, 3, **kwargs)
