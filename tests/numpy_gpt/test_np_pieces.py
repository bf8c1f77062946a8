"""Each piece of the NumPy GPT against its PyTorch twin: values and gradients (float64,
to 1e-12), and what the float32 fast paths give up (float32 GELU to float32 rounding)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from np_twins import tiny_config

from scratchllm.models.gpt import Block
from scratchllm.models.layers import (
    MLP,
    CausalSelfAttention,
    LayerNorm,
    make_activation,
    reference_attention,
    sinusoidal_table,
)
from scratchllm.numpy_gpt import activations
from scratchllm.numpy_gpt.attention import (
    attention_head,
    attention_head_backward,
    multi_head_attention,
    multi_head_attention_backward,
)
from scratchllm.numpy_gpt.block import block, block_backward
from scratchllm.numpy_gpt.dropout import dropout, dropout_backward
from scratchllm.numpy_gpt.embedding import scatter_add_rows
from scratchllm.numpy_gpt.layer_norm import layer_norm, layer_norm_backward
from scratchllm.numpy_gpt.linear import linear, linear_backward
from scratchllm.numpy_gpt.masks import attention_bias, look_ahead_mask, padding_mask
from scratchllm.numpy_gpt.mlp import mlp, mlp_backward
from scratchllm.numpy_gpt.output import cross_entropy, output_layer, output_layer_backward
from scratchllm.numpy_gpt.positions import sinusoidal_positions

TOL = dict(rtol=1e-12, atol=1e-12)


def rand(*shape, seed=0, scale=1.0):
    return np.random.default_rng(seed).normal(0.0, scale, size=shape)


def leaf(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def params_of(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> dict:
    """Randomise the module's parameters (so biases and gains matter) and return them as
    float64 arrays by name."""
    module.double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * scale)
    return {n: p.detach().numpy().copy() for n, p in module.named_parameters()}


def assert_grads(ours: dict, module: torch.nn.Module) -> None:
    theirs = {n: p.grad.numpy() for n, p in module.named_parameters()}
    assert sorted(ours) == sorted(theirs)
    for name in theirs:
        np.testing.assert_allclose(ours[name], theirs[name], **TOL, err_msg=name)


# -- positions and masks ------------------------------------------------------------------------


@pytest.mark.parametrize("T, C", [(16, 8), (7, 5), (1, 2), (64, 128)])
def test_sinusoidal_positions_equal_the_pytorch_table(T, C):
    np.testing.assert_array_equal(sinusoidal_positions(T, C), sinusoidal_table(T, C).numpy())


@pytest.mark.parametrize("Tq, Tk", [(4, 4), (1, 5), (3, 7)])
def test_look_ahead_mask_lets_each_query_see_itself_and_the_past(Tq, Tk):
    mask = look_ahead_mask(Tq, Tk)
    # query i sits at position Tk - Tq + i: tril with that offset
    expected = torch.ones(Tq, Tk, dtype=torch.bool).tril(diagonal=Tk - Tq).numpy()
    np.testing.assert_array_equal(mask, expected)


def test_padding_mask_is_the_pytorch_gpts():
    real = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=bool)
    mask, positions = padding_mask(real)
    t = torch.from_numpy(real)
    T = real.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    expected = (t[:, None, None, :] & causal) | torch.eye(T, dtype=torch.bool)  # GPT.forward's
    np.testing.assert_array_equal(mask, expected.numpy())
    np.testing.assert_array_equal(positions, (t.cumsum(1) - 1).clamp(min=0).numpy())


def test_attention_bias_is_zero_or_minus_infinity():
    bias = attention_bias(look_ahead_mask(3), np.float32)
    assert bias.dtype == np.float32
    assert np.isneginf(bias[0, 1]) and bias[1, 0] == 0 and bias[2, 2] == 0


# -- one head, many heads ----------------------------------------------------------------------


@pytest.mark.parametrize("Tq, Tk, D", [(5, 5, 4), (1, 6, 8), (3, 3, 1)])
def test_one_attention_head_matches_pytorch(Tq, Tk, D):
    q, k, v = rand(Tq, D, seed=1), rand(Tk, D, seed=2), rand(Tk, D, seed=3)
    dout = rand(Tq, D, seed=4)
    mask = look_ahead_mask(Tq, Tk)
    out, cache = attention_head(q, k, v, attention_bias(mask, np.float64))
    dq, dk, dv = attention_head_backward(dout, cache)

    tq, tk, tv = leaf(q), leaf(k), leaf(v)
    ref, weights = reference_attention(tq, tk, tv, torch.from_numpy(mask))
    sdpa = F.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.from_numpy(mask))
    torch.testing.assert_close(ref, sdpa)
    ref.backward(torch.from_numpy(dout))
    np.testing.assert_allclose(out, ref.detach().numpy(), **TOL)
    np.testing.assert_allclose(cache[3], weights.detach().numpy(), **TOL)  # the weights W
    for ours, t in ((dq, tq), (dk, tk), (dv, tv)):
        np.testing.assert_allclose(ours, t.grad.numpy(), **TOL)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("padded", [False, True])
def test_multi_head_attention_matches_causal_self_attention(bias, padded):
    B, T, C, H = 3, 6, 12, 3
    module = CausalSelfAttention(C, H, bias=bias)
    p = params_of(module)
    x, dy = rand(B, T, C, seed=5), rand(B, T, C, seed=6)
    if padded:
        real = np.ones((B, T), dtype=bool)
        real[0, :2] = False  # left padding
        real[2, 4:] = False  # right padding
        mask, _ = padding_mask(real)
        t_mask, is_causal = torch.from_numpy(mask), False
    else:
        mask, t_mask, is_causal = look_ahead_mask(T), None, True
    y, cache = multi_head_attention(x, p, H, attention_bias(mask, np.float64))
    dx, grads = multi_head_attention_backward(dy, cache)

    tx = leaf(x)
    ref = module(tx, t_mask, is_causal)
    ref.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, ref.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **TOL)
    assert_grads(grads, module)


# -- layer norm, linear, activations, MLP, block ------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(4, 8), (2, 3, 16), (1, 1)])
def test_layer_norm_matches_pytorch(bias, shape):
    C = shape[-1]
    module = LayerNorm(C, bias=bias, eps=1e-5)
    p = params_of(module)
    x, dy = rand(*shape, seed=7, scale=3.0) + 2.0, rand(*shape, seed=8)
    y, cache = layer_norm(x, p["weight"], p.get("bias"), 1e-5)
    dx, dw, db = layer_norm_backward(dy, cache)
    tx = leaf(x)
    ref = module(tx)
    ref.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, ref.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **TOL)
    assert_grads({"weight": dw, **({"bias": db} if bias else {})}, module)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_nn_linear(bias):
    module = torch.nn.Linear(5, 7, bias=bias)
    p = params_of(module)
    x, dy = rand(2, 3, 5, seed=9), rand(2, 3, 7, seed=10)
    y = linear(x, p["weight"], p.get("bias"))
    dx, dw, db = linear_backward(dy, x, p["weight"], bias)
    tx = leaf(x)
    ref = module(tx)
    ref.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, ref.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **TOL)
    assert_grads({"weight": dw, **({"bias": db} if bias else {})}, module)


@pytest.mark.parametrize("name", ["gelu", "gelu_tanh", "relu"])
def test_activations_match_pytorch_in_float64(name):
    x = np.concatenate([rand(500, seed=11, scale=3.0), [0.0, -0.0, 1e-8, -40.0, 40.0]])
    dy = rand(x.size, seed=12)
    forward, backward = activations.activation(name)
    y, cache = forward(x)
    dx = backward(dy, cache)
    tx = leaf(x)
    ref = make_activation(name)(tx)
    ref.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, ref.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **TOL)


def _exact_activation(name, x):
    """Value and derivative in float64 from the formulas (math.erf for the exact GELU)."""
    if name == "relu":
        return np.maximum(x, 0), (x > 0).astype(np.float64)
    if name == "gelu":
        cdf = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x])
        return x * cdf, cdf + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    k = math.sqrt(2 / math.pi)
    t = np.tanh(k * (x + 0.044715 * x**3))
    return 0.5 * x * (1 + t), 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)


@pytest.mark.parametrize("name", ["gelu", "gelu_tanh", "relu"])
def test_activations_in_float32_are_as_accurate_as_pytorchs(name):
    """float32 cannot give a small GELU value exactly (1 + erf(x) cancels for x << 0, in
    PyTorch too), so both engines are held to the exact value, error scaled by max(1, |x|)."""
    x = np.linspace(-10.0, 10.0, 20_001).astype(np.float32)
    forward, backward = activations.activation(name)
    y, cache = forward(x)
    dx = backward(np.ones_like(x), cache)
    assert y.dtype == np.float32 and dx.dtype == np.float32
    tx = torch.tensor(x, requires_grad=True)
    ty = make_activation(name)(tx)
    ty.sum().backward()
    exact, d_exact = _exact_activation(name, x.astype(np.float64))
    scale = np.maximum(1.0, np.abs(x.astype(np.float64)))
    ours, theirs = np.abs(y - exact) / scale, np.abs(ty.detach().numpy() - exact) / scale
    assert ours.max() <= max(1.5 * theirs.max(), 1e-7), (ours.max(), theirs.max())
    d_ours, d_theirs = np.abs(dx - d_exact), np.abs(tx.grad.numpy() - d_exact)
    assert d_ours.max() <= max(1.5 * d_theirs.max(), 1e-7), (d_ours.max(), d_theirs.max())


def test_float32_normal_cdf_is_accurate_to_float32_rounding():
    x = np.linspace(-12.0, 12.0, 100_001).astype(np.float32)
    cdf, gauss = activations.normal_cdf32(x)
    exact = np.array([0.5 * math.erfc(-float(v) / math.sqrt(2.0)) for v in x])
    assert np.abs(cdf - exact).max() < 4e-7  # A&S 7.1.26: 1.5e-7 on erf, plus rounding
    # exp(-x^2/2) of the float32 x, good to float32 rounding of x^2/2 (up to 72 here)
    np.testing.assert_allclose(gauss, np.exp(-0.5 * x.astype(np.float64) ** 2), rtol=1e-5)


@pytest.mark.parametrize("act", ["gelu", "gelu_tanh", "relu"])
@pytest.mark.parametrize("bias", [True, False])
def test_mlp_matches_pytorch(act, bias):
    module = MLP(6, 10, act, bias, 0.0)
    p = params_of(module)
    x, dy = rand(2, 4, 6, seed=15), rand(2, 4, 6, seed=16)
    y, cache = mlp(x, p, act)
    dx, grads = mlp_backward(dy, cache)
    tx = leaf(x)
    ref = module(tx)
    ref.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, ref.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **TOL)
    assert_grads(grads, module)


@pytest.mark.parametrize("changes", [{}, {"bias": False, "act": "relu"}, {"act": "gelu_tanh"}])
def test_block_matches_pytorch(changes):
    config = tiny_config(n_embd=12, n_head=3, **changes)
    module = Block(config)
    p = params_of(module, scale=0.2)
    x, dy = rand(2, 5, 12, seed=17), rand(2, 5, 12, seed=18)
    y, cache = block(x.copy(), p, config, attention_bias(look_ahead_mask(5), np.float64))
    dx, grads = block_backward(dy, cache)
    tx = leaf(x)
    ref, _ = module(tx)
    ref.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(y, ref.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **TOL)
    assert_grads(grads, module)


# -- output layer and loss -------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_output_layer_matches_ln_f_then_lm_head(bias):
    ln, head = LayerNorm(8, bias=bias), torch.nn.Linear(8, 11, bias=False)
    p_ln, p_head = params_of(ln), params_of(head, seed=1)
    x, dlogits = rand(2, 3, 8, seed=19), rand(2, 3, 11, seed=20)
    logits, cache = output_layer(x, p_ln["weight"], p_ln.get("bias"), 1e-5, p_head["weight"])
    dx, d_w, d_b, d_head = output_layer_backward(dlogits, cache)
    tx = leaf(x)
    ref = head(ln(tx))
    ref.backward(torch.from_numpy(dlogits))
    np.testing.assert_allclose(logits, ref.detach().numpy(), **TOL)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **TOL)
    np.testing.assert_allclose(d_head, head.weight.grad.numpy(), **TOL)
    assert_grads({"weight": d_w, **({"bias": d_b} if bias else {})}, ln)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("masked", [False, True])
def test_cross_entropy_and_its_gradient_match_pytorch(smoothing, masked):
    B, T, V = 3, 5, 7
    logits = rand(B, T, V, seed=21, scale=4.0)
    targets = np.random.default_rng(22).integers(0, V, size=(B, T))
    targets[0, 0] = -1  # never counts
    loss_mask = np.random.default_rng(23).random((B, T)) > 0.4 if masked else None
    loss, d = cross_entropy(logits, targets, loss_mask, smoothing, grad=True)

    keep = torch.from_numpy(targets) != -1
    if masked:
        keep &= torch.from_numpy(loss_mask)
    t = torch.from_numpy(targets).masked_fill(~keep, -1).reshape(-1)
    tl = leaf(logits)
    ref = F.cross_entropy(tl.reshape(-1, V), t, ignore_index=-1, label_smoothing=smoothing)
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-13)
    np.testing.assert_allclose(d, tl.grad.numpy(), **TOL)


def test_cross_entropy_over_no_counted_position_is_nan_as_in_pytorch():
    loss, d = cross_entropy(np.zeros((1, 2, 3)), np.full((1, 2), -1), grad=True)
    assert math.isnan(loss) and not d.any()


# -- dropout and the embedding scatter ----------------------------------------------------------


def test_dropout_keeps_the_mean_and_its_gradient_uses_the_same_mask():
    x = np.ones((200, 500), dtype=np.float32)
    y, scale = dropout(x, 0.25, np.random.default_rng(0))
    assert y.dtype == np.float32
    assert set(np.unique(y).tolist()) == {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.01 and abs(y.mean() - 1.0) < 0.01
    dy = rand(200, 500, seed=24).astype(np.float32)
    np.testing.assert_array_equal(dropout_backward(dy, scale), dy * (y / x))
    y2, _ = dropout(x, 0.25, np.random.default_rng(0))
    np.testing.assert_array_equal(y, y2)  # seeded: the same mask again


@settings(max_examples=50, deadline=None)
@given(
    n_rows=st.integers(1, 30),
    index=st.lists(st.integers(0, 29), min_size=0, max_size=60),
    width=st.integers(1, 4),
)
def test_scatter_add_rows_equals_np_add_at(n_rows, index, width):
    index = np.array([i % n_rows for i in index], dtype=np.int64)
    values = rand(len(index), width, seed=25)
    expected = np.zeros((n_rows, width))
    np.add.at(expected, index, values)
    np.testing.assert_allclose(scatter_add_rows(index, values, n_rows), expected, **TOL)
