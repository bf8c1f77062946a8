"""The neural n-gram (MLP): the vectorised forward against a position-by-position loop, the
start token, padding, generation, save/load, and learning."""

import doctest

import pytest
import torch
import torch.nn.functional as F

from scratchllm.generation import generate
from scratchllm.models import MLPLM, MLPConfig, load
from scratchllm.models import mlp as mlp_module

V = 13


def model_of(seed=0, **overrides) -> MLPLM:
    fields = dict(n=4, vocab_size=V, n_embd=5, n_hidden=24)
    fields.update(overrides)
    torch.manual_seed(seed)
    model = MLPLM(MLPConfig(**fields)).eval()
    with torch.no_grad():  # spread the logits so greedy choices are decisive, not near-ties
        model.lm_head.weight.mul_(4.0)
    return model


def loop_reference(model: MLPLM, idx: torch.Tensor) -> torch.Tensor:
    """The textbook computation, one position at a time: the n-1 tokens ending at t, with
    the start token where the window has none."""
    n, start = model.config.n, model.start_token
    act = torch.tanh if model.config.act == "tanh" else torch.relu
    B, T = idx.shape
    out = torch.empty(B, T, model.config.vocab_size)
    for b in range(B):
        for t in range(T):
            ctx = [int(idx[b, j]) if j >= 0 else start for j in range(t - n + 2, t + 1)]
            x = torch.cat([model.wte.weight[i] for i in ctx])  # ((n-1) * n_embd,)
            h = act(model.fc.weight @ x + model.fc.bias)
            logits = model.lm_head.weight @ h + model.lm_head.bias
            if model.direct is not None:
                logits = logits + model.direct.weight @ x
            out[b, t] = logits
    return out


# -- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(n=1), r"n \(1\) must be an integer >= 2 .* use NGram\(n=1\)"),
        (dict(n=3.0), r"n \(3.0\) must be an integer >= 2"),
        (dict(vocab_size=0), r"vocab_size \(0\) must be a positive integer"),
        (dict(n_embd=-1), r"n_embd \(-1\) must be a positive integer"),
        (dict(n_hidden=None), r"n_hidden \(None\) must be a positive integer"),
        (dict(act="gelu"), r"unknown act 'gelu'; choose one of \['tanh', 'relu'\]"),
        (dict(dropout=-0.1), r"dropout \(-0.1\) must be in \[0, 1\)"),
    ],
)
def test_invalid_configs_name_the_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        MLPConfig(**overrides)


# -- forward -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5])
@pytest.mark.parametrize("act, direct", [("tanh", False), ("relu", True)])
def test_vectorised_forward_equals_the_loop(n, act, direct):
    model = model_of(n=n, act=act, direct=direct)
    idx = torch.randint(0, V, (3, 7))
    logits, _ = model(idx)
    assert logits.shape == (3, 7, V)
    torch.testing.assert_close(logits, loop_reference(model, idx), atol=1e-5, rtol=1e-5)
    assert model.context_length == n - 1


def test_loss_is_cross_entropy_and_the_mask_selects_positions():
    model = model_of()
    idx, targets = torch.randint(0, V, (2, 6)), torch.randint(0, V, (2, 6))
    logits, loss = model(idx, targets)
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1)))
    assert model(idx)[1] is None
    mask = torch.tensor([[0, 0, 1, 1, 0, 1]] * 2, dtype=torch.bool)
    _, masked = model(idx, targets, mask)
    torch.testing.assert_close(masked, F.cross_entropy(logits[mask], targets[mask]))


def test_a_position_sees_only_its_last_n_minus_1_tokens():
    model = model_of(n=3)
    idx = torch.randint(0, V, (1, 8))
    changed = idx.clone()
    changed[0, 2] = (idx[0, 2] + 1) % V
    before, after = model(idx)[0], model(changed)[0]
    assert torch.equal(before[:, :2], after[:, :2])  # the past does not see the change
    assert not torch.allclose(before[:, 2:4], after[:, 2:4])  # t = 2, 3 hold token 2
    assert torch.equal(before[:, 4:], after[:, 4:])  # t >= 4 no longer does


