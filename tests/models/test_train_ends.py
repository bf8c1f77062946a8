"""The two ends of a GPT's training step on the C++ kernels (``models/train_ends.py``)
against PyTorch's path they twin: the embedding (``GPT._embed``) and the loss
(``lm_loss(lm_head(ln_f(x)))``), in values and every gradient, and every model or call
they do not take stays on PyTorch's path."""

import pytest
import torch
from torch import nn

from scratchllm.models import GPT, GPTConfig, train_ends, train_kernel
from scratchllm.models.base import label_smoothing, lm_loss


@pytest.fixture(autouse=True, params=["cpp", "torch"])
def products(request, monkeypatch):
    """Every test on both matrix products: train_kernel.cpp's gemm and torch.mm."""
    monkeypatch.setattr(train_kernel, "matmul_impl", request.param)
    return request.param


def gpt(**overrides) -> GPT:
    fields = dict(n_layer=1, n_head=2, n_embd=32, block_size=40, vocab_size=37)
    fields.update(overrides)
    torch.manual_seed(5)
    model = GPT(GPTConfig(**fields)).train()
    with torch.no_grad():  # gains and biases away from 1 and 0, so that a lost one shows
        for p in model.transformer.ln_f.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return model


def ran(fn) -> set[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages() if e.key.startswith("scratchllm::")}


# -- the embedding ---------------------------------------------------------------------


def embedding_and_grads(model: GPT, idx: torch.Tensor, dy: torch.Tensor, kernels: bool):
    train_kernel.enabled = kernels
    try:
        T = idx.shape[1]
        if kernels:
            assert train_ends.embed_fits(model, idx, slice(0, T))
            x = train_ends.embed(model, idx)
        else:
            x = model._embed(idx, slice(0, T))
        tables = [model.transformer.wte.weight, model.transformer.wpe.weight]
        return x, torch.autograd.grad(x, tables, dy)
    finally:
        train_kernel.enabled = True


@pytest.mark.parametrize("B, T, C", [(1, 1, 16), (3, 17, 32), (2, 40, 24)])
def test_the_embedding_equals_pytorchs_in_values_and_gradients(B, T, C):
    model = gpt(n_embd=C, n_head=1)
    idx = torch.randint(0, 37, (B, T))
    idx[0, 0] = idx[-1, -1]  # a repeated id sums two rows
    dy = torch.randn(B, T, C)
    x, grads = embedding_and_grads(model, idx, dy, True)
    ref, ref_grads = embedding_and_grads(model, idx, dy, False)
    assert torch.equal(x, ref)  # the same gather and the same float32 add
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-6, rtol=1e-5)
    assert torch.all(grads[1][T:] == 0)  # positions past T get nothing


def test_the_embeddings_gradients_are_bitwise_the_same_on_any_thread_count():
    model = gpt()
    idx = torch.randint(0, 37, (4, 33))
    dy = torch.randn(4, 33, 32)
    threads = torch.get_num_threads()
    runs = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            runs.append(embedding_and_grads(model, idx, dy, True)[1])
    finally:
        torch.set_num_threads(threads)
    for grads in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(grads, runs[0]))


def test_a_token_id_outside_the_table_is_named():
    model = gpt()
    idx = torch.randint(0, 37, (2, 9))
    idx[1, 4] = 37
    with pytest.raises(IndexError, match=r"token id 37 at row 1, position 4 .* 37 rows"):
        model(idx, idx)
    idx[1, 4] = -2
    with pytest.raises(IndexError, match=r"token id -2 at row 1, position 4"):
        model(idx, idx)


# -- the head and its loss -------------------------------------------------------------


def loss_and_grads(model: GPT, x, targets, mask=None, *, kernels: bool, logit_weight=0.0):
    """The loss, the logits, and the gradients of ``loss + logit_weight * sum(logits^2)``
    with respect to x, ln_f and the head (which is the token table: tied)."""
    train_kernel.enabled = kernels
    try:
        if kernels:
            assert train_ends.head_fits(model, x, targets, mask)
            logits, loss = train_ends.head_loss(model, x, targets, mask)
        else:
            logits = model.lm_head(model.transformer.ln_f(x))
            loss = lm_loss(logits, targets, mask)
        wrt = [x, *model.transformer.ln_f.parameters(), model.lm_head.weight]
        total = loss + logit_weight * logits.square().sum() if logit_weight else loss
        return loss, logits, torch.autograd.grad(total, wrt)
    finally:
        train_kernel.enabled = True


