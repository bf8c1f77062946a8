"""The C++ training kernels (``models/train_kernel.cpp``) against PyTorch: causal attention
and the exact GELU equal SDPA's and ``F.gelu``'s values and gradients, for every shape the
kernel takes; a GPT trains on them exactly where they apply and on PyTorch's path
everywhere else; and when the library cannot be built, training falls back with one
warning. Every test runs with the kernels' matrix products on ``gemm`` and on
``torch.mm``."""

import warnings
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from scratchllm.models import GPT, GPTConfig, train_kernel
from scratchllm.models.lora import LoRAConfig, apply_lora, lora_layers


def sdpa_attention(qkv: torch.Tensor, n_head: int) -> torch.Tensor:
    B, T, C3 = qkv.shape
    C = C3 // 3
    q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in qkv.split(C, dim=2))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return y.transpose(1, 2).reshape(B, T, C)


@pytest.fixture(autouse=True, params=["cpp", "torch"])
def products(request, monkeypatch):
    """Every test on both matrix products: train_kernel.cpp's gemm and torch.mm."""
    monkeypatch.setattr(train_kernel, "matmul_impl", request.param)
    return request.param


def kernel_events(fn) -> set[str]:
    """The names of the kernel's profiler ranges that ``fn()`` ran, but the products and
    their weights' transposes (``scratchllm::matmul``, ``scratchllm::transpose_matrix``,
    checked in test_train_products.py)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    names = {e.key for e in prof.key_averages() if e.key.startswith("scratchllm::")}
    return names - {"scratchllm::matmul", "scratchllm::transpose_matrix"}


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


def linear(n_in: int, n_out: int, bias: bool) -> torch.nn.Linear:
    layer = torch.nn.Linear(n_in, n_out, bias=bias)
    if bias:
        torch.nn.init.normal_(layer.bias)  # large enough that a lost bias shows
    return layer


def grads_of(out: torch.Tensor, dy: torch.Tensor, *tensors: torch.Tensor) -> list:
    return list(torch.autograd.grad(out, tensors, dy))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(2, 7, 32), (3, 40, 48), (1, 1, 16)])
def test_the_fused_mlp_equals_pytorchs_in_values_and_gradients(bias, shape):
    torch.manual_seed(len(shape) + shape[1])
    C = shape[-1]
    c_fc, c_proj = linear(C, 4 * C, bias), linear(4 * C, C, bias)
    x = torch.randn(shape, requires_grad=True)
    dy = torch.randn(shape)
    params = [x, *c_fc.parameters(), *c_proj.parameters()]
    assert train_kernel.linear_fits(x, c_fc, c_proj)
    out = train_kernel.gelu_mlp(x, c_fc, c_proj)
    grads = grads_of(out, dy, *params)
    ref = c_proj(F.gelu(c_fc(x)))
    ref_grads = grads_of(ref, dy, *params)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=3e-5, rtol=1e-5)
    # and against float64, as close as PyTorch's float32 path
    params64 = [p.detach().double().requires_grad_() for p in params]
    x64, w1, *rest = params64
    b1, w2, b2 = (rest[0], rest[1], rest[2]) if bias else (None, rest[0], None)
    ref64 = F.linear(F.gelu(F.linear(x64, w1, b1)), w2, b2)
    torch.testing.assert_close(out.double(), ref64, atol=1e-5, rtol=1e-5)
    for g, r in zip(grads, grads_of(ref64, dy.double(), *params64)):
        torch.testing.assert_close(g.double(), r, atol=3e-5, rtol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("B, T, H, D", [(2, 5, 3, 16), (3, 40, 2, 32), (1, 70, 1, 64)])
def test_linear_attention_equals_c_attn_then_sdpa(bias, B, T, H, D):
    torch.manual_seed(T)
    C = H * D
    c_attn = linear(C, 3 * C, bias)
    x = torch.randn(B, T, C, requires_grad=True)
    dy = torch.randn(B, T, C)
    params = [x, *c_attn.parameters()]
    out = train_kernel.linear_attention(x, c_attn, H)
    ref = sdpa_attention(c_attn(x), H)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    for g, r in zip(grads_of(out, dy, *params), grads_of(ref, dy, *params)):
        torch.testing.assert_close(g, r, atol=3e-5, rtol=1e-5)


def test_frozen_layers_and_an_input_without_gradient_get_none():
    torch.manual_seed(0)
    c_fc, c_proj, c_attn = linear(32, 128, True), linear(128, 32, True), linear(32, 96, True)
    c_fc.requires_grad_(False)
    c_attn.weight.requires_grad_(False)
    x = torch.randn(2, 9, 32)  # no gradient: the first block's input under frozen embeddings
    assert train_kernel.linear_fits(x, c_fc, c_proj) and train_kernel.linear_fits(x, c_attn)
    dy = torch.randn(2, 9, 32)
    out = train_kernel.gelu_mlp(x, c_fc, c_proj)
    wp, bp = torch.autograd.grad(out, [c_proj.weight, c_proj.bias], dy)
    ref = c_proj(F.gelu(c_fc(x)))
    for g, r in zip((wp, bp), torch.autograd.grad(ref, [c_proj.weight, c_proj.bias], dy)):
        torch.testing.assert_close(g, r, atol=3e-5, rtol=1e-5)
    out = train_kernel.linear_attention(x, c_attn, 2)
    (bias_grad,) = torch.autograd.grad(out, [c_attn.bias], dy)
    (ref,) = torch.autograd.grad(sdpa_attention(c_attn(x), 2), [c_attn.bias], dy)
    torch.testing.assert_close(bias_grad, ref, atol=3e-5, rtol=1e-5)
    with torch.no_grad():
        assert not train_kernel.linear_fits(x, c_attn)
    c_attn.requires_grad_(False)
    assert not train_kernel.linear_fits(x, c_attn)  # nothing wants a gradient


def test_the_bias_sums_are_bitwise_the_same_on_any_thread_count():
    """The kernels sum the bias gradients in a fixed order (blocks of rows, then batches)."""
    torch.manual_seed(0)
    lib = train_kernel.library.load()
    rows, cols = 185, 80  # blocks of 32 rows and a remainder
    dy, slope = torch.randn(rows, cols), torch.rand(rows, cols)
    B, T, H, D = 5, 37, 3, 16
    qkv, dout = torch.randn(B, T, 3 * H * D), torch.randn(B, T, H * D)
    y, weights = train_kernel._attention_forward(qkv, None, H)
    ctx = SimpleNamespace(saved_tensors=(qkv, y, weights), n_head=H)
    threads = torch.get_num_threads()
    runs = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            dh, db = dy.clone(), torch.empty(cols)
            work = torch.empty(lib.slope_work_floats(rows, cols))
            lib.gelu_slope_backward(
                dh.data_ptr(), slope.data_ptr(), db.data_ptr(), work.data_ptr(), rows, cols, n
            )
            runs.append((dh, db, *train_kernel._attention_backward(ctx, dout, True)))
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(runs[0][0], dy * slope, atol=0, rtol=0)
    torch.testing.assert_close(runs[0][1], (dy * slope).sum(0), atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(runs[0][3], runs[0][2].sum((0, 1)), atol=2e-5, rtol=1e-5)
    for run in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(run, runs[0]))


def gpt(**overrides) -> GPT:
    fields = dict(n_layer=2, n_head=2, n_embd=64, block_size=48, vocab_size=37)
    fields.update(overrides)
    torch.manual_seed(1)
    return GPT(GPTConfig(**fields))


def loss_and_grads(model: GPT, idx: torch.Tensor, **kwargs):
    model.zero_grad()
    _, loss = model(idx[:, :-1], idx[:, 1:], **kwargs)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads


def pytorch_path(model: GPT, idx: torch.Tensor, **kwargs):
    train_kernel.enabled = False
    try:
        return loss_and_grads(model, idx, **kwargs)
    finally:
        train_kernel.enabled = True


def assert_trains_as_on_pytorchs_path(model: GPT, idx: torch.Tensor) -> dict:
    """The model's loss and every gradient on the kernels equal PyTorch's path's."""
    loss, grads = loss_and_grads(model, idx)
    ref_loss, ref_grads = pytorch_path(model, idx)
    torch.testing.assert_close(loss, ref_loss, atol=1e-6, rtol=1e-6)
    for name, g in grads.items():
        torch.testing.assert_close(g, ref_grads[name], atol=1e-6, rtol=1e-4, msg=name)
    return grads


