"""GPT: config validation, the forward contract, every variant's KV cache against the full
forward, padding, save/load, initialisation, and the reference attention path."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from scratchllm.models import GPT, GPTConfig, load

V = 31


def tiny(**overrides) -> GPTConfig:
    fields = dict(n_layer=2, n_head=2, n_embd=16, block_size=24, vocab_size=V)
    fields.update(overrides)
    return GPTConfig(**fields)


def model_of(seed=0, **overrides) -> GPT:
    torch.manual_seed(seed)
    return GPT(tiny(**overrides)).eval()


VARIANTS = [
    dict(pos=pos, norm=norm, ffn=ffn)
    for pos, norm, ffn in itertools.product(
        ["learned", "sinusoidal", "rope"], ["layernorm", "rmsnorm"], ["mlp", "moe"]
    )
]


def _id(v):
    return "-".join(v.values())


# -- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(n_embd=100, n_head=3), r"n_embd \(100\) must be divisible by n_head \(3\)"),
        (dict(n_embd=30, n_head=6, pos="rope"), r"rope needs an even head size.*= 5"),
        (dict(ffn="moe", n_expert=2, moe_top_k=3), r"moe_top_k \(3\) .* n_expert \(2\)"),
        (dict(pos="alibi"), r"unknown pos 'alibi'; choose one of \['learned', 'sinusoidal'"),
        (dict(norm="batch"), r"unknown norm 'batch'.*'rmsnorm'"),
        (dict(act="swish"), r"unknown act 'swish'.*'gelu_tanh'"),
        (dict(ffn="dense"), r"unknown ffn 'dense'.*'moe'"),
        (dict(n_layer=0), r"n_layer \(0\) must be a positive integer"),
        (dict(block_size=2.5), r"block_size \(2.5\) must be a positive integer"),
        (dict(dropout=1.0), r"dropout \(1.0\) must be in \[0, 1\)"),
        (dict(layer_norm_epsilon=0.0), r"layer_norm_epsilon \(0.0\) must be positive"),
        (dict(ffn_hidden=0), r"ffn_hidden \(0\) must be positive"),
    ],
)
def test_invalid_configs_name_the_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny(**overrides)


# -- forward contract --------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS, ids=_id)
def test_forward_shapes_and_loss_is_cross_entropy(variant):
    model = model_of(**variant, moe_aux_loss_coef=0.0)
    idx = torch.randint(0, V, (3, 10))
    targets = torch.randint(0, V, (3, 10))
    logits, loss = model(idx, targets)
    assert logits.shape == (3, 10, V)
    torch.testing.assert_close(loss, F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1)))
    assert model(idx)[1] is None
    assert model.context_length == 24


def test_moe_balancing_loss_is_added_with_its_coefficient():
    idx, targets = torch.randint(0, V, (2, 8)), torch.randint(0, V, (2, 8))
    losses = {}
    for coef in (0.0, 1.0, 0.25):
        model = model_of(ffn="moe", n_expert=3, moe_aux_loss_coef=coef)
        losses[coef] = model(idx, targets)[1].item()
    aux = losses[1.0] - losses[0.0]
    assert aux > 0.5 * 2  # two layers, each near its minimum of 1 at init
    assert losses[0.25] == pytest.approx(losses[0.0] + 0.25 * aux, rel=1e-5)


def test_loss_mask_and_ignore_index_select_positions():
    model = model_of()
    idx, targets = torch.randint(0, V, (2, 6)), torch.randint(0, V, (2, 6))
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[:, 3:] = True
    logits, loss = model(idx, targets, mask)
    want = F.cross_entropy(logits[:, 3:].reshape(-1, V), targets[:, 3:].reshape(-1))
    torch.testing.assert_close(loss, want)


def test_too_long_input_and_bad_shapes_are_clear_errors():
    model = model_of()
    with pytest.raises(ValueError, match=r"sequence length 25 is longer than block_size \(24\)"):
        model(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(ValueError, match=r"idx must be \[B, T\]"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"attention_mask shape \(1, 4\) must be"):
        model(torch.zeros(1, 5, dtype=torch.long), attention_mask=torch.ones(1, 4))


@pytest.mark.parametrize("variant", VARIANTS[::3], ids=_id)
def test_padded_training_batch_equals_each_row_alone(variant):
    model = model_of(**variant)
    a, b = torch.randint(0, V, (1, 9)), torch.randint(0, V, (1, 5))
    pad = torch.zeros(1, 4, dtype=torch.long)
    alone_a, alone_b = model(a)[0], model(b)[0]
    for left in (True, False):
        row_b = torch.cat([pad, b] if left else [b, pad], dim=1)
        mask = torch.ones(2, 9, dtype=torch.bool)
        if left:
            mask[1, :4] = False
        else:
            mask[1, 5:] = False
        logits = model(torch.cat([a, row_b]), attention_mask=mask)[0]
        torch.testing.assert_close(logits[0], alone_a[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(logits[1, mask[1]], alone_b[0], atol=1e-5, rtol=1e-5)


def test_padded_positions_are_left_out_of_the_loss():
    model = model_of()
    idx, targets = torch.randint(0, V, (2, 6)), torch.randint(0, V, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    logits, loss = model(idx, targets, attention_mask=mask)
    want = F.cross_entropy(logits[mask], targets[mask])
    torch.testing.assert_close(loss, want)


# -- the KV cache against the full forward ------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS, ids=_id)
def test_cached_decoding_equals_full_forward(variant):
    model = model_of(**variant, moe_top_k=2 if variant["ffn"] == "moe" else 1)
    idx = torch.randint(0, V, (2, 20))
    full = model(idx)[0]
    state = model.new_state(2, 20)
    pieces = [model.forward_step(idx[:, :7], state), model.forward_step(idx[:, 7:11], state)]
    pieces += [model.forward_step(idx[:, t : t + 1], state) for t in range(11, 20)]
    torch.testing.assert_close(torch.cat(pieces, 1), full, atol=1e-5, rtol=1e-5)
    assert state.length == 20


@pytest.mark.parametrize("variant", VARIANTS, ids=_id)
def test_left_padded_rows_decode_like_their_prompt_alone(variant):
    model = model_of(seed=1, **variant)
    seqs = [torch.randint(0, V, (1, n)) for n in (12, 7, 9)]  # prompt lengths 8, 3, 5 + 4 steps
    prompt_lens = [8, 3, 5]
    T = max(prompt_lens)
    batch = torch.zeros(3, T, dtype=torch.long)
    pad_mask = torch.zeros(3, T, dtype=torch.bool)
    for b, (s, n) in enumerate(zip(seqs, prompt_lens)):
        batch[b, T - n :] = s[0, :n]
        pad_mask[b, T - n :] = True
    state = model.new_state(3, T + 4)
    logits = [model.forward_step(batch, state, pad_mask)]
    for step in range(4):
        nxt = torch.stack([s[0, n + step] for s, n in zip(seqs, prompt_lens)])[:, None]
        logits.append(model.forward_step(nxt, state))
    logits = torch.cat(logits, 1)  # (3, T + 4, V)
    for b, (s, n) in enumerate(zip(seqs, prompt_lens)):
        alone = model(s)[0][0]
        torch.testing.assert_close(logits[b, T - n :], alone, atol=1e-5, rtol=1e-5)


def test_forward_step_overflow_is_a_clear_error_and_reorder_follows_rows():
    model = model_of()
    state = model.new_state(2, 5)
    idx = torch.randint(0, V, (2, 5))
    model.forward_step(idx, state)
    with pytest.raises(ValueError, match="holds 5 tokens and 5 are used"):
        model.forward_step(idx[:, :1], state)
    with pytest.raises(ValueError, match="idx has 3 rows but the state was made for 2"):
        model.forward_step(torch.zeros(3, 1, dtype=torch.long), model.new_state(2, 5))
    with pytest.raises(ValueError, match=r"idx must be \[B, T_new\]"):
        model.forward_step(torch.zeros(2, dtype=torch.long), model.new_state(2, 5))
    with pytest.raises(ValueError, match=r"block_size \(24\)"):
        model.forward_step(torch.zeros(1, 25, dtype=torch.long), model.new_state(1, 30))

    # Beam search keeps some rows twice: the state follows.
    state = model.new_state(2, 8)
    model.forward_step(idx, state)
    state.reorder(torch.tensor([1, 1]))
    nxt = torch.tensor([[3], [4]])
    out = model.forward_step(nxt, state)
    for r in range(2):
        want = model(torch.cat([idx[1:2], nxt[r : r + 1]], 1))[0][0, -1]
        torch.testing.assert_close(out[r, 0], want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pos", ["learned", "sinusoidal", "rope"])
def test_generate_is_the_same_with_and_without_cache(pos):
    generate = pytest.importorskip("scratchllm.generation").generate
    model = model_of(seed=2, pos=pos)
    prompt = torch.randint(0, V, (1, 5))
    with_cache = generate(model, prompt, 12, temperature=0, use_cache=True)
    without = generate(model, prompt, 12, temperature=0, use_cache=False)
    assert torch.equal(with_cache, without)
    assert with_cache.shape == (1, 17)


# -- reference attention at model level ----------------------------------------------------------


def test_reference_attention_gives_the_same_model_and_the_weights():
    model = model_of(seed=3, pos="rope").double()
    idx = torch.randint(0, V, (2, 9))
    targets = torch.randint(0, V, (2, 9))
    results = []
    for impl in ("sdpa", "reference"):
        model.set_attention_impl(impl)
        model.zero_grad()
        logits, loss = model(idx, targets)
        loss.backward()
        results.append((logits.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b)

    model.set_attention_impl("sdpa")
    weights = model.attention_weights(idx)
    assert weights.shape == (2, 2, 2, 9, 9)  # (n_layer, B, n_head, T, T)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 2, 9, dtype=torch.float64))
    assert torch.all(weights.triu(1) == 0)
    assert all(b.attn.impl == "sdpa" for b in model.transformer.h)  # put back
    with pytest.raises(ValueError, match="unknown attention impl 'flash'"):
        model.set_attention_impl("flash")


# -- persistence and init -----------------------------------------------------------------------


@pytest.mark.parametrize("tie", [True, False])
def test_save_and_load_round_trip(tmp_path, tie):
    model = model_of(seed=4, tie_weights=tie, pos="rope", ffn="moe")
    idx = torch.randint(0, V, (1, 8))
    model.save(tmp_path)
    loaded = load(tmp_path)
    assert isinstance(loaded, GPT) and loaded.config == model.config
    torch.testing.assert_close(loaded(idx)[0], model(idx)[0])
    shared = loaded.lm_head.weight is loaded.transformer.wte.weight
    assert shared == tie
    assert not any("rope" in k for k in loaded.state_dict())  # derived tables are not saved


def test_gpt2_parameter_names():
    names = set(model_of().state_dict())
    for name in (
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "transformer.h.0.ln_1.weight",
        "transformer.h.0.attn.c_attn.weight",
        "transformer.h.0.attn.c_proj.bias",
        "transformer.h.1.ln_2.bias",
        "transformer.h.1.mlp.c_fc.weight",
        "transformer.h.1.mlp.c_proj.weight",
        "transformer.ln_f.weight",
        "lm_head.weight",
    ):
        assert name in names


def test_gpt2_initialisation():
    torch.manual_seed(5)
    model = GPT(GPTConfig(n_layer=8, n_head=4, n_embd=256, block_size=64, vocab_size=500))
    h = model.transformer.h
    assert h[0].attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.03)
    assert model.transformer.wte.weight.std().item() == pytest.approx(0.02, rel=0.03)
    residual = 0.02 / math.sqrt(2 * 8)
    assert h[3].mlp.c_proj.weight.std().item() == pytest.approx(residual, rel=0.03)
    assert h[3].attn.c_proj.weight.std().item() == pytest.approx(residual, rel=0.03)
    assert torch.all(h[2].attn.c_attn.bias == 0) and torch.all(h[2].ln_1.weight == 1)


def test_dropout_acts_only_in_training():
    model = model_of(dropout=0.5)
    idx = torch.randint(0, V, (2, 8))
    torch.testing.assert_close(model(idx)[0], model(idx)[0])
    model.train()
    assert not torch.allclose(model(idx)[0], model(idx)[0])


@pytest.mark.parametrize("variant", [VARIANTS[0], VARIANTS[-1]], ids=_id)
def test_training_memorises_a_sequence(variant):
    model = model_of(seed=6, **variant).train()
    idx = torch.randint(0, V, (4, 16))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for _ in range(40):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first