def assert_matches(model, x, targets, mask=None, **kwargs):
    loss, logits, grads = loss_and_grads(model, x, targets, mask, kernels=True, **kwargs)
    ref, ref_logits, ref_grads = loss_and_grads(model, x, targets, mask, kernels=False, **kwargs)
    torch.testing.assert_close(loss, ref, atol=1e-6, rtol=1e-6, equal_nan=True)
    assert logits.shape == ref_logits.shape and logits.is_contiguous()
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=1e-5)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, atol=1e-6, rtol=1e-5)
    return loss


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("B, T, V", [(1, 1, 5), (3, 17, 37), (2, 40, 64), (2, 9, 65)])
def test_the_loss_equals_pytorchs_in_values_and_gradients(bias, B, T, V):
    model = gpt(vocab_size=V, bias=bias)
    x = torch.randn(B, T, 32, requires_grad=True)
    targets = torch.randint(0, V, (B, T))
    targets[0, 0] = -1  # left out, as lm_loss leaves out ignore_index
    assert_matches(model, x, targets)


def test_a_loss_mask_and_a_gradient_that_reaches_the_logits():
    model = gpt()
    x = torch.randn(3, 11, 32, requires_grad=True)
    targets = torch.randint(0, 37, (3, 11))
    mask = torch.rand(3, 11) > 0.4
    assert_matches(model, x, targets, mask)
    assert_matches(model, x, targets, mask, logit_weight=1e-3)


def test_only_the_logits_used_and_no_target_counted():
    model = gpt()
    x = torch.randn(2, 7, 32, requires_grad=True)
    targets = torch.randint(0, 37, (2, 7))
    train_kernel.enabled = True
    logits, _ = train_ends.head_loss(model, x, targets, None)
    (dx,) = torch.autograd.grad(logits.sum(), [x])  # the loss's gradient never arrives
    ref = model.lm_head(model.transformer.ln_f(x))
    torch.testing.assert_close(dx, torch.autograd.grad(ref.sum(), [x])[0], atol=1e-5, rtol=1e-5)
    none = torch.full((2, 7), -1)
    loss = assert_matches(model, x, none)  # PyTorch: a NaN loss and zero gradients
    assert loss.isnan()


def test_a_target_outside_the_vocabulary_is_named():
    model = gpt()
    idx = torch.randint(0, 37, (2, 9))
    targets = idx.clone()
    targets[0, 5] = 40
    with pytest.raises(IndexError, match=r"target 40 at row 0, position 5 .*\(0 \.\. 36"):
        model(idx, targets)


def test_a_gpt_step_runs_both_ends_on_the_kernels():
    model = gpt()
    idx = torch.randint(0, 37, (2, 12))
    names = ran(lambda: model(idx[:, :-1], idx[:, 1:])[1].backward())
    ends = {"embedding_forward", "embedding_backward", "cross_entropy_forward"}
    assert {f"scratchllm::{n}" for n in (*ends, "cross_entropy_backward")} <= names


def lm_head_with_bias(model: GPT) -> GPT:
    model.lm_head = nn.Linear(32, 37)
    return model


def hooked(module: nn.Module, model: GPT) -> GPT:
    module.register_forward_hook(lambda *args: None)
    return model


@pytest.mark.parametrize(
    "case, make, embedding, loss",
    [  # whether each end runs on the kernels
        ("the defaults", gpt, True, True),
        ("rope positions", lambda: gpt(pos="rope"), False, True),
        ("sinusoidal positions", lambda: gpt(pos="sinusoidal"), False, True),
        ("dropout", lambda: gpt(dropout=0.1), False, True),
        ("RMSNorm", lambda: gpt(norm="rmsnorm"), True, False),
        ("a head with a bias", lambda: lm_head_with_bias(gpt()), True, False),
        ("a hook on the head", lambda: (m := gpt()) and hooked(m.lm_head, m), True, False),
        ("a hook on wte", lambda: (m := gpt()) and hooked(m.transformer.wte, m), False, True),
        ("label smoothing", gpt, True, False),
        ("padding mask", gpt, False, True),
        ("float64", lambda: gpt().double(), False, False),
        ("autocast", gpt, False, False),
        ("no gradient", gpt, False, False),
        ("disabled", gpt, False, False),
    ],
)
def test_each_end_runs_where_it_fits_and_pytorchs_path_elsewhere(case, make, embedding, loss):
    model = make()
    idx = torch.randint(0, 37, (2, 12))
    x, y = idx[:, :-1], idx[:, 1:]

    def step():
        kwargs = {}
        if case == "padding mask":
            kwargs["attention_mask"] = torch.ones(2, 11, dtype=torch.bool)
            kwargs["attention_mask"][0, :2] = False
        if case == "no gradient":
            with torch.no_grad():
                model(x, y)
            return
        train_kernel.enabled = case != "disabled"
        try:
            if case == "label smoothing":
                with label_smoothing(0.1):
                    out = model(x, y)[1]
            elif case == "autocast":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = model(x, y)[1]
            else:
                out = model(x, y, **kwargs)[1]
            out.backward()
        finally:
            train_kernel.enabled = True

    names = ran(step)
    assert ("scratchllm::embedding_forward" in names) == embedding, case
    assert ("scratchllm::cross_entropy_forward" in names) == loss, case
