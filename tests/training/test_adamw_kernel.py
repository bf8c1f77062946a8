"""Our ``AdamW`` (``training/optimizer.py``, one C++ call per group: ``adamw_kernel.cpp``)
against ``torch.optim.AdamW(fused=True)``: the same bits in every parameter and moment over
many steps, for either lerp branch, with and without decay, on arrays of every length
(whole vectors, tails, several chunks) and any thread count; the same state_dict, which
either optimizer resumes; its hooks once a step; and PyTorch's own step wherever the kernel
does not apply, including when it cannot be built."""

import copy
import warnings

import pytest
import torch

from scratchllm.models import GPT, GPTConfig, train_kernel
from scratchllm.training import TrainConfig, configure_optimizer
from scratchllm.training import optimizer as optimizer_module
from scratchllm.training.optimizer import AdamW

# lengths: whole vectors, a 7-float array, a tail after whole vectors, three chunks of the
# kernel's 16384 floats and a tail
SHAPES = [(64, 48), (48,), (7,), (33, 5), (3, 16391)]


def params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g)) for s in SHAPES]


def groups(ps: list[torch.nn.Parameter], wd: float) -> list[dict]:
    return [
        {"params": [p for p in ps if p.dim() == 2], "weight_decay": wd},
        {"params": [p for p in ps if p.dim() == 1], "weight_decay": 0.0},
    ]


def kernel_ran(opt: torch.optim.Optimizer) -> bool:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        opt.step()
    return any(e.key == "scratchllm::adamw_update" for e in prof.key_averages())


def run(make, steps: int, betas=(0.9, 0.99), wd=0.1, seed=0, **kwargs):
    """``steps`` updates of ``make(groups, ...)`` on the same gradients and learning rates
    (a decay over 50 steps, set as the Trainer sets it); returns the parameters and the
    optimizer."""
    ps = params(seed)  # fused=True for ours too: configure_optimizer's fallback, in its state_dict
    opt = make(groups(ps, wd), lr=3e-3, betas=betas, eps=1e-8, fused=True, **kwargs)
    g = torch.Generator().manual_seed(seed + 1)
    for t in range(steps):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=g) * 10 ** (t % 3 - 2)
        for group in opt.param_groups:
            group["lr"] = 3e-3 * (1 - t / 50)
        opt.step()
    return ps, opt


def assert_same_bits(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.view(torch.int32), y.view(torch.int32))


def assert_same_updates(a: list[torch.Tensor], b: list[torch.Tensor], steps: int) -> None:
    """The same bits on every whole vector of 16 floats; an array's last numel % 16 (PyTorch's
    scalar tail, which its compiler rounds its own way) within an ulp a step."""
    for x, y in zip(a, b, strict=True):
        x, y = x.detach().reshape(-1), y.detach().reshape(-1)
        whole = x.numel() // 16 * 16
        assert_same_bits([x[:whole]], [y[:whole]])
        torch.testing.assert_close(x[whole:], y[whole:], rtol=steps * 1.2e-7, atol=1e-12)


def assert_same_state(opt_a, opt_b, ps_a, ps_b) -> None:
    for p, q in zip(ps_a, ps_b, strict=True):
        sa, sb = opt_a.state[p], opt_b.state[q]
        assert sa.keys() == sb.keys() == {"step", "exp_avg", "exp_avg_sq"}
        assert sa["step"].dtype == sb["step"].dtype == torch.float32
        assert float(sa["step"]) == float(sb["step"])
        assert_same_bits([sa["exp_avg"], sa["exp_avg_sq"]], [sb["exp_avg"], sb["exp_avg_sq"]])


@pytest.mark.parametrize("betas", [(0.9, 0.99), (0.3, 0.95)], ids=["lerp-from-m", "lerp-from-g"])
@pytest.mark.parametrize("wd", [0.1, 0.0])
def test_every_bit_equals_pytorchs_fused_adamw(betas, wd):
    ours, ours_opt = run(AdamW, 25, betas, wd)
    ref, ref_opt = run(torch.optim.AdamW, 25, betas, wd)
    assert kernel_ran(ours_opt) and not kernel_ran(ref_opt)  # (one more step each)
    assert_same_updates(ours, ref, 26)
    assert_same_state(ours_opt, ref_opt, ours, ref)
    moved = run(AdamW, 0, betas, wd)[0]
    assert all(not torch.equal(a, b) for a, b in zip(ours, moved))  # the steps did move


def test_the_thread_count_changes_nothing():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run(AdamW, 5)[0]
    finally:
        torch.set_num_threads(threads)
    assert_same_bits(one, run(AdamW, 5)[0])


def test_either_optimizer_resumes_the_others_state_dict():
    ours, ours_opt = run(AdamW, 4)
    straight = run(AdamW, 8)[0]
    for make in (AdamW, torch.optim.AdamW):
        ps = [torch.nn.Parameter(p.detach().clone()) for p in ours]
        opt = make(groups(ps, 0.1), lr=3e-3, betas=(0.9, 0.99), eps=1e-8, fused=True)
        opt.load_state_dict(copy.deepcopy(ours_opt.state_dict()))  # (loading shares tensors)
        g = torch.Generator().manual_seed(1)
        for t in range(8):  # the same gradients and rates as run()'s
            grads = [torch.randn(p.shape, generator=g) * 10 ** (t % 3 - 2) for p in ps]
            if t < 4:
                continue
            for p, grad in zip(ps, grads):
                p.grad = grad
            for group in opt.param_groups:
                group["lr"] = 3e-3 * (1 - t / 50)
            opt.step()
        assert_same_updates(ps, straight, 4)