# The kernels of a GPT's step besides its blocks' (models/train_ends.py): the embedding,
# ln_f's layer norm and the loss.
ENDS = {
    "scratchllm::embedding_forward", "scratchllm::embedding_backward",
    "scratchllm::layer_norm_forward", "scratchllm::layer_norm_backward",
    "scratchllm::cross_entropy_forward", "scratchllm::cross_entropy_backward",
}  # fmt: skip


def test_a_gpt_trains_on_the_kernels_with_pytorchs_loss_and_gradients(products):
    model = gpt().train()
    idx = torch.randint(0, 37, (3, 41))
    ran = kernel_events(lambda: loss_and_grads(model, idx))
    if products == "cpp":  # the whole model as one Function (train_gpt), each block in one
        # call each way
        blocks = {
            "scratchllm::gpt_forward", "scratchllm::gpt_backward",
            "scratchllm::block_forward", "scratchllm::block_backward",
        }  # fmt: skip
    else:
        blocks = {
            "scratchllm::attention_forward", "scratchllm::attention_backward",
            "scratchllm::gelu_forward", "scratchllm::gelu_backward",
            "scratchllm::layer_norm_forward", "scratchllm::layer_norm_backward",
            "scratchllm::residual_add", "scratchllm::column_sums",
        }  # fmt: skip
    assert ran == blocks | ENDS
    assert_trains_as_on_pytorchs_path(model, idx)


