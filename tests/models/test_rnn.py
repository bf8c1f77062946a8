"""RNN / GRU / LSTM language models: the written-out cells against torch.nn with copied
weights (values and gradients), the carried state against the full forward, padding,
generation with and without the state, save/load, and learning a copy task."""

import doctest

import pytest
import torch
import torch.nn.functional as F

from scratchllm.generation import beam_search, generate
from scratchllm.models import RNNLM, RNNConfig, load, rnn_cells
from scratchllm.models import rnn as rnn_module
from scratchllm.models.rnn_cells import Recurrent

V = 11
CELLS = ["rnn", "gru", "lstm"]
TORCH_CLASSES = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}


def model_of(cell="lstm", seed=0, **overrides) -> RNNLM:
    fields = dict(cell=cell, vocab_size=V, n_embd=8, n_hidden=12, n_layer=2, block_size=10)
    fields.update(overrides)
    torch.manual_seed(seed)
    model = RNNLM(RNNConfig(**fields)).eval()
    with torch.no_grad():  # spread the logits so greedy choices are decisive, not near-ties
        model.lm_head.weight.mul_(4.0)
    return model


# -- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(cell="transformer"), r"unknown cell 'transformer'; choose one of \['rnn', 'gru'"),
        (dict(n_layer=0), r"n_layer \(0\) must be a positive integer"),
        (dict(n_hidden=2.5), r"n_hidden \(2.5\) must be a positive integer"),
        (dict(vocab_size=-3), r"vocab_size \(-3\) must be a positive integer"),
        (dict(block_size=True), r"block_size \(True\) must be a positive integer"),
        (dict(dropout=1.0), r"dropout \(1.0\) must be in \[0, 1\)"),
        (dict(dropout=float("nan")), r"dropout \(nan\) must be in \[0, 1\)"),
    ],
)
def test_invalid_configs_name_the_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        RNNConfig(**overrides)


# -- forward contract --------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_forward_shapes_and_loss_is_cross_entropy(cell):
    model = model_of(cell)
    idx, targets = torch.randint(0, V, (3, 7)), torch.randint(0, V, (3, 7))
    logits, loss = model(idx, targets)
    assert logits.shape == (3, 7, V)
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1)))
    assert model(idx)[1] is None
    assert model.context_length == 10
    # An RNN has no positional limit: longer than block_size still runs.
    assert model(torch.randint(0, V, (1, 25)))[0].shape == (1, 25, V)
    mask = torch.zeros(3, 7, dtype=torch.bool)
    mask[:, 4:] = True
    _, masked = model(idx, targets, mask)
    expected = F.cross_entropy(logits[:, 4:].reshape(-1, V), targets[:, 4:].reshape(-1))
    torch.testing.assert_close(masked, expected)


def test_bad_shapes_are_clear_errors():
    model = model_of()
    with pytest.raises(ValueError, match=r"idx must be \[B, T\] token ids, got shape \(5,\)"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"attention_mask shape \(2, 3\) must be"):
        model(torch.zeros(2, 4, dtype=torch.long), attention_mask=torch.ones(2, 3))
    state = model.new_state(2, 8)
    with pytest.raises(ValueError, match="idx has 3 rows but the state was made for 2"):
        model.forward_step(torch.zeros(3, 1, dtype=torch.long), state)
    with pytest.raises(ValueError, match=r"pad_mask shape \(2, 1\) must be \(2, 2\)"):
        model.forward_step(torch.zeros(2, 2, dtype=torch.long), state, torch.ones(2, 1))
    with pytest.raises(ValueError, match=r"batch_size \(0\) must be at least 1"):
        model.new_state(0, 8)