def test_start_token_and_left_padding():
    model = model_of(n=4)
    text = torch.tensor([[3, 1, 4]])
    # the start embedding is a learned row of wte, past every real id
    assert model.start_token == V and model.wte.weight.shape[0] == V + 1
    model(text, torch.tensor([[1, 4, 1]]))[1].backward()
    assert model.wte.weight.grad[V].abs().sum() > 0
    assert model.wte.weight.grad[[0, 2]].abs().sum() == 0  # unused ids get no gradient
    batch = torch.tensor([[3, 1, 4, 1, 5], [9, 9, 3, 1, 4]])
    real = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]], dtype=torch.bool)
    logits = model(batch, attention_mask=real)[0]
    torch.testing.assert_close(logits[1, 2:], model(text)[0][0])
    torch.testing.assert_close(logits[0], model(batch[:1])[0][0])
    # padded positions are out of the loss
    targets = torch.randint(0, V, (2, 5))
    _, loss = model(batch, targets, attention_mask=real)
    torch.testing.assert_close(loss, F.cross_entropy(logits[real], targets[real]))


def test_bad_inputs_are_clear_errors():
    model = model_of()
    with pytest.raises(ValueError, match=r"idx holds ids outside 0..12 \(vocab_size 13\)"):
        model(torch.tensor([[1, V]]))  # V itself is the start token's row: not an input id
    with pytest.raises(ValueError, match=r"outside 0..12"):
        model(torch.tensor([[-1, 2]]))
    with pytest.raises(ValueError, match=r"idx must be \[B, T\] token ids, got shape \(3,\)"):
        model(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"attention_mask shape \(1, 2\) must be"):
        model(torch.tensor([[1, 2, 3]]), attention_mask=torch.ones(1, 2))


# -- generation ----------------------------------------------------------------------------------


def test_generate_with_and_without_cache_and_the_reference():
    model = model_of(seed=2)
    assert model.new_state(1, 8) is None  # no incremental path: the window is re-run
    prompt = [[5]]  # shorter than the context: the start token fills in, as in training
    cached = generate(model, prompt, max_new_tokens=12, temperature=0)
    plain = generate(model, prompt, max_new_tokens=12, temperature=0, use_cache=False)
    assert cached.tolist() == plain.tolist()
    seq = list(prompt[0])
    with torch.no_grad():
        for _ in range(12):
            seq.append(int(loop_reference(model, torch.tensor([seq]))[0, -1].argmax()))
    assert cached[0].tolist() == seq


@pytest.mark.filterwarnings("ignore::scratchllm.generation.PromptTruncatedWarning")
def test_left_padded_batch_equals_one_by_one():
    model = model_of(seed=3)
    prompts = [[1, 2, 3, 4, 5], [6], [7, 8]]
    batch = generate(model, prompts, max_new_tokens=6, temperature=0, pad_token_id=0)
    for row, prompt in zip(batch, prompts):
        alone = generate(model, [prompt], max_new_tokens=6, temperature=0)
        assert row[-6:].tolist() == alone[0, -6:].tolist()


# -- persistence ----------------------------------------------------------------------------------


@pytest.mark.parametrize("direct", [False, True])
def test_save_and_load_round_trip(tmp_path, direct):
    model = model_of(direct=direct, act="relu")
    model.save(tmp_path / "ckpt")
    loaded = load(tmp_path / "ckpt")
    assert type(loaded) is MLPLM and loaded.config == model.config
    idx = torch.randint(0, V, (2, 6))
    torch.testing.assert_close(loaded(idx)[0], model(idx)[0])


# -- training ----------------------------------------------------------------------------------


def test_learns_a_copy_task():
    """``a b c 0 a b c``: copying needs the token k + 1 back, so n = k + 2."""
    vocab, k = 6, 3
    torch.manual_seed(0)
    model = MLPLM(MLPConfig(n=k + 2, vocab_size=vocab, n_embd=8, n_hidden=64))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        src = torch.randint(1, vocab, (32, k), generator=g)
        seq = torch.cat([src, torch.zeros(32, 1, dtype=torch.long), src], dim=1)
        mask = torch.zeros(32, 2 * k, dtype=torch.bool)
        mask[:, k:] = True
        _, loss = model(seq[:, :-1], seq[:, 1:], mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 1.5  # chance: ln(5) ~ 1.6
    assert sum(losses[-5:]) / 5 < 0.1, losses[-5:]


def test_dropout_acts_only_in_training():
    model = model_of(dropout=0.5)
    idx = torch.randint(0, V, (2, 6))
    assert torch.equal(model(idx)[0], model(idx)[0])
    model.train()
    assert not torch.equal(model(idx)[0], model(idx)[0])


def test_docstring_examples_run():
    result = doctest.testmod(mlp_module)
    assert result.attempted > 0 and result.failed == 0
