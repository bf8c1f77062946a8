"""The C++ training kernels (``models/train_kernel.cpp``) against PyTorch: causal attention
and the exact GELU equal SDPA's and ``F.gelu``'s values and gradients, for every shape the
kernel takes; a GPT trains on them exactly where they apply and on PyTorch's path
everywhere else; and when the library cannot be built, training falls back with one
warning."""

import warnings

import pytest
import torch
import torch.nn.functional as F

from scratchllm.models import GPT, GPTConfig, train_kernel


def sdpa_attention(qkv: torch.Tensor, n_head: int) -> torch.Tensor:
    B, T, C3 = qkv.shape
    C = C3 // 3
    q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in qkv.split(C, dim=2))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return y.transpose(1, 2).reshape(B, T, C)


def kernel_events(fn) -> set[str]:
    """The names of the kernel's profiler ranges that ``fn()`` ran."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages() if e.key.startswith("scratchllm::")}


def test_the_kernel_builds_on_this_machine():
    assert train_kernel.library.load() is not None, train_kernel.library.failed


@pytest.mark.parametrize(
    "B, T, H, D",
    [(1, 1, 1, 16), (2, 5, 3, 16), (2, 16, 2, 32), (3, 40, 2, 32), (1, 17, 1, 64),
     (2, 64, 4, 32), (2, 100, 3, 48), (1, 130, 2, 64)],
)  # fmt: skip
def test_attention_equals_sdpa_in_values_and_gradients(B, T, H, D):
    torch.manual_seed(B * 1000 + T)
    qkv = (2.0 * torch.randn(B, T, 3 * H * D)).requires_grad_()  # scores far from uniform
    dy = torch.randn(B, T, H * D)
    y = train_kernel.causal_attention(qkv, H)
    (grad,) = torch.autograd.grad(y, qkv, dy)
    ref = qkv.detach().double().requires_grad_()
    y_ref = sdpa_attention(ref, H)
    (grad_ref,) = torch.autograd.grad(y_ref, ref, dy.double())
    y_sdpa = sdpa_attention(qkv, H)
    (grad_sdpa,) = torch.autograd.grad(y_sdpa, qkv, dy)
    # against float64 the kernel is as close as PyTorch's own float32 path
    torch.testing.assert_close(y.double(), y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad.double(), grad_ref, atol=3e-5, rtol=1e-5)
    torch.testing.assert_close(y, y_sdpa, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(grad, grad_sdpa, atol=3e-5, rtol=1e-5)


def test_attention_is_bitwise_the_same_on_any_thread_count_and_for_a_row_alone():
    torch.manual_seed(0)
    qkv = torch.randn(4, 37, 3 * 96, requires_grad=True)
    dy = torch.randn(4, 37, 96)
    threads = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            y = train_kernel.causal_attention(qkv, 3)
            outs.append((y, *torch.autograd.grad(y, qkv, dy)))
    finally:
        torch.set_num_threads(threads)
    alone = train_kernel.causal_attention(qkv[2:3], 3)
    for y, g in outs[1:]:
        assert torch.equal(y, outs[0][0]) and torch.equal(g, outs[0][1])
    assert torch.equal(alone, outs[0][0][2:3])


def test_attention_refuses_shapes_it_does_not_take():
    with pytest.raises(ValueError, match="D a multiple of 16"):
        train_kernel.causal_attention(torch.randn(1, 4, 3 * 24, requires_grad=True), 2)
    with pytest.raises(ValueError, match=f"T <= {train_kernel.MAX_T}"):
        train_kernel.causal_attention(
            torch.randn(1, train_kernel.MAX_T + 1, 3 * 16, requires_grad=True), 1
        )
    with pytest.raises(ValueError, match="32 MB"):  # 2 * 33 heads * 512^2 * 4 bytes > 32 MB
        train_kernel.causal_attention(torch.randn(2, 512, 3 * 33 * 16), 33)
    with pytest.raises(ValueError, match="must be \\[B, T, 3 \\* n_head \\* D\\]"):
        train_kernel.causal_attention(torch.randn(2, 5, 100), 3)
    assert train_kernel.attention_fits(8, 256, 12, 64)  # GPT-2's heads at T 256: 25 MB


def test_gelu_equals_torch_in_values_and_gradients():
    x = torch.cat([torch.linspace(-12, 12, 4001), torch.tensor([0.0, -0.0, 50.0, -50.0])])
    x = torch.cat([x, 3 * torch.randn(100_000)]).requires_grad_()
    dy = torch.randn_like(x)
    y = train_kernel.gelu(x)
    (grad,) = torch.autograd.grad(y, x, dy)
    y_ref = F.gelu(x)
    (grad_ref,) = torch.autograd.grad(y_ref, x, dy)
    torch.testing.assert_close(y, y_ref, atol=2e-6, rtol=1e-6)
    torch.testing.assert_close(grad, grad_ref, atol=2e-6, rtol=1e-6)


def gpt(**overrides) -> GPT:
    fields = dict(n_layer=2, n_head=2, n_embd=64, block_size=48, vocab_size=37)
    fields.update(overrides)
    torch.manual_seed(1)
    return GPT(GPTConfig(**fields))


def loss_and_grads(model: GPT, idx: torch.Tensor, **kwargs):
    model.zero_grad()
    _, loss = model(idx[:, :-1], idx[:, 1:], **kwargs)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def pytorch_path(model: GPT, idx: torch.Tensor, **kwargs):
    train_kernel.enabled = False
    try:
        return loss_and_grads(model, idx, **kwargs)
    finally:
        train_kernel.enabled = True


def test_a_gpt_trains_on_the_kernels_with_pytorchs_loss_and_gradients():
    model = gpt().train()
    idx = torch.randint(0, 37, (3, 41))
    ran = kernel_events(lambda: loss_and_grads(model, idx))
    assert ran == {
        "scratchllm::attention_forward", "scratchllm::attention_backward",
        "scratchllm::gelu_backward",
    }  # fmt: skip
    loss, grads = loss_and_grads(model, idx)
    ref_loss, ref_grads = pytorch_path(model, idx)
    torch.testing.assert_close(loss, ref_loss, atol=1e-6, rtol=1e-6)
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], atol=1e-6, rtol=1e-4, msg=name)


@pytest.mark.parametrize(
    "case, overrides, expected",
    [
        ("rope positions", dict(pos="rope"), {"gelu"}),
        ("dropout on the weights", dict(dropout=0.1), {"gelu"}),
        ("a head of 24", dict(n_embd=48), {"gelu"}),
        ("longer than MAX_T", dict(block_size=train_kernel.MAX_T + 2), {"gelu"}),
        ("tanh GELU", dict(act="gelu_tanh"), {"attention"}),
        ("relu", dict(act="relu"), {"attention"}),
        ("padding mask", dict(), {"gelu"}),
        ("float64", dict(), set()),
        ("disabled", dict(), set()),
        ("no gradient", dict(), set()),
    ],
)
def test_everything_else_stays_on_pytorchs_path(case, overrides, expected):
    model = gpt(**overrides).train()
    length = train_kernel.MAX_T + 2 if case == "longer than MAX_T" else 30
    idx = torch.randint(0, 37, (2, length))  # T is one less: MAX_T + 1
    kwargs = {}
    if case == "padding mask":
        kwargs["attention_mask"] = torch.ones(2, 29, dtype=torch.bool)
        kwargs["attention_mask"][0, :3] = False
    if case == "float64":
        model.double()

    def step():
        if case == "no gradient":
            with torch.no_grad():
                model(idx[:, :-1], idx[:, 1:])
        elif case == "disabled":
            pytorch_path(model, idx)
        else:
            loss_and_grads(model, idx, **kwargs)

    ran = kernel_events(step)
    assert {name.split("::")[1].split("_")[0] for name in ran} == expected, ran


def test_a_failed_build_warns_once_and_training_falls_back(monkeypatch, tmp_path):
    model = gpt().train()
    idx = torch.randint(0, 37, (2, 30))
    ref_loss, ref_grads = pytorch_path(model, idx)
    monkeypatch.setattr(train_kernel.library, "lib", None)
    monkeypatch.setattr(train_kernel.library, "failed", None)
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.warns(RuntimeWarning, match="C\\+\\+ training kernel is unavailable .*no-such"):
        loss, grads = loss_and_grads(model, idx)
    assert loss == ref_loss and all(torch.equal(g, ref_grads[n]) for n, g in grads.items())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once
        assert kernel_events(lambda: loss_and_grads(model, idx)) == set()
    with pytest.raises(RuntimeError, match="training kernel is unavailable: .*no-such"):
        train_kernel.gelu(torch.randn(3, requires_grad=True))