# -- the written-out cells against torch.nn ----------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_cells_equal_torch_nn_with_copied_weights(cell, num_layers, bias):
    torch.manual_seed(num_layers)
    ours = Recurrent(cell, 5, 7, num_layers, bias=bias)
    ref = TORCH_CLASSES[cell](5, 7, num_layers, bias=bias, batch_first=True)
    ref.load_state_dict(ours.state_dict())  # strict: same names, shapes and gate order
    x = torch.randn(3, 6, 5, requires_grad=True)
    h0 = torch.randn(num_layers, 3, 7)
    c0 = torch.randn(num_layers, 3, 7)
    hx = (h0, c0) if cell == "lstm" else (h0,)

    out, state = ours(x, hx)
    ref_out, ref_state = ref(x, hx if cell == "lstm" else h0)
    ref_state = ref_state if cell == "lstm" else (ref_state,)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=0)
    for s, r in zip(state, ref_state, strict=True):
        torch.testing.assert_close(s, r, atol=1e-5, rtol=0)

    # Gradients: a loss touching every output and the final state.
    w = torch.randn_like(out)
    grads = torch.autograd.grad(
        (out * w).sum() + sum(s.sum() for s in state), [x, *ours.parameters()]
    )
    ref_grads = torch.autograd.grad(
        (ref_out * w).sum() + sum(s.sum() for s in ref_state), [x, *ref.parameters()]
    )
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_torch_weights_copy_into_the_model_one_to_one(cell):
    torch.manual_seed(1)
    ref = TORCH_CLASSES[cell](8, 12, 2, batch_first=True)
    model = model_of(cell)
    model.rnn.load_state_dict(ref.state_dict())  # strict load: every name matches
    x = torch.randn(2, 5, 8)
    ref_out = ref(x)[0]
    torch.testing.assert_close(model.rnn(x)[0], ref_out, atol=1e-5, rtol=0)
    assert [n for n, _ in model.rnn.named_parameters()] == [n for n, _ in ref.named_parameters()]


@pytest.mark.parametrize("cell", CELLS)
def test_fast_path_equals_written_out_cells(cell):
    slow = model_of(cell, n_layer=3)
    fast = model_of(cell, n_layer=3, fast=True)
    fast.load_state_dict(slow.state_dict())
    idx, targets = torch.randint(0, V, (4, 9)), torch.randint(0, V, (4, 9))
    slow_logits, slow_loss = slow(idx, targets)
    fast_logits, fast_loss = fast(idx, targets)
    torch.testing.assert_close(fast_logits, slow_logits, atol=1e-5, rtol=0)
    slow_loss.backward()
    fast_loss.backward()
    for (name, p), q in zip(slow.named_parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=0, msg=name)
    assert "_torch_module" not in str(list(fast.state_dict()))  # the torch twin is not saved


# -- carried state and padding -----------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_carried_state_equals_full_forward(cell):
    model = model_of(cell)
    idx = torch.randint(0, V, (2, 9))
    full = model(idx)[0]
    state = model.new_state(2, max_length=9)
    parts = [model.forward_step(idx[:, :4], state)]  # prefill, then one token at a time
    parts += [model.forward_step(idx[:, t : t + 1], state) for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=0)
    assert state.length == 9


@pytest.mark.parametrize("cell", CELLS)
def test_left_padding_leaves_no_trace(cell):
    model = model_of(cell)
    a, b = torch.randint(0, V, (1, 6)), torch.randint(0, V, (1, 3))
    batch = torch.cat([a, torch.cat([torch.full((1, 3), 7), b], dim=1)])  # b left-padded
    real = torch.ones(2, 6, dtype=torch.bool)
    real[1, :3] = False
    # forward with an attention mask: each row's real positions score like the row alone
    logits = model(batch, attention_mask=real)[0]
    torch.testing.assert_close(logits[0], model(a)[0][0], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[1, 3:], model(b)[0][0], atol=1e-5, rtol=0)
    # forward_step with a pad mask, then a shared next token
    state = model.new_state(2, 8)
    model.forward_step(batch, state, real)
    nxt = torch.tensor([[4], [4]])
    step = model.forward_step(nxt, state)
    torch.testing.assert_close(step[0, 0], model(torch.cat([a, nxt[:1]], 1))[0][0, -1])
    torch.testing.assert_close(step[1, 0], model(torch.cat([b, nxt[:1]], 1))[0][0, -1])
    # padded positions are out of the loss
    targets = torch.randint(0, V, (2, 6))
    _, loss = model(batch, targets, attention_mask=real)
    expected = F.cross_entropy(logits[real], targets[real])
    torch.testing.assert_close(loss, expected)


def test_state_reorder_follows_rows():
    model = model_of("lstm")
    idx = torch.randint(0, V, (3, 5))
    state = model.new_state(3, 8)
    model.forward_step(idx, state)
    state.reorder(torch.tensor([2, 2, 0]))
    nxt = torch.tensor([[1], [1], [1]])
    step = model.forward_step(nxt, state)
    expected = model(torch.cat([idx[[2, 2, 0]], nxt], dim=1))[0][:, -1]
    torch.testing.assert_close(step[:, 0], expected, atol=1e-5, rtol=0)


