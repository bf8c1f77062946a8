"""The shared transformer layers: attention (fused vs reference), norms, positions, MoE,
and the KV cache, each against a trusted peer or a plain formula."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.models.layers import (
    MLP,
    CausalSelfAttention,
    KVCache,
    LayerNorm,
    MoE,
    RMSNorm,
    apply_rope,
    make_norm,
    reference_attention,
    rope_tables,
    sinusoidal_table,
)


def _padding_mask(lengths, T, left=True):
    """[B, 1, T, T] bool: causal, real keys only, own slot always open."""
    real = torch.zeros(len(lengths), T, dtype=torch.bool)
    for b, n in enumerate(lengths):
        if left:
            real[b, T - n :] = True
        else:
            real[b, :n] = True
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    return (real[:, None, None, :] & causal) | torch.eye(T, dtype=torch.bool), real


# -- attention -----------------------------------------------------------------------------


@pytest.mark.parametrize("masking", ["causal", "left-pad", "right-pad"])
def test_sdpa_and_reference_paths_agree_in_values_and_gradients(masking):
    torch.manual_seed(0)
    attn = CausalSelfAttention(n_embd=24, n_head=3).double()
    x = torch.randn(3, 7, 24, dtype=torch.float64)
    mask, is_causal = None, True
    if masking != "causal":
        mask, _ = _padding_mask([7, 4, 2], 7, left=masking == "left-pad")
        is_causal = False
    outs, grads = [], []
    for impl in ("sdpa", "reference"):
        attn.impl = impl
        attn.zero_grad()
        xi = x.clone().requires_grad_()
        y = attn(xi, mask=mask, is_causal=is_causal)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        outs.append(y.detach())
        grads.append([xi.grad] + [p.grad.clone() for p in attn.parameters()])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-12, rtol=1e-10)
    for g_sdpa, g_ref in zip(*grads):
        torch.testing.assert_close(g_sdpa, g_ref, atol=1e-12, rtol=1e-10)


def test_reference_weights_are_causal_distributions_that_ignore_padding():
    torch.manual_seed(1)
    attn = CausalSelfAttention(n_embd=16, n_head=2)
    attn.impl = "reference"
    mask, real = _padding_mask([6, 3], 6)
    attn(torch.randn(2, 6, 16), mask=mask, is_causal=False)
    w = attn.last_weights  # (B, H, T, T)
    assert w.shape == (2, 2, 6, 6)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 6))
    assert torch.all(w.triu(1) == 0), "a token attended to the future"
    # Row 1 has 3 pad tokens in front: no real query may attend to them.
    assert torch.all(w[1, :, 3:, :3] == 0)


@settings(max_examples=25, deadline=None)
@given(
    B=st.integers(1, 3),
    H=st.integers(1, 3),
    Tq=st.integers(1, 6),
    extra=st.integers(0, 5),
    D=st.sampled_from([2, 4, 8]),
    seed=st.integers(0, 2**16),
)
def test_reference_attention_matches_torch_sdpa_with_a_random_mask(B, H, Tq, extra, D, seed):
    g = torch.Generator().manual_seed(seed)
    Tk = Tq + extra
    q = torch.randn(B, H, Tq, D, generator=g, dtype=torch.float64)
    k = torch.randn(B, H, Tk, D, generator=g, dtype=torch.float64)
    v = torch.randn(B, H, Tk, D, generator=g, dtype=torch.float64)
    mask = torch.rand(B, 1, Tq, Tk, generator=g) < 0.6
    mask[..., 0] = True  # every query sees at least one key
    ours, _ = reference_attention(q, k, v, mask)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_reference_attention_is_the_textbook_formula():
    torch.manual_seed(2)
    q, k, v = (torch.randn(1, 1, 3, 4, dtype=torch.float64) for _ in range(3))
    y, w = reference_attention(q, k, v, is_causal=True)
    for i in range(3):  # by hand, one query at a time
        s = [float(q[0, 0, i] @ k[0, 0, j]) / 2.0 for j in range(i + 1)]
        e = [math.exp(x) for x in s]
        p = [x / sum(e) for x in e]
        assert w[0, 0, i, : i + 1].tolist() == pytest.approx(p)
        expected = sum(p[j] * v[0, 0, j] for j in range(i + 1))
        torch.testing.assert_close(y[0, 0, i], expected)


def test_attention_rejects_indivisible_width():
    with pytest.raises(ValueError, match=r"n_embd \(10\) must be divisible by n_head \(3\)"):
        CausalSelfAttention(10, 3)


# -- norms -------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_layernorm_matches_torch(bias):
    torch.manual_seed(3)
    ours = LayerNorm(10, bias=bias, eps=1e-5).double()
    peer = torch.nn.LayerNorm(10, eps=1e-5, bias=bias).double()
    with torch.no_grad():
        ours.weight.normal_()
        peer.weight.copy_(ours.weight)
        if bias:
            ours.bias.normal_()
            peer.bias.copy_(ours.bias)
    x = torch.randn(4, 5, 10, dtype=torch.float64)
    torch.testing.assert_close(ours(x), peer(x))


def test_rmsnorm_matches_torch_and_the_formula():
    torch.manual_seed(4)
    ours = RMSNorm(10, eps=1e-6).double()
    with torch.no_grad():
        ours.weight.normal_()
    peer = torch.nn.RMSNorm(10, eps=1e-6).double()
    with torch.no_grad():
        peer.weight.copy_(ours.weight)
    x = torch.randn(3, 10, dtype=torch.float64) * 5
    torch.testing.assert_close(ours(x), peer(x))
    formula = x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-6) * ours.weight
    torch.testing.assert_close(ours(x), formula)


def test_make_norm_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown norm 'batchnorm'.*layernorm.*rmsnorm"):
        make_norm("batchnorm", 8, True, 1e-5)


# -- positions -----------------------------------------------------------------------------


def test_sinusoidal_table_is_the_vaswani_formula():
    table = sinusoidal_table(12, 7)  # an odd width too
    for p in (0, 1, 5, 11):
        for i in range(7):
            angle = p / 10000 ** ((i - i % 2) / 7)
            want = math.sin(angle) if i % 2 == 0 else math.cos(angle)
            assert table[p, i].item() == pytest.approx(want, abs=1e-6)


def test_rope_matches_transformers_llama():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import (
        LlamaRotaryEmbedding,
        apply_rotary_pos_emb,
    )

    torch.manual_seed(5)
    B, H, T, D = 2, 3, 9, 8
    q, k = torch.randn(B, H, T, D), torch.randn(B, H, T, D)
    cfg = LlamaConfig(hidden_size=H * D, num_attention_heads=H, max_position_embeddings=16)
    pos = torch.arange(T)[None].expand(B, T)
    cos_hf, sin_hf = LlamaRotaryEmbedding(cfg)(q, pos)
    q_hf, k_hf = apply_rotary_pos_emb(q, k, cos_hf, sin_hf)
    cos, sin = rope_tables(16, D)
    torch.testing.assert_close(apply_rope(q, cos[:T], sin[:T]), q_hf, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(apply_rope(k, cos[:T], sin[:T]), k_hf, atol=1e-5, rtol=1e-5)


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(6)
    q, k = torch.randn(8), torch.randn(8)
    cos, sin = rope_tables(40, 8)

    def score(m, n):
        return float(apply_rope(q, cos[m], sin[m]) @ apply_rope(k, cos[n], sin[n]))

    assert score(7, 3) == pytest.approx(score(30, 26), abs=1e-4)
    assert score(5, 5) == pytest.approx(float(q @ k), abs=1e-5)  # no turn at distance 0
    assert score(7, 3) != pytest.approx(score(7, 4), abs=1e-3)


def test_rope_rejects_odd_head_size():
    with pytest.raises(ValueError, match="head_dim 5"):
        rope_tables(8, 5)


# -- feed-forward and mixture of experts ------------------------------------------------------


@pytest.mark.parametrize("top_k", [1, 2])
def test_moe_equals_a_per_token_loop(top_k):
    torch.manual_seed(7)
    moe = MoE(12, 20, "gelu", True, 0.0, n_expert=4, top_k=top_k).double()
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    y, aux = moe(x)
    flat = x.reshape(-1, 12)
    probs = F.softmax(moe.router(flat), -1)
    want, f = [], torch.zeros(4, dtype=torch.float64)
    for t in range(flat.size(0)):
        p, i = probs[t].topk(top_k)
        w = p / p.sum() if top_k > 1 else p
        want.append(sum(w[j] * moe.experts[int(i[j])](flat[t]) for j in range(top_k)))
        f[i] += 1.0 / (flat.size(0) * top_k)
    torch.testing.assert_close(y.reshape(-1, 12), torch.stack(want))
    assert aux.item() == pytest.approx(4 * float((f * probs.mean(0)).sum().detach()))


def test_moe_with_one_expert_is_the_mlp_and_routing_gets_gradient():
    torch.manual_seed(8)
    moe = MoE(8, 16, "relu", True, 0.0, n_expert=1, top_k=1)
    mlp = MLP(8, 16, "relu", True, 0.0)
    mlp.load_state_dict(moe.experts[0].state_dict())
    x = torch.randn(3, 4, 8)
    y, aux = moe(x)
    torch.testing.assert_close(y, mlp(x))  # router probability is 1 for the only expert
    assert aux.item() == pytest.approx(1.0)

    moe4 = MoE(8, 16, "relu", True, 0.0, n_expert=4, top_k=1)
    y, aux = moe4(x)
    (y.sum() + aux).backward()
    assert moe4.router.weight.grad.abs().sum() > 0


def test_moe_balancing_loss_ignores_padding():
    torch.manual_seed(9)
    moe = MoE(8, 16, "gelu", True, 0.0, n_expert=3, top_k=1)
    x = torch.randn(1, 6, 8)
    mask = torch.tensor([[False, False, True, True, True, True]])
    _, aux_masked = moe(x, mask)
    _, aux_real = moe(x[:, 2:])
    assert aux_masked.item() == pytest.approx(aux_real.item())


# -- KV cache ------------------------------------------------------------------------------


def _cache(B=2, max_length=6):
    return KVCache.allocate(2, B, 2, max_length, 4, torch.float32, torch.device("cpu"))


def test_kv_cache_buffers_are_views_written_in_place():
    cache = _cache()
    assert cache.keys[1].shape == (2, 2, 6, 4)
    cache.keys[1][0, 0, 0, 0] = 3.0
    assert cache.buffer[1, 0, 0, 0, 0, 0] == 3.0


def test_kv_cache_overflow_and_bad_masks_are_clear_errors():
    cache = _cache(max_length=4)
    cache.advance(3, None, block_size=100)
    with pytest.raises(ValueError, match=r"holds 4 tokens and 3 are used; 2 more"):
        cache.advance(2, None, block_size=100)
    with pytest.raises(ValueError, match=r"pad_mask shape \(2, 3\) must be \(2, 1\)"):
        cache.advance(1, torch.ones(2, 3, dtype=torch.bool), block_size=100)
    with pytest.raises(ValueError, match=r"past the model's block_size \(3\)"):
        cache.advance(1, None, block_size=3)
    with pytest.raises(ValueError, match=r"max_length \(0\)"):
        _cache(max_length=0)


def test_kv_cache_positions_count_only_real_tokens():
    cache = _cache(max_length=8)
    pad = torch.tensor([[False, False, True], [True, True, True]])
    _, positions, mask, _ = cache.advance(3, pad, block_size=8)
    assert positions.tolist() == [[0, 0, 0], [0, 1, 2]]
    assert mask.shape == (2, 1, 3, 3)
    assert not mask[0, 0, 2, :2].any()  # the real token never sees the padding
    _, positions, mask, _ = cache.advance(1, None, block_size=8)
    assert positions.tolist() == [[1], [3]]
    assert mask[:, 0, 0].tolist() == [[False, False, True, True], [True] * 4]


def test_kv_cache_reorder_moves_every_layer_and_the_padding_info():
    cache = _cache(B=3)
    cache.advance(2, torch.tensor([[True, True], [False, True], [True, True]]), block_size=10)
    for b in range(3):
        cache.buffer[:, :, b] = float(b)
    cache.reorder(torch.tensor([2, 2, 1]))
    assert cache.keys[0][:, 0, 0, 0].tolist() == [2.0, 2.0, 1.0]
    assert cache.values[1][:, 0, 0, 0].tolist() == [2.0, 2.0, 1.0]
    assert cache.positions.tolist() == [2, 2, 1]
    assert cache.key_mask[2, :2].tolist() == [False, True]
