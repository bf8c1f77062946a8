"""A whole GPT's training forward and backward as one Function (``models/train_gpt.py``):
bit for bit the parts it runs in one go (the embedding and loss Functions of
``train_ends.py``, each block's one C++ call), through them PyTorch's path to float32
rounding, and every model or call it does not take left to the parts."""

import pytest
import torch

from scratchllm.models import GPT, GPTConfig, train_gpt, train_kernel


@pytest.fixture(autouse=True)
def cpp(monkeypatch):
    """The one Function needs the kernels' own products (``train_kernel.products()``)."""
    monkeypatch.setattr(train_kernel, "matmul_impl", "cpp")


def gpt(**overrides) -> GPT:
    fields = dict(n_layer=2, n_head=2, n_embd=32, block_size=40, vocab_size=37)
    fields.update(overrides)
    torch.manual_seed(7)
    model = GPT(GPTConfig(**fields)).train()
    with torch.no_grad():  # gains and biases away from 1 and 0, so that a lost one shows
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.5 * torch.randn_like(p))
    return model


def step(model: GPT, idx, targets, mask=None, *, whole: bool, logit_weight=0.0):
    """The loss, the logits and every parameter's gradient, with the model as one Function
    or as its parts (``whole=False``: ``train_gpt.run`` declines)."""
    run = train_gpt.run
    if not whole:
        train_gpt.run = lambda *args: None
    try:
        model.zero_grad(set_to_none=True)
        logits, loss = model(idx, targets, mask)
        (loss + logit_weight * logits.square().sum() if logit_weight else loss).backward()
    finally:
        train_gpt.run = run
    return loss.detach(), logits.detach(), {n: p.grad for n, p in model.named_parameters()}


def ran(fn) -> set[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages() if e.key.startswith("scratchllm::")}


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        dict(bias=False),
        dict(n_layer=3, n_head=4, n_embd=64, ffn_hidden=80),
        dict(n_layer=1, n_head=1, n_embd=16, vocab_size=65),
        dict(tie_weights=False),
    ],
)
def test_the_one_function_is_its_parts_bit_for_bit(overrides):
    model = gpt(**overrides)
    V = model.config.vocab_size
    idx, targets = torch.randint(0, V, (3, 17)), torch.randint(0, V, (3, 17))
    targets[1, 4] = -1
    assert train_gpt.fits(model, idx, targets, None, slice(0, 17))
    loss, logits, grads = step(model, idx, targets, whole=True, logit_weight=1e-3)
    ref, ref_logits, ref_grads = step(model, idx, targets, whole=False, logit_weight=1e-3)
    assert torch.equal(loss, ref) and torch.equal(logits, ref_logits)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        assert torch.equal(grads[name], ref_grads[name]), name
    train_kernel.enabled = False  # PyTorch's path
    try:
        torch_loss, _, torch_grads = step(model, idx, targets, whole=False, logit_weight=1e-3)
    finally:
        train_kernel.enabled = True
    torch.testing.assert_close(loss, torch_loss, atol=1e-6, rtol=1e-6)
    for name in grads:
        torch.testing.assert_close(grads[name], torch_grads[name], atol=1e-5, rtol=1e-4)


def test_a_loss_mask_and_gradient_accumulation():
    """Two backwards into the same gradients (micro-batches), the second through a mask:
    each parameter's gradient a view of one array does not change what accumulates."""
    model = gpt()
    idx, targets = torch.randint(0, 37, (2, 12)), torch.randint(0, 37, (2, 12))
    mask = torch.rand(2, 12) > 0.3
    sums = []
    for whole in (True, False):
        run = train_gpt.run
        if not whole:
            train_gpt.run = lambda *args: None
        try:
            model.zero_grad(set_to_none=True)
            model(idx, targets)[1].backward()
            model(idx, targets, mask)[1].backward()
        finally:
            train_gpt.run = run
        sums.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name in sums[0]:
        assert torch.equal(sums[0][name], sums[1][name]), name


def test_a_step_runs_the_whole_model_in_the_kernels_own_calls():
    model = gpt()
    idx = torch.randint(0, 37, (2, 12))
    names = ran(lambda: model(idx[:, :-1], idx[:, 1:])[1].backward())
    assert names == {
        "scratchllm::gpt_forward", "scratchllm::gpt_backward",
        "scratchllm::embedding_forward", "scratchllm::embedding_backward",
        "scratchllm::block_forward", "scratchllm::block_backward",
        "scratchllm::layer_norm_forward", "scratchllm::layer_norm_backward",
        "scratchllm::cross_entropy_forward", "scratchllm::cross_entropy_backward",
        "scratchllm::matmul", "scratchllm::transpose_matrix",
    }  # fmt: skip