# -- generation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_generate_is_the_same_with_and_without_state(cell):
    model = model_of(cell, seed=3)
    prompt = [[1, 2, 3, 4]]
    # 4 + 14 tokens runs past block_size (10): both paths slide the window alike
    cached = generate(model, prompt, max_new_tokens=14, temperature=0)
    plain = generate(model, prompt, max_new_tokens=14, temperature=0, use_cache=False)
    assert cached.tolist() == plain.tolist()
    seq = list(prompt[0])  # and the obvious reference: argmax of forward on the window
    with torch.no_grad():
        for _ in range(14):
            seq.append(int(model(torch.tensor([seq[-10:]]))[0][0, -1].argmax()))
    assert cached[0].tolist() == seq
    sampled = [generate(model, prompt, 12, temperature=1.0, seed=5, use_cache=c) for c in (1, 0)]
    assert sampled[0].tolist() == sampled[1].tolist()


@pytest.mark.parametrize("cell", CELLS)
def test_left_padded_batch_equals_one_by_one(cell):
    model = model_of(cell, seed=4)
    prompts = [[1, 2, 3, 4, 5, 6], [7, 8], [9, 10, 1]]
    batch = generate(model, prompts, max_new_tokens=8, temperature=0, pad_token_id=0)
    for row, prompt in zip(batch, prompts):
        alone = generate(model, [prompt], max_new_tokens=8, temperature=0)
        assert row[-8:].tolist() == alone[0, -8:].tolist()


def test_beam_search_uses_the_reorderable_state():
    model = model_of("gru", seed=5)
    kwargs = dict(max_new_tokens=6, num_beams=3, num_return_sequences=3)
    cached = beam_search(model, [[1, 2, 3]], **kwargs)
    plain = beam_search(model, [[1, 2, 3]], use_cache=False, **kwargs)
    assert cached.sequences.tolist() == plain.sequences.tolist()
    torch.testing.assert_close(cached.scores, plain.scores, atol=1e-4, rtol=0)


# -- persistence ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_save_and_load_round_trip(tmp_path, cell):
    model = model_of(cell, bias=cell != "gru", fast=cell == "lstm")
    model.save(tmp_path / "ckpt")
    loaded = load(tmp_path / "ckpt")
    assert type(loaded) is RNNLM and loaded.config == model.config and not loaded.training
    idx = torch.randint(0, V, (2, 6))
    torch.testing.assert_close(loaded(idx)[0], model(idx)[0])
    assert sorted(loaded.state_dict()) == sorted(model.state_dict())


# -- training ----------------------------------------------------------------------------------


def copy_batch(g: torch.Generator, B: int, k: int, vocab: int):
    """``a b c 0 a b c``: after the separator 0 the model must repeat what it read."""
    src = torch.randint(1, vocab, (B, k), generator=g)
    seq = torch.cat([src, torch.zeros(B, 1, dtype=torch.long), src], dim=1)  # (B, 2k+1)
    x, y = seq[:, :-1], seq[:, 1:]
    mask = torch.zeros_like(y, dtype=torch.bool)
    mask[:, k:] = True  # only the copied half can be predicted
    return x, y, mask


@pytest.mark.parametrize("cell", CELLS)
def test_learns_a_copy_task(cell):
    vocab, k = 6, 3
    torch.manual_seed(0)
    model = RNNLM(RNNConfig(cell=cell, vocab_size=vocab, n_embd=16, n_hidden=64, n_layer=1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        x, y, mask = copy_batch(g, 32, k, vocab)
        _, loss = model(x, y, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # chance is ln(5) ~ 1.6 on the copied tokens; a model that copies is near 0
    assert losses[0] > 1.5
    assert sum(losses[-5:]) / 5 < 0.3, losses[-5:]
    x, y, mask = copy_batch(torch.Generator().manual_seed(1), 64, k, vocab)
    model.eval()
    with torch.no_grad():
        pred = model(x)[0].argmax(-1)
    assert (pred[mask] == y[mask]).float().mean() > 0.9


def test_dropout_acts_only_in_training():
    model = model_of("lstm", dropout=0.5)
    idx = torch.randint(0, V, (2, 6))
    assert torch.equal(model(idx)[0], model(idx)[0])  # eval: deterministic
    model.train()
    assert not torch.equal(model(idx)[0], model(idx)[0])


@pytest.mark.parametrize("module", [rnn_module, rnn_cells])
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
