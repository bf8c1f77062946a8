"""The whole NumPy GPT against ``scratchllm.models.GPT`` with the same weights: logits,
loss and every parameter's gradient, float64 to 1e-10 and float32 to 1e-4 relative."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from np_twins import batch, numpy_model, tiny_config, torch_loss_and_grads, torch_twin

from scratchllm.configs import GPTConfig
from scratchllm.numpy_gpt import NumpyGPT, parameter_names

VARIANTS = {
    "gpt2": {},
    "sinusoidal": {"pos": "sinusoidal"},
    "tanh-nobias": {"act": "gelu_tanh", "bias": False},
    "relu-untied": {"act": "relu", "tie_weights": False},
    "wide-heads": {"n_head": 4, "ffn_hidden": 24, "n_layer": 3},
    "sinusoidal-untied-nobias": {"pos": "sinusoidal", "tie_weights": False, "bias": False},
}


def assert_close32(ours: np.ndarray, theirs: np.ndarray, name: str = "") -> None:
    """Within 1e-4 relative, entries far below the tensor's largest measured against it
    (they are sums whose rounding is set by the largest terms)."""
    np.testing.assert_allclose(
        ours, theirs, rtol=1e-4, atol=1e-4 * float(np.abs(theirs).max()), err_msg=name
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_float64_logits_loss_and_every_gradient_within_1e_10(variant):
    config = tiny_config(**VARIANTS[variant])
    model = numpy_model(config, "float64")
    x, y = batch(config)
    logits, loss, grads = model.forward_backward(x, y)
    t_logits, t_loss, t_grads = torch_loss_and_grads(torch_twin(model), x, y)
    np.testing.assert_allclose(logits, t_logits, rtol=1e-10, atol=1e-10)
    assert loss == pytest.approx(t_loss, rel=1e-10)
    assert list(grads) == list(t_grads)  # every parameter, in named_parameters order
    for name in grads:
        np.testing.assert_allclose(grads[name], t_grads[name], rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_logits_and_gradients_within_1e_4_relative(variant):
    config = tiny_config(**VARIANTS[variant])
    model = numpy_model(config, "float32")
    x, y = batch(config)
    logits, loss, grads = model.forward_backward(x, y)
    assert logits.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())
    twin = torch_twin(model)
    t_logits, t_loss, t_grads = torch_loss_and_grads(twin, x, y)
    np.testing.assert_allclose(logits, t_logits, rtol=1e-4, atol=1e-6)
    assert loss == pytest.approx(t_loss, rel=1e-5)
    for name in grads:
        assert_close32(grads[name], t_grads[name], name)
    # the loss the PyTorch model reports itself (lm_loss) is the same number
    _, t_own = twin(torch.from_numpy(x), torch.from_numpy(y))
    assert model(x, y)[1] == pytest.approx(t_own.item(), rel=1e-5)


@pytest.mark.parametrize("variant", ["gpt2", "sinusoidal"])
def test_padding_and_loss_masks_match_pytorch(variant):
    config = tiny_config(**VARIANTS[variant])
    model = numpy_model(config, "float64")
    x, y = batch(config, B=3, T=8)
    attention = np.ones_like(x, dtype=bool)
    attention[0, :3] = False  # left padding
    attention[1, 6:] = False  # right padding
    loss_mask = np.random.default_rng(3).random(x.shape) > 0.3
    logits, loss, grads = model.forward_backward(x, y, loss_mask, attention_mask=attention)
    t_logits, t_loss, t_grads = torch_loss_and_grads(torch_twin(model), x, y, loss_mask, attention)
    np.testing.assert_allclose(logits, t_logits, rtol=1e-10, atol=1e-10)
    assert loss == pytest.approx(t_loss, rel=1e-10)
    for name in grads:
        np.testing.assert_allclose(grads[name], t_grads[name], rtol=1e-10, atol=1e-12, err_msg=name)
    # a left-padded row gives the logits of its text alone
    alone, _ = model(x[:1, 3:])
    np.testing.assert_allclose(logits[0, 3:], alone[0], rtol=1e-10, atol=1e-12)


def test_parameter_names_and_shapes_are_the_pytorch_gpts():
    for changes in VARIANTS.values():
        config = tiny_config(**changes)
        twin = torch_twin(numpy_model(config))  # asserts the names and order
        assert parameter_names(config) == [n for n, _ in twin.named_parameters()]
        assert NumpyGPT(config).num_parameters() == twin.num_parameters()


def test_dropout_is_off_in_eval_mode_and_its_gradient_is_exact_in_training():
    config = tiny_config(dropout=0.3)
    model = numpy_model(config, "float64")
    x, y = batch(config, B=2, T=6)
    twin = torch_twin(model).eval()
    np.testing.assert_allclose(
        model.eval()(x)[0], twin(torch.from_numpy(x))[0].detach().numpy(), rtol=1e-10
    )
    model.train()
    model.rng = np.random.default_rng(0)
    first = model(x, y)[1]
    model.rng = np.random.default_rng(1)
    assert model(x, y)[1] != first  # dropout is on: another mask, another loss

    def loss_with_mask_seed_0() -> float:
        model.rng = np.random.default_rng(0)  # the same masks every call
        return model(x, y)[1]

    model.rng = np.random.default_rng(0)
    _, loss, grads = model.forward_backward(x, y)
    assert loss == pytest.approx(loss_with_mask_seed_0(), rel=1e-14)
    rng = np.random.default_rng(2)
    for name in ("transformer.h.0.attn.c_attn.weight", "transformer.h.1.mlp.c_fc.bias"):
        p = model.params[name]
        for flat in rng.choice(p.size, size=3, replace=False):
            i = np.unravel_index(flat, p.shape)
            old, h = p[i], 1e-6
            p[i] = old + h
            up = loss_with_mask_seed_0()
            p[i] = old - h
            down = loss_with_mask_seed_0()
            p[i] = old
            assert grads[name][i] == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-9)


@pytest.mark.parametrize(
    "changes, option",
    [({"pos": "rope"}, "pos='rope'"), ({"norm": "rmsnorm"}, "norm='rmsnorm'"),
     ({"ffn": "moe"}, "ffn='moe'")],
)  # fmt: skip
def test_unsupported_options_are_a_clear_error_naming_them(changes, option):
    with pytest.raises(ValueError, match=f"does not implement {option}.*PyTorch engine"):
        NumpyGPT(GPTConfig(n_layer=1, n_head=2, n_embd=8, **changes))


def test_bad_inputs_are_errors_before_any_arithmetic():
    model = NumpyGPT(tiny_config())
    with pytest.raises(ValueError, match="longer than block_size"):
        model(np.zeros((1, 13), dtype=np.int64))
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 23\)"):
        model(np.array([[1, 23]]))
    with pytest.raises(ValueError, match="integer token ids"):
        model(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="targets shape"):
        model.forward_backward(np.zeros((1, 3), dtype=np.int64), np.zeros((1, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="missing"):
        NumpyGPT(tiny_config(), {"transformer.wte.weight": np.zeros((23, 16))})
