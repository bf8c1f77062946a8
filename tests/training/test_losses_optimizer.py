"""Losses against torch's cross-entropy in float64; the weight-decay rule; AdamW's update
against a textbook decoupled AdamW written out in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scratchllm.models import (
    GPT,
    MLPLM,
    RNNLM,
    GPTConfig,
    MLPConfig,
    RNNConfig,
    label_smoothing,
    lm_loss,
)
from scratchllm.training import TrainConfig, configure_optimizer, decay_groups, masked_cross_entropy


def _batch(seed=0, B=3, T=5, V=7):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g, dtype=torch.float64)
    targets = torch.randint(0, V, (B, T), generator=g)
    mask = torch.rand(B, T, generator=g) > 0.4
    mask[0, 0] = True
    return logits, targets, mask


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_masked_cross_entropy_matches_torch(eps):
    logits, targets, mask = _batch()
    ours = masked_cross_entropy(logits.float(), targets, mask, label_smoothing=eps)
    keep = mask.reshape(-1)
    ref = F.cross_entropy(
        logits.reshape(-1, 7)[keep], targets.reshape(-1)[keep], label_smoothing=eps
    )
    torch.testing.assert_close(ours.double(), ref, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_lm_loss_inside_label_smoothing_is_the_smoothed_loss(eps):
    logits, targets, mask = _batch(seed=1)
    with label_smoothing(eps):  # how the Trainer asks every model's loss for smoothing
        total = lm_loss(logits, targets, mask)
    assert float(lm_loss(logits, targets, mask)) != pytest.approx(float(total))  # scoped
    keep = mask.reshape(-1)
    ref = F.cross_entropy(
        logits.reshape(-1, 7)[keep], targets.reshape(-1)[keep], label_smoothing=eps
    )
    torch.testing.assert_close(total.double(), ref, atol=1e-6, rtol=1e-6)


def test_mask_shape_mismatch_is_an_error():
    logits, targets, _ = _batch()
    with pytest.raises(ValueError, match="loss_mask shape"):
        masked_cross_entropy(logits, targets, torch.ones(2, 2, dtype=torch.bool))


def test_gpt_decay_groups():
    model = GPT(GPTConfig(vocab_size=11, n_layer=2, n_head=2, n_embd=8, block_size=4))
    decay, no_decay = decay_groups(model)
    # Every Linear weight inside the blocks is decayed ...
    assert "transformer.h.0.attn.c_attn.weight" in decay
    assert "transformer.h.1.mlp.c_proj.weight" in decay
    # ... embeddings (and the lm_head tied to wte), biases and norms are not.
    for name in (
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "transformer.ln_f.weight",
        "transformer.h.0.ln_1.bias",
        "transformer.h.0.attn.c_attn.bias",
    ):
        assert name in no_decay
    assert "lm_head.weight" not in decay + no_decay  # tied: listed once, as wte
    assert all(p.dim() >= 2 for n, p in model.named_parameters() if n in decay)
    n_all = len({id(p) for p in model.parameters()})
    assert len(decay) + len(no_decay) == n_all


def test_untied_head_is_decayed_and_other_families():
    model = GPT(
        GPTConfig(vocab_size=11, n_layer=1, n_head=1, n_embd=8, block_size=4, tie_weights=False)
    )
    decay, no_decay = decay_groups(model)
    assert "lm_head.weight" in decay and "transformer.wte.weight" in no_decay
    decay, no_decay = decay_groups(MLPLM(MLPConfig(vocab_size=9, n=3)))
    assert set(decay) == {"fc.weight", "lm_head.weight"}
    assert "wte.weight" in no_decay
    decay, _ = decay_groups(RNNLM(RNNConfig(vocab_size=9)))
    assert decay and all("weight" in n for n in decay)


def test_adamw_step_matches_textbook_decoupled_adamw():
    """Three steps of our optimizer vs. AdamW written out in float64 (Loshchilov & Hutter):
    m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; w -= lr * (wd * w + m_hat / (sqrt(v_hat) + eps))
    with wd only on the decayed parameters."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, n_layer=1, n_head=2, n_embd=8, block_size=4)).double()
    cfg = TrainConfig(lr=1e-2, weight_decay=0.5, beta1=0.8, beta2=0.9, eps=1e-8)
    opt = configure_optimizer(model, cfg)
    decay, _ = decay_groups(model)
    params = dict(model.named_parameters())
    ref = {n: p.detach().clone() for n, p in params.items()}
    m = {n: torch.zeros_like(p) for n, p in ref.items()}
    v = {n: torch.zeros_like(p) for n, p in ref.items()}
    x = torch.randint(0, 11, (2, 4))
    for t in range(1, 4):
        opt.zero_grad()
        _, loss = model(x, x.roll(1, 1))
        loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in params.items()}
        opt.step()
        for n in ref:
            g = grads[n]
            m[n] = cfg.beta1 * m[n] + (1 - cfg.beta1) * g
            v[n] = cfg.beta2 * v[n] + (1 - cfg.beta2) * g * g
            m_hat = m[n] / (1 - cfg.beta1**t)
            v_hat = v[n] / (1 - cfg.beta2**t)
            wd = cfg.weight_decay if n in decay else 0.0
            ref[n] = ref[n] - cfg.lr * (wd * ref[n] + m_hat / (v_hat.sqrt() + cfg.eps))
        for n, p in params.items():
            torch.testing.assert_close(p.detach(), ref[n], atol=1e-10, rtol=1e-8, msg=n)


def test_no_trainable_parameters_is_a_clear_error():
    from scratchllm.models import NGram, NGramConfig

    with pytest.raises(ValueError, match="no trainable parameters"):
        configure_optimizer(NGram(NGramConfig(vocab_size=5)), TrainConfig())


@pytest.mark.parametrize(
    "make",
    [
        lambda: GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=4, vocab_size=5)),
        lambda: MLPLM(MLPConfig(n=3, vocab_size=5, n_embd=4, n_hidden=8)),
        lambda: RNNLM(RNNConfig(cell="gru", vocab_size=5, n_embd=4, n_hidden=8, block_size=4)),
    ],
    ids=["gpt", "mlp", "gru"],
)
def test_a_float64_model_keeps_float64_in_its_loss(make):
    # Gradient checks in float64 must not silently lose precision in the loss.
    torch.manual_seed(0)
    model = make().double()
    x = torch.randint(0, 5, (2, 4))
    y = torch.randint(0, 5, (2, 4))
    logits, loss = model(x, y)
    assert logits.dtype == loss.dtype == torch.float64
    ref = F.cross_entropy(logits.reshape(-1, 5), y.reshape(-1))
    torch.testing.assert_close(loss, ref, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_logits_give_a_float32_loss(dtype):
    logits, targets, mask = _batch(seed=2)
    loss = lm_loss(logits.to(dtype), targets, mask)
    assert loss.dtype == torch.float32
    ref = F.cross_entropy(logits.to(dtype).double().reshape(-1, 7)[mask.reshape(-1)],
                          targets.reshape(-1)[mask.reshape(-1)])  # fmt: skip
    torch.testing.assert_close(loss.double(), ref, rtol=1e-5, atol=1e-5)
