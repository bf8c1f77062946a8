"""grow_vocab: rows for new special tokens, in every family, without changing what the
model says about its old tokens; the default held against transformers' resize."""

import logging

import pytest
import torch
import transformers

from scratchllm.models import (
    GPT,
    MLPLM,
    RNNLM,
    GPTConfig,
    MLPConfig,
    NGram,
    NGramConfig,
    RNNConfig,
    load,
)
from scratchllm.models.vocab import grow_vocab
from scratchllm.tokenizers import CharTokenizer

V, K = 11, 3  # old vocabulary, new tokens


def make(family: str, tied: bool = True):
    torch.manual_seed(0)
    if family == "gpt":
        config = GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=V)
        config.tie_weights = tied
        return GPT(config).eval()
    if family == "mlp":
        return MLPLM(MLPConfig(n=3, vocab_size=V, n_embd=6, n_hidden=12, direct=True)).eval()
    return RNNLM(RNNConfig(cell="gru", vocab_size=V, n_embd=6, n_hidden=12)).eval()


FAMILIES = [("gpt", True), ("gpt", False), ("mlp", True), ("rnn", True)]
IDS = torch.tensor([[1, 4, 2, 9, 0, 10, 3, 3], [5, 5, 6, 7, 8, 2, 1, 0]])


@pytest.fixture(params=FAMILIES, ids=lambda p: f"{p[0]}-{'tied' if p[1] else 'untied'}")
def grown(request):
    family, tied = request.param
    model = make(family, tied)
    with torch.no_grad():
        before = model(IDS)[0]
    grow_vocab(model, V + K, noise=0.0)
    with torch.no_grad():
        after = model(IDS)[0]
    return model, before, after


def test_old_logits_unchanged(grown):
    model, before, after = grown
    assert model.config.vocab_size == V + K and after.shape[-1] == V + K
    torch.testing.assert_close(after[..., :V], before, rtol=0, atol=1e-6)


def test_new_logits_are_the_mean_of_the_old(grown):
    # A logit is linear in its head row (and bias), so the mean row gives the mean logit...
    _, before, after = grown
    mean = before.mean(-1, keepdim=True).expand(*before.shape[:-1], K)
    torch.testing.assert_close(after[..., V:], mean, rtol=0, atol=1e-5)
    # ...and by Jensen each new token gets at most 1/V of the old tokens' probability.
    p = after.softmax(-1)
    assert bool((p[..., V:] <= p[..., :V].sum(-1, keepdim=True) / V + 1e-7).all())


def test_new_input_rows_are_the_mean_row():
    model = grow_vocab(make("mlp"), V + K, noise=0.0)
    w = model.wte.weight  # tokens 0..V+K-1, then the start row
    torch.testing.assert_close(w[V : V + K], w[:V].mean(0).expand(K, -1))
    assert model.start_token == V + K  # the start row moved behind the new tokens


def test_mlp_start_row_survives_the_move():
    model = make("mlp")
    start = model.wte.weight[V].clone()
    grow_vocab(model, V + K)
    assert torch.equal(model.wte.weight[V + K], start)


def test_tied_head_stays_tied_and_learns_new_rows():
    model = make("gpt", tied=True).train()
    grow_vocab(model, V + K)
    assert model.lm_head.weight is model.transformer.wte.weight
    x = torch.tensor([[1, V, V + 1, 2]])
    _, loss = model(x, targets=torch.tensor([[V, V + 1, V + 2, 3]]))
    loss.backward()
    grad = model.transformer.wte.weight.grad
    assert grad.shape == (V + K, 16) and bool((grad[V:].abs().sum(-1) > 0).all())


def test_noise_makes_rows_distinct_small_and_repeatable():
    a = grow_vocab(make("gpt", tied=False), V + K)  # default: mean + 1 % noise, seed 0
    b = grow_vocab(make("gpt", tied=False), V + K)
    w = a.transformer.wte.weight.detach()
    assert torch.equal(w, b.transformer.wte.weight)
    new, old = w[V:], w[:V]
    assert len({tuple(r.tolist()) for r in new}) == K
    assert float((new - old.mean(0)).abs().max()) < 0.05 * float(old.std(0).max())
    c = grow_vocab(make("gpt", tied=False), V + K, seed=1)
    assert not torch.equal(c.transformer.wte.weight, w)


def test_zeros_init():
    model = grow_vocab(make("gpt", tied=True), V + K, init="zeros")
    assert bool((model.transformer.wte.weight[V:] == 0).all())
    with torch.no_grad():
        assert bool((model(IDS)[0][..., V:] == 0).all())  # h . 0 = 0, whatever h is


def test_grow_to_a_tokenizer_and_save_load(tmp_path):
    tok = CharTokenizer.train("abcdefghijk")  # 11 characters: the model's vocabulary
    chat = tok.with_special_tokens(["<|user|>", "<|assistant|>", "<|end|>"])
    model = grow_vocab(make("gpt"), chat)
    assert model.vocab_size == chat.vocab_size == V + K
    model.save(tmp_path)
    back = load(tmp_path)
    assert back.config.vocab_size == V + K
    with torch.no_grad():
        torch.testing.assert_close(back(IDS)[0], model(IDS)[0])


def test_ngram_grown_equals_one_fitted_at_the_new_size():
    data = [1, 2, 3, 1, 2, 4, 1, 2, 3, 0, 10, 10, 1]
    for smoothing in (0.0, 0.5):
        grown = NGram(NGramConfig(n=3, vocab_size=V, smoothing=smoothing)).fit(data)
        grow_vocab(grown, V + K)
        fresh = NGram(NGramConfig(n=3, vocab_size=V + K, smoothing=smoothing)).fit(data)
        for name, buf in fresh.state_dict().items():
            assert torch.equal(grown.state_dict()[name], buf), name
        x = torch.tensor([data])
        torch.testing.assert_close(grown(x)[0], fresh(x)[0])


def test_matches_transformers_mean_resizing():
    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.manual_seed(0)
    ours = make("gpt", tied=False)
    hf_config = transformers.GPT2Config(
        n_layer=1, n_head=2, n_embd=16, n_positions=8, vocab_size=V, tie_word_embeddings=False
    )
    hf = transformers.GPT2LMHeadModel(hf_config)
    with torch.no_grad():
        hf.transformer.wte.weight.copy_(ours.transformer.wte.weight)
        hf.lm_head.weight.copy_(ours.lm_head.weight)
    hf.resize_token_embeddings(V + K)  # mean_resizing=True: N(mean, 1e-9 covariance)
    grow_vocab(ours, V + K, noise=0.0)
    for mine, theirs in (
        (ours.transformer.wte.weight, hf.transformer.wte.weight),
        (ours.lm_head.weight, hf.lm_head.weight),
    ):
        torch.testing.assert_close(mine[:V], theirs[:V], rtol=0, atol=0)
        torch.testing.assert_close(mine[V:], theirs[V:], rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((V - 1,), "cannot shrink"),
        (("12",), "must be an int or a tokenizer"),
        ((V + 1, "normal"), "init must be one of"),
        ((V + 1, "mean", -1.0), "noise"),
    ],
)
def test_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        grow_vocab(make("gpt"), *args)


def test_same_size_is_a_no_op():
    model = make("gpt")
    w = model.transformer.wte.weight
    assert grow_vocab(model, V) is model and model.transformer.wte.weight is w


def test_docstring_example_runs():
    import doctest

    from scratchllm.models import vocab

    result = doctest.testmod(vocab)
    assert result.attempted > 0 and result.failed == 0
