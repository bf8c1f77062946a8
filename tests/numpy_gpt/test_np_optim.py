"""AdamW, its decay groups, clipping and the schedule: the NumPy update against the one
the PyTorch Trainer takes (``configure_optimizer`` + ``clip_grad_norm_`` + ``lr_at``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from np_twins import batch, numpy_model, tiny_config, torch_loss_and_grads, torch_twin

from scratchllm.configs import TrainConfig
from scratchllm.numpy_gpt.optim import AdamW, decay_groups, global_norm
from scratchllm.training.optimizer import configure_optimizer
from scratchllm.training.optimizer import decay_groups as torch_decay_groups
from scratchllm.training.schedule import lr_at
from scratchllm.training.trainer import train_step_fn

VARIANTS = [{}, {"tie_weights": False}, {"pos": "sinusoidal", "bias": False}]


@pytest.mark.parametrize("changes", VARIANTS)
def test_decay_groups_are_the_pytorch_trainers(changes):
    model = numpy_model(tiny_config(**changes))
    assert decay_groups(model) == torch_decay_groups(torch_twin(model))


def without_key_bias(name: str, p: np.ndarray) -> np.ndarray:
    """The parameter, less the keys' part of ``c_attn.bias``. That part gets no gradient
    at all (adding a constant to every key adds ``q . b`` to a whole row of scores, which
    the softmax ignores), so its "gradient" is rounding noise, which Adam's division by
    ``sqrt(v)`` turns into +-lr steps in both engines: nothing to compare there."""
    if not name.endswith("c_attn.bias"):
        return p
    C = p.shape[0] // 3
    return np.concatenate([p[:C], p[2 * C :]])


def test_the_key_bias_gets_no_gradient():
    config = tiny_config()
    model = numpy_model(config, "float64")
    _, _, grads = model.forward_backward(*batch(config))
    g = grads["transformer.h.0.attn.c_attn.bias"]
    C = config.n_embd
    assert np.abs(g[C : 2 * C]).max() < 1e-14 * np.abs(g[:C]).max() + 1e-17


def optimizer_pair(model, cfg: TrainConfig):
    twin = torch_twin(model)
    opt = AdamW(
        model, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
        weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip,
    )  # fmt: skip
    return twin, opt, configure_optimizer(twin, cfg)


@pytest.mark.parametrize("grad_clip", [None, 1.0, 0.05])  # off, rarely active, always active
@pytest.mark.parametrize("changes", VARIANTS)
def test_adamw_steps_equal_pytorchs_in_float64(grad_clip, changes):
    config = tiny_config(**changes)
    cfg = TrainConfig(lr=1e-2, min_lr=1e-3, warmup_iters=2, max_iters=6, grad_clip=grad_clip)
    model = numpy_model(config, "float64")
    twin, opt, t_opt = optimizer_pair(model, cfg)
    for step in range(4):
        x, y = batch(config, seed=step)
        lr = lr_at(step, cfg)
        _, _, grads = model.forward_backward(x, y)
        norm = opt.step(grads, lr)
        torch_loss_and_grads(twin, x, y)  # fills twin's .grad
        for group in t_opt.param_groups:
            group["lr"] = lr
        if grad_clip:
            t_norm = torch.nn.utils.clip_grad_norm_(list(twin.parameters()), grad_clip)
            assert norm == pytest.approx(t_norm.item(), rel=1e-12)
        else:
            assert norm is None
        t_opt.step()
        for name, p in twin.named_parameters():
            np.testing.assert_allclose(
                without_key_bias(name, model.params[name]),
                without_key_bias(name, p.detach().numpy()),
                rtol=1e-10, atol=1e-13, err_msg=name,
            )  # fmt: skip


def test_ten_float32_steps_equal_the_trainers_update():
    """The very function a Trainer step runs (``train_step_fn``), float32, with clipping."""
    config = tiny_config()
    cfg = TrainConfig(lr=3e-3, warmup_iters=3, max_iters=10, grad_clip=0.5)
    model = numpy_model(config, "float32")
    twin = torch_twin(model)
    step_fn = train_step_fn(twin, cfg, device="cpu")
    opt = AdamW(model, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), grad_clip=cfg.grad_clip)
    for step in range(10):
        x, y = batch(config, seed=step)
        _, loss, grads = model.forward_backward(x, y)
        opt.step(grads, lr_at(step, cfg))
        t_loss = step_fn(torch.from_numpy(x), torch.from_numpy(y))
        assert loss == pytest.approx(t_loss.item(), rel=1e-4)
    for name, p in twin.named_parameters():
        np.testing.assert_allclose(
            without_key_bias(name, model.params[name]),
            without_key_bias(name, p.detach().numpy()),
            rtol=1e-4, atol=1e-5, err_msg=name,
        )  # fmt: skip


def test_the_optimizer_packs_parameters_into_one_buffer_per_group():
    model = numpy_model(tiny_config(), "float32")
    before = {n: p.copy() for n, p in model.params.items()}
    opt = AdamW(model)
    for (names, _), flat in zip(opt.groups, opt.flat):
        for n in names:
            assert np.shares_memory(model.params[n], flat)
            np.testing.assert_array_equal(model.params[n], before[n])
    # the model still computes with them: the block views were rebuilt
    x, y = batch(model.config)
    _, loss, grads = model.forward_backward(x, y)
    opt.step(grads, 1e-2)
    assert model(x, y)[1] < loss


def test_optimizer_state_round_trips_in_pytorchs_layout():
    config = tiny_config()
    a, b = numpy_model(config, "float64"), numpy_model(config, "float64")
    opt_a, opt_b = AdamW(a), AdamW(b)
    x, y = batch(config)
    opt_a.step(a.forward_backward(x, y)[2])
    state = opt_a.state_tensors()
    twin = torch_twin(a)
    t_opt = configure_optimizer(twin, TrainConfig())
    torch_loss_and_grads(twin, x, y)
    t_opt.step()
    torch_state = t_opt.state_dict()
    assert opt_a.param_groups()[0]["params"] == torch_state["param_groups"][0]["params"]
    for pid, s in torch_state["state"].items():
        assert state[f"optim.{pid}.exp_avg"].shape == tuple(s["exp_avg"].shape)
    b.load_state(a.params)
    opt_b.load_state(state)
    assert opt_b.t == 1
    for model, opt in ((a, opt_a), (b, opt_b)):
        opt.step(model.forward_backward(x, y)[2])
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    with pytest.raises(
        ValueError, match="no optimizer state for transformer.h.0.attn.c_attn.weight"
    ):
        opt_b.load_state({})


def test_global_norm_is_the_norm_of_everything():
    grads = {"a": np.full((2, 2), 3.0), "b": np.array([4.0, 0.0])}
    assert global_norm(grads) == pytest.approx(np.sqrt(4 * 9 + 16))