def test_hooks_run_once_a_step_on_either_path(monkeypatch):
    ps = params()
    opt = AdamW(groups(ps, 0.1), lr=1e-3, fused=True)
    calls = []
    opt.register_step_pre_hook(lambda *a: calls.append("pre"))
    opt.register_step_post_hook(lambda *a: calls.append("post"))
    for p in ps:
        p.grad = torch.ones_like(p)
    assert kernel_ran(opt)
    monkeypatch.setattr(train_kernel, "enabled", False)
    assert not kernel_ran(opt)
    assert calls == ["pre", "post", "pre", "post"]


def test_a_closure_is_evaluated_once_and_its_loss_returned():
    p = torch.nn.Parameter(torch.ones(16))
    opt, calls = AdamW([p], lr=0.1), []

    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    assert opt.step(closure).detach().item() == 16.0 and calls == [1]
    assert torch.all(p < 1)


@pytest.mark.parametrize(
    "case",
    ["amsgrad", "maximize", "float64", "tensor lr", "transposed", "kernels off"],
)
def test_pytorchs_step_runs_where_the_kernel_does_not_apply(case, monkeypatch):
    kwargs = {"amsgrad": True} if case == "amsgrad" else {}
    kwargs |= {"maximize": True} if case == "maximize" else {}
    if case == "kernels off":
        monkeypatch.setattr(train_kernel, "enabled", False)

    def make(fused: bool):
        ps = params()
        if case == "float64":
            ps = [torch.nn.Parameter(p.detach().double()) for p in ps]
        if case == "transposed":
            ps[0] = torch.nn.Parameter(ps[0].detach().t().contiguous().t())
        lr = torch.tensor(1e-3) if case == "tensor lr" else 1e-3
        opt = (AdamW if not fused else torch.optim.AdamW)(ps, lr=lr, fused=True, **kwargs)
        for p in ps:
            p.grad = torch.full_like(p, 0.5)
        return ps, opt

    (ours, ours_opt), (ref, ref_opt) = make(False), make(True)
    assert not kernel_ran(ours_opt)  # (a transposed matrix among them is enough)
    ref_opt.step()
    assert_same_bits([p.detach().float() for p in ours], [p.detach().float() for p in ref])


def test_a_sparse_gradient_gets_pytorchs_error():
    p = torch.nn.Parameter(torch.ones(4, 16))
    p.grad = torch.ones(4, 16).to_sparse()
    with pytest.raises(RuntimeError, match="sparse"):
        AdamW([p], lr=0.1).step()


def test_without_a_compiler_it_warns_once_and_steps_as_pytorch(tmp_path, monkeypatch):
    broken = tmp_path / "adamw_kernel.cpp"
    broken.write_text("this is not C++\n")
    library = optimizer_module.kernel
    monkeypatch.setattr(
        optimizer_module,
        "kernel",
        type(library)(broken, library.what, library.fallback, library.declare, ("-w",)),
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours, ours_opt = run(AdamW, 3)
    assert sum("AdamW runs PyTorch's kernel" in str(w.message) for w in caught) == 1
    assert_same_bits(ours, run(torch.optim.AdamW, 3)[0])  # PyTorch's own step: every bit
    assert not kernel_ran(ours_opt)


def test_configure_optimizer_gives_ours_and_a_gpt_trains_on_the_kernel():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=8, vocab_size=11))
    opt = configure_optimizer(model, TrainConfig(lr=1e-2, weight_decay=0.1))
    assert isinstance(opt, AdamW) and isinstance(opt, torch.optim.AdamW)
    x = torch.randint(0, 11, (4, 8))
    losses = []
    for _ in range(3):
        opt.zero_grad()
        _, loss = model(x, x.roll(-1, 1))
        loss.backward()
        losses.append(float(loss.detach()))
        assert kernel_ran(opt)
    assert losses[-1] < losses[0]


def test_a_grad_scalers_scale_goes_to_pytorchs_step():
    """A GradScaler hands a fused optimizer its scale as attributes: the step unscales."""
    ours, ref = params(), params()
    ours_opt = AdamW(groups(ours, 0.1), lr=1e-3, fused=True)
    ref_opt = torch.optim.AdamW(groups(ref, 0.1), lr=1e-3, fused=True)
    for ps, opt in ((ours, ours_opt), (ref, ref_opt)):
        for p in ps:
            p.grad = torch.full_like(p, 1024.0)
        opt.grad_scale, opt.found_inf = torch.tensor(1024.0), torch.tensor(0.0)
    assert not kernel_ran(ours_opt)
    ref_opt.step()
    assert_same_bits(ours, ref)
    assert all(torch.all(p.grad == 1.0) for p in ours)  # unscaled in place, as PyTorch does
