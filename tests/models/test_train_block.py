"""A GPT block as one Function on the C++ kernels (``models/train_block.py``) against the
module path it twins: the same values and every gradient for each shape and bias setting
it takes, and every other block stays on the module path."""

import pytest
import torch

from scratchllm.configs.models import GPTConfig
from scratchllm.models import train_block, train_kernel
from scratchllm.models.layers.block import Block
from scratchllm.models.lora import LoRAConfig, apply_lora


def block(**overrides) -> Block:
    fields = dict(n_layer=1, n_head=2, n_embd=32, block_size=64, vocab_size=11)
    fields.update(overrides)
    torch.manual_seed(3)
    blk = Block(GPTConfig(**fields)).train()
    with torch.no_grad():  # norms and biases away from 1 and 0, so that a lost one shows
        for p in blk.parameters():
            if p.dim() == 1:
                p.add_(0.5 * torch.randn_like(p))
    return blk


def run(blk: Block, x: torch.Tensor, dy: torch.Tensor, kernels: bool):
    train_kernel.enabled = kernels
    try:
        out, _ = blk(x)
        params = [p for p in blk.parameters() if p.requires_grad]
        wrt = ([x] if x.requires_grad else []) + params
        return out, torch.autograd.grad(out, wrt, dy)
    finally:
        train_kernel.enabled = True


@pytest.fixture(autouse=True, params=["cpp", "torch"])
def products(request, monkeypatch):
    """Every test on both matrix products: train_kernel.cpp's gemm and torch.mm."""
    monkeypatch.setattr(train_kernel, "matmul_impl", request.param)
    return request.param