def test_bad_ids_and_targets_are_named():
    model = gpt()
    idx = torch.randint(0, 37, (2, 9))
    bad = idx.clone()
    bad[1, 3] = 99
    with pytest.raises(IndexError, match="token id 99 at row 1, position 3"):
        model(bad, idx)
    with pytest.raises(IndexError, match="target 99 at row 1, position 3"):
        model(idx, bad)


def frozen_block(model: GPT) -> GPT:
    model.transformer.h[0].requires_grad_(False)
    return model


def hooked_block(model: GPT) -> GPT:
    model.transformer.h[1].register_forward_pre_hook(lambda *args: None)
    return model


@pytest.mark.parametrize(
    "case, make",
    [
        ("no targets", gpt),
        ("torch's products", gpt),
        ("a frozen block", lambda: frozen_block(gpt())),
        ("a hook on a block", lambda: hooked_block(gpt())),
        ("an MLP width not a multiple of 16", lambda: gpt(ffn_hidden=40)),
        ("a mixture of experts", lambda: gpt(ffn="moe", n_expert=2)),
        ("RMSNorm", lambda: gpt(norm="rmsnorm")),
        ("rope positions", lambda: gpt(pos="rope")),
        ("padding mask", gpt),
        ("dropout", lambda: gpt(dropout=0.1)),
        ("no gradient", gpt),
    ],
)
def test_every_other_model_or_call_runs_the_parts(case, make, monkeypatch):
    model = make()
    idx = torch.randint(0, 37, (2, 12))
    x, y = idx[:, :-1], idx[:, 1:]
    if case == "torch's products":
        monkeypatch.setattr(train_kernel, "matmul_impl", "torch")
    kwargs = {}
    if case == "padding mask":
        kwargs["attention_mask"] = torch.ones(2, 11, dtype=torch.bool)
        kwargs["attention_mask"][0, :2] = False

    def call():
        if case == "no targets":
            model(x)[0].sum().backward()
        elif case == "no gradient":
            with torch.no_grad():
                model(x, y)
        else:
            model(x, y, **kwargs)[1].backward()

    if case not in ("padding mask", "no targets", "no gradient"):
        assert not train_gpt.fits(model, x, y, None, slice(0, 11)), case
    assert "scratchllm::gpt_forward" not in ran(call), case
    monkeypatch.setattr(train_kernel, "matmul_impl", "cpp")
    assert "scratchllm::gpt_forward" in ran(lambda: gpt()(x, y)[1].backward())  # the control


def test_buffers_come_in_chunks_glibc_keeps_for_reuse():
    """``train_kernel.packed``: arrays in order, each on 64 bytes, none overlapping, in
    chunks of at most CHUNK_FLOATS unless one array alone is larger."""
    cap = train_kernel.CHUNK_FLOATS
    sizes = [5, 0, cap // 2, cap // 2, 17, 3 * cap, 1]
    chunks, addresses = train_kernel.packed(torch.empty(1), sizes)
    assert addresses[1] == 0  # an empty array
    spans = sorted((a, a + 4 * n) for a, n in zip(addresses, sizes) if n)
    assert all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))
    assert all(a % 64 == 0 for a, _ in spans)
    assert sorted(c.numel() for c in chunks) == sorted([cap // 2 + 16, cap // 2 + 17, 3 * cap, 1])
    shapes = [(5,), None, (3, 7), (40, 3)]
    tensors = train_kernel.packed_tensors(torch.empty(1), shapes)
    assert [None if t is None else tuple(t.shape) for t in tensors] == shapes
    assert all(t is None or t.is_contiguous() for t in tensors)


def test_blocks_of_different_widths_run_the_parts():
    """One block with another MLP width: the one Function takes blocks of one shape only."""
    from scratchllm.models.layers.ffn import MLP

    model = gpt(ffn_hidden=64)
    torch.manual_seed(1)
    model.transformer.h[1].mlp = MLP(32, 96, "gelu", True, 0.0)
    idx, targets = torch.randint(0, 37, (2, 12)), torch.randint(0, 37, (2, 12))
    assert not train_gpt.fits(model, idx, targets, None, slice(0, 12))
    loss, _, grads = step(model, idx, targets, whole=True)
    train_kernel.enabled = False
    try:
        ref, _, ref_grads = step(model, idx, targets, whole=False)
    finally:
        train_kernel.enabled = True
    torch.testing.assert_close(loss, ref, atol=1e-6, rtol=1e-6)
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], atol=1e-5, rtol=1e-4)