@pytest.mark.parametrize(
    "case, overrides, expected",
    [
        # (the loss's kernels: "layer" for ln_f, "cross" for the cross-entropy; the
        # embedding's where the positions are learned and start at 0 without dropout)
        ("rope positions", dict(pos="rope"), {"gelu", "layer", "cross"}),
        ("dropout on the weights", dict(dropout=0.1), {"gelu", "layer", "cross"}),
        ("a head of 24", dict(n_embd=48), {"gelu", "embedding", "layer", "cross"}),
        (
            "longer than MAX_T",
            dict(block_size=train_kernel.MAX_T + 2),
            {"gelu", "embedding", "layer", "cross"},
        ),
        ("tanh GELU", dict(act="gelu_tanh"), {"attention", "embedding", "layer", "cross"}),
        ("relu", dict(act="relu"), {"attention", "embedding", "layer", "cross"}),
        ("padding mask", dict(), {"gelu", "layer", "cross"}),
        ("float64", dict(), set()),
        ("bfloat16 autocast", dict(), set()),
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
        elif case == "bfloat16 autocast":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss_and_grads(model, idx)
        else:
            loss_and_grads(model, idx, **kwargs)

    ran = kernel_events(step)
    assert {name.split("::")[1].split("_")[0] for name in ran} == expected, ran


def test_lora_layers_keep_the_attention_kernel_and_pytorchs_products():
    """A LoRA layer is not a plain nn.Linear: attention runs the kernel on its output and the
    MLP runs PyTorch's layers around the kernel's GELU backward."""
    model = apply_lora(gpt(), LoRAConfig(r=4, alpha=8, targets=("c_attn", "c_fc"))).train()
    for layer in lora_layers(model).values():
        torch.nn.init.normal_(layer.lora_B.weight)
    idx = torch.randint(0, 37, (2, 30))
    ran = kernel_events(lambda: loss_and_grads(model, idx))
    assert ran == {
        "scratchllm::attention_forward", "scratchllm::attention_backward",
        "scratchllm::gelu_backward",
        # the loss (ln_f's layer norm and the cross-entropy): the frozen embedding wants no
        # gradient, so it stays on PyTorch's path
        "scratchllm::layer_norm_forward", "scratchllm::layer_norm_backward",
        "scratchllm::cross_entropy_forward", "scratchllm::cross_entropy_backward",
    }  # fmt: skip
    grads = assert_trains_as_on_pytorchs_path(model, idx)
    assert len(grads) == 2 * 2 * 2  # A and B on c_attn and c_fc of both blocks; base frozen


def test_a_forward_hook_on_a_layer_sends_it_down_pytorchs_path():
    model = gpt().train()
    seen = []
    for layer in (model.transformer.h[0].attn.c_attn, model.transformer.h[0].mlp.c_fc):
        layer.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    idx = torch.randint(0, 37, (2, 30))
    assert_trains_as_on_pytorchs_path(model, idx)
    assert seen[:2] == [torch.Size([2, 29, 192]), torch.Size([2, 29, 256])]  # hooks ran


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


def clip_inputs(seed: int) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    # chunks of 16384 floats: sizes below, at and across the boundary, and one float
    return [torch.randn(n) for n in (16384, 16385, 1, 128 * 512, 7, 3 * 16384 + 5)]


def torch_clip(grads: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_`` on parameters holding ``grads``, which it clips in place."""
    params = [torch.nn.Parameter(torch.empty_like(g)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g
    return torch.nn.utils.clip_grad_norm_(params, max_norm)


@pytest.mark.parametrize("max_norm", [1.0, 1e6])  # active, inactive
def test_the_clip_equals_clip_grad_norm(max_norm):
    ours, ref = clip_inputs(0), clip_inputs(0)
    norm = train_kernel.clip_grad_norm(ours, max_norm)
    ref_norm = torch_clip(ref, max_norm)
    torch.testing.assert_close(norm, ref_norm, atol=0, rtol=1e-6)
    for a, b, original in zip(ours, ref, clip_inputs(0)):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-6)
        if max_norm > norm:
            assert torch.equal(a, original)  # an inactive clip changes nothing
    assert not torch.equal(ours[0], clip_inputs(0)[0]) or max_norm > norm


def test_the_clip_is_bitwise_the_same_on_any_thread_count_and_passes_nans_on():
    threads = torch.get_num_threads()
    runs = []
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            tensors = clip_inputs(1)
            runs.append((train_kernel.clip_grad_norm(tensors, 1.0), tensors))
    finally:
        torch.set_num_threads(threads)
    for norm, tensors in runs[1:]:
        assert torch.equal(norm, runs[0][0])
        assert all(torch.equal(a, b) for a, b in zip(tensors, runs[0][1]))
    ours, ref = clip_inputs(2), clip_inputs(2)
    ours[1][5] = ref[1][5] = float("nan")
    assert train_kernel.clip_grad_norm(ours, 1.0).isnan()
    assert torch_clip(ref, 1.0).isnan()
    assert all(a.isnan().all() and b.isnan().all() for a, b in zip(ours, ref))  # as PyTorch


def test_the_clip_leaves_what_it_does_not_take_to_pytorch():
    for tensors in (
        [torch.randn(10, dtype=torch.float64)],
        [torch.randn(4, 6).t()],  # not contiguous
        [],
    ):
        before = [t.clone() for t in tensors]
        assert train_kernel.clip_grad_norm(tensors, 1e-3) is None
        assert all(torch.equal(a, b) for a, b in zip(tensors, before))


def test_the_trainers_steps_on_the_kernels_equal_pytorchs_path():
    """Three updates of ``train_step_fn`` (the Trainer's step: clip active, fused AdamW).
    An eps of 1 keeps AdamW's steps proportional to the gradients: with the usual 1e-8 it
    divides a gradient by its own size, and a gradient that is zero in exact arithmetic
    (the keys' bias) steps by the learning rate either way on its rounding alone."""
    from scratchllm.training import TrainConfig, train_step_fn

    cfg = TrainConfig(lr=1e-2, eps=1.0, grad_clip=0.5, warmup_iters=0, device="cpu", progress=False)
    batches = [
        torch.randint(0, 37, (3, 33), generator=torch.Generator().manual_seed(i)) for i in range(3)
    ]
    models = []
    for kernels in (True, False):
        model = gpt()
        step = train_step_fn(model, cfg, "cpu")
        train_kernel.enabled = kernels
        try:
            ran = kernel_events(lambda s=step: [s(b[:, :-1], b[:, 1:]) for b in batches])
        finally:
            train_kernel.enabled = True
        assert bool(ran) == kernels
        models.append(model)
    for (name, p), q in zip(models[0].named_parameters(), models[1].parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