def ran_block(fn) -> bool:
    """Whether ``fn()`` ran a block as one Function: its kernels from Python (``_Block``) or
    in one call (``_CppBlock``, where the products are gemm's)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    names = {e.key for e in prof.key_averages()}
    return bool(names & {"scratchllm::layer_norm_forward", "scratchllm::block_forward"})


def one_call(blk: Block, x: torch.Tensor, dy: torch.Tensor, kernels: bool, cpp_block: bool):
    """``run`` with the block in one C++ call each way or from Python."""
    saved = train_block._CppBlock
    if not cpp_block:
        train_block._CppBlock = train_block._Block
    try:
        return run(blk, x, dy, kernels)
    finally:
        train_block._CppBlock = saved


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "B, T, H, C", [(1, 1, 1, 16), (2, 7, 2, 32), (3, 40, 3, 48), (2, 65, 2, 64)]
)
def test_the_block_function_equals_the_modules_in_values_and_gradients(bias, B, T, H, C):
    blk = block(n_head=H, n_embd=C, bias=bias)
    x = torch.randn(B, T, C, requires_grad=True)
    dy = torch.randn(B, T, C)
    assert train_block.fits(blk, x)
    assert ran_block(lambda: run(blk, x, dy, True))
    out, grads = run(blk, x, dy, True)
    ref, ref_grads = run(blk, x, dy, False)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    names = ["x", *(n for n, _ in blk.named_parameters())]
    assert len(grads) == len(names) == len(ref_grads)
    for name, g, r in zip(names, grads, ref_grads):
        torch.testing.assert_close(g, r, atol=3e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    "B, T, H, C, F", [(1, 1, 1, 16, 64), (3, 40, 3, 48, 96), (2, 33, 2, 64, 80)]
)
def test_the_block_in_one_call_is_the_python_sequence_bit_for_bit(products, bias, B, T, H, C, F):
    """Where the products are gemm's, the block runs as one C++ call each way: the same
    kernels and products in the same order as ``_Block`` calls them from Python."""
    blk = block(n_head=H, n_embd=C, bias=bias, ffn_hidden=F)
    x = torch.randn(B, T, C, requires_grad=True)
    dy = torch.randn(B, T, C)

    def profiled(cpp_block: bool) -> set[str]:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            one_call(blk, x, dy, True, cpp_block)
        return {e.key for e in prof.key_averages()}

    in_one = {"scratchllm::block_forward", "scratchllm::block_backward"}
    assert (in_one <= profiled(True)) == (products == "cpp")
    assert not in_one & profiled(False)
    out, grads = one_call(blk, x, dy, True, True)
    ref, ref_grads = one_call(blk, x, dy, True, False)
    assert torch.equal(out, ref)
    assert len(grads) == len(ref_grads) == 1 + len(list(blk.parameters()))
    for name, g, r in zip(["x", *(n for n, _ in blk.named_parameters())], grads, ref_grads):
        assert torch.equal(g, r), name
    mod, mod_grads = run(blk, x, dy, False)
    torch.testing.assert_close(out, mod, atol=1e-5, rtol=1e-5)
    for g, r in zip(grads, mod_grads):
        torch.testing.assert_close(g, r, atol=3e-5, rtol=1e-4)


def test_a_width_not_a_multiple_of_16_runs_the_python_sequence(products):
    blk = block(n_head=2, n_embd=32, ffn_hidden=40)
    x = torch.randn(2, 9, 32, requires_grad=True)
    dy = torch.randn(2, 9, 32)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        out, grads = run(blk, x, dy, True)
    names = {e.key for e in prof.key_averages()}
    assert "scratchllm::layer_norm_forward" in names and "scratchllm::block_forward" not in names
    ref, ref_grads = run(blk, x, dy, False)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=3e-5, rtol=1e-4)


def test_against_float64_it_is_as_close_as_pytorchs_float32_path():
    blk = block(n_head=2, n_embd=64)
    x = torch.randn(2, 50, 64, requires_grad=True)
    dy = torch.randn(2, 50, 64)
    out, grads = run(blk, x, dy, True)
    ref32, ref32_grads = run(blk, x, dy, False)
    blk64 = block(n_head=2, n_embd=64).double()
    x64 = x.detach().double().requires_grad_()
    ref, ref_grads = run(blk64, x64, dy.double(), False)
    err = (out.double() - ref).abs().max()
    err32 = (ref32.double() - ref).abs().max()
    assert err <= 3 * err32 + 1e-7
    for g, g32, r in zip(grads, ref32_grads, ref_grads):
        assert (g.double() - r).abs().max() <= 3 * (g32.double() - r).abs().max() + 1e-7


def test_frozen_parameters_and_an_input_without_gradient():
    blk = block()
    blk.ln_1.requires_grad_(False)
    blk.attn.c_attn.bias.requires_grad_(False)
    blk.mlp.c_fc.weight.requires_grad_(False)
    x = torch.randn(2, 9, 32)  # the first block under frozen embeddings
    dy = torch.randn(2, 9, 32)
    assert train_block.fits(blk, x)
    out, grads = run(blk, x, dy, True)
    ref, ref_grads = run(blk, x, dy, False)
    assert len(grads) == sum(p.requires_grad for p in blk.parameters())
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=3e-5, rtol=1e-4)
    blk.requires_grad_(False)
    assert not train_block.fits(blk, x)  # nothing wants a gradient


def test_the_layer_norm_sums_are_bitwise_the_same_on_any_thread_count():
    torch.manual_seed(0)
    lib = train_kernel.library.load()
    rows, C = 185, 48  # blocks of 32 rows and a remainder
    x, dy, dres = torch.randn(rows, C), torch.randn(rows, C), torch.randn(rows, C)
    gamma, beta = torch.randn(C), torch.randn(C)
    threads = torch.get_num_threads()
    runs = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            y, mean, rstd = torch.empty(rows, C), torch.empty(rows), torch.empty(rows)
            lib.layer_norm_forward(
                x.data_ptr(), None, None, gamma.data_ptr(), beta.data_ptr(),
                y.data_ptr(), mean.data_ptr(), rstd.data_ptr(), rows, C, 1e-5, n,
            )  # fmt: skip
            dx, sums = torch.empty(rows, C), torch.empty(3, C)
            work = torch.empty(lib.layer_norm_work_floats(rows, C))
            lib.layer_norm_backward(
                dy.data_ptr(), x.data_ptr(), mean.data_ptr(), rstd.data_ptr(), gamma.data_ptr(),
                dres.data_ptr(), dx.data_ptr(), sums[0].data_ptr(), sums[1].data_ptr(),
                sums[2].data_ptr(), work.data_ptr(), rows, C, n,
            )  # fmt: skip
            runs.append((y, dx, sums))
    finally:
        torch.set_num_threads(threads)
    ref = x.clone().requires_grad_()
    g, b = gamma.clone().requires_grad_(), beta.clone().requires_grad_()
    y_ref = torch.nn.functional.layer_norm(ref, (C,), g, b, 1e-5)
    dx_ref, dg_ref, db_ref = torch.autograd.grad(y_ref, [ref, g, b], dy)
    y, dx, sums = runs[0]
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dx, dx_ref + dres, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sums[0], dg_ref, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(sums[1], db_ref, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(sums[2], dx.sum(0), atol=1e-4, rtol=1e-5)
    for run_ in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(run_, runs[0]))


def hooked(blk: Block) -> Block:
    blk.ln_2.register_forward_hook(lambda *args: None)
    return blk


@pytest.mark.parametrize(
    "case, make, kwargs",
    [
        ("RMSNorm", lambda: block(norm="rmsnorm"), {}),
        ("ReLU", lambda: block(act="relu"), {}),
        ("tanh GELU", lambda: block(act="gelu_tanh"), {}),
        ("a mixture of experts", lambda: block(ffn="moe", n_expert=2), {}),
        ("dropout", lambda: block(dropout=0.1), {}),
        ("a head of 24", lambda: block(n_embd=48), {}),
        ("LoRA", lambda: apply_lora(block(), LoRAConfig(r=2, targets=("c_fc",))), {}),
        ("a hook on ln_2", lambda: hooked(block()), {}),
        ("a mask", block, {"mask": torch.ones(1, 1, 9, 9, dtype=torch.bool).tril()}),
        ("not causal", block, {"is_causal": False}),
        ("float64", lambda: block().double(), {}),
        ("autocast", block, {}),
        ("no gradient", block, {}),
        ("disabled", block, {}),
    ],
)
def test_every_other_block_stays_on_the_module_path(case, make, kwargs):
    blk = make()
    dtype = torch.float64 if case == "float64" else torch.float32
    x = torch.randn(2, 9, blk.ln_1.weight.shape[0], dtype=dtype, requires_grad=True)

    def step():
        if case == "no gradient":
            with torch.no_grad():
                blk(x, **kwargs)
            return
        enabled = train_kernel.enabled
        train_kernel.enabled = case != "disabled"
        try:
            if case == "autocast":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = blk(x, **kwargs)[0]
            else:
                out = blk(x, **kwargs)[0]
            out.float().sum().backward()
        finally:
            train_kernel.enabled = enabled

    assert not ran_block(step), case
    assert train_block.fits(block(), torch.randn(2, 9, 32, requires_grad=True))  # the control


@pytest.mark.parametrize("kind", [dict(norm="rmsnorm"), dict(ffn="moe", n_expert=2)])
def test_a_block_that_does_not_fit_keeps_the_kernels_of_its_parts(kind):
    blk = block(**kind)
    x = torch.randn(2, 9, 32, requires_grad=True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        blk(x)[0].sum().backward()
    ran = {e.key for e in prof.key_averages() if e.key.startswith("scratchllm::")}
    assert ran - {"scratchllm::matmul", "scratchllm::transpose_matrix"} == {
        "scratchllm::attention_forward", "scratchllm::attention_backward",
        "scratchllm::gelu_forward", "scratchllm::gelu_backward",
    }  # fmt: skip
