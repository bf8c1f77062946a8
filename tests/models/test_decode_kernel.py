"""The C++ one-token step (``models/decode_kernel.cpp``) against its PyTorch twin and the
modules: equal for every width (vector and scalar tails), batch and padding; and when it
cannot be built, decoding falls back with one warning."""

import copy
import itertools
import threading
import warnings
from pathlib import Path

import pytest
import torch

from scratchllm.models import GPT, GPTConfig, decode_kernel
from scratchllm.models.gpt_decode import build_plan, decode_token_torch


def model_of(seed=0, **overrides) -> GPT:
    fields = dict(n_layer=2, n_head=2, n_embd=32, block_size=40, vocab_size=37)
    fields.update(overrides)
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**fields)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0)  # livelier than the 0.02 init: attention that is not uniform
    return model


def test_the_kernel_builds_on_this_machine():
    assert decode_kernel.compiler() is not None, "every machine of this project has g++"
    assert decode_kernel.load() is not None, decode_kernel.failure()
    assert decode_kernel.failure() is None


# Widths that exercise the vector code and its scalar tails: head_dim 8 (scalar attention),
# 16, 32 and 64 (vector attention); rows of 24, 40 and 200 floats (16-float chunks + a tail).
SHAPES = [
    dict(n_embd=16, n_head=2),
    dict(n_embd=40, n_head=5, ffn_hidden=24),
    dict(n_embd=64, n_head=2, ffn_hidden=200),
    dict(n_embd=64, n_head=1, n_layer=1),
    dict(n_embd=48, n_head=3, vocab_size=17),
]


@pytest.mark.parametrize("batch", [1, 2, 5, 9])  # 9: more than one block of 8 batch rows
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(f"{k}{v}" for k, v in s.items()))
def test_kernel_equals_the_torch_step_and_the_modules(shape, batch):
    model = model_of(seed=1, pos="rope" if shape["n_embd"] % 16 == 0 else "learned", **shape)
    idx = torch.randint(0, model.config.vocab_size, (batch, 14))
    fast, slow = model.new_state(batch, 14), model.new_state(batch, 14)
    slow.plan = False
    got = [model.forward_step(idx[:, :5], fast)]
    got += [model.forward_step(idx[:, t : t + 1], fast) for t in range(5, 14)]
    want = [model.forward_step(idx[:, :5], slow)]
    want += [model.forward_step(idx[:, t : t + 1], slow) for t in range(5, 14)]
    assert fast.plan.kernel is not None
    torch.testing.assert_close(torch.cat(got, 1), torch.cat(want, 1), atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(fast.buffer, slow.buffer, atol=1e-5, rtol=1e-4)

    # The torch twin on the same cache contents gives the same logits as the kernel.
    plan = fast.plan
    nxt = torch.randint(0, model.config.vocab_size, (batch, 1))
    state = model.new_state(batch, 14)
    model.forward_step(idx[:, :13], state)
    twin = state.buffer.clone()
    with torch.inference_mode():
        k = plan.kernel(nxt, state.buffer, 13)
        t = decode_token_torch(plan, nxt, twin, 13)
    torch.testing.assert_close(k, t, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(state.buffer, twin, atol=1e-5, rtol=1e-4)


PADDED = list(
    itertools.product(["learned", "sinusoidal", "rope"], ["layernorm", "rmsnorm"], ["gelu", "relu"])
)


@pytest.mark.parametrize("pos, norm, act", PADDED)
def test_left_padded_rows_decode_like_their_prompt_alone(pos, norm, act, monkeypatch):
    """Padding: per-row positions and the key mask, in the kernel and the torch twin."""
    model = model_of(seed=2, pos=pos, norm=norm, act=act)
    lengths = [9, 4, 6]
    seqs = [torch.randint(0, 37, (n + 5,)) for n in lengths]
    T = max(lengths)
    batch = torch.zeros(3, T, dtype=torch.long)
    real = torch.zeros(3, T, dtype=torch.bool)
    for b, (s, n) in enumerate(zip(seqs, lengths)):
        batch[b, T - n :], real[b, T - n :] = s[:n], True
    outputs = {}
    for impl in ("kernel", "torch", "modules"):
        monkeypatch.setattr(decode_kernel, "enabled", impl == "kernel")
        state = model.new_state(3, T + 5)
        if impl == "modules":
            state.plan = False
        logits = [model.forward_step(batch, state, real)]
        for step in range(5):
            nxt = torch.stack([s[n + step] for s, n in zip(seqs, lengths)])[:, None]
            logits.append(model.forward_step(nxt, state))
        assert (impl == "modules") == (state.plan is False)
        if impl != "modules":
            assert (state.plan.kernel is not None) == (impl == "kernel")
        outputs[impl] = torch.cat(logits, 1)  # (3, T + 5, V)
    for impl in ("kernel", "torch"):
        torch.testing.assert_close(outputs[impl], outputs["modules"], atol=2e-5, rtol=1e-5)
    for b, (s, n) in enumerate(zip(seqs, lengths)):
        alone = model(s[None, : n + 5])[0][0]  # the row's tokens without padding
        torch.testing.assert_close(outputs["kernel"][b, T - n :], alone, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("batch, padded", [(1, False), (3, False), (3, True)])
def test_two_threads_give_bitwise_the_numbers_of_one(monkeypatch, batch, padded):
    """Threads share out the output columns: every number is computed the same way."""
    model = model_of(seed=4, n_embd=48, n_head=3, pos="rope")
    idx = torch.randint(0, 37, (batch, 12))
    real = torch.ones(batch, 6, dtype=torch.bool)
    if padded:
        real[1:, :2] = False
    outs, buffers = [], []
    for threads in (1, 2):
        monkeypatch.setattr(decode_kernel, "threads_for", lambda plan, b, n=threads: n)
        state = model.new_state(batch, 12)
        got = [model.forward_step(idx[:, :6], state, real if padded else None)]
        got += [model.forward_step(idx[:, t : t + 1], state) for t in range(6, 12)]
        assert state.plan.kernel.step.n_threads == threads
        outs.append(torch.cat(got, 1))
        buffers.append(state.buffer)
    assert torch.equal(outs[0], outs[1]) and torch.equal(buffers[0], buffers[1])
    slow = model.new_state(batch, 12)
    slow.plan = False
    want = [model.forward_step(idx[:, :6], slow, real if padded else None)]
    want += [model.forward_step(idx[:, t : t + 1], slow) for t in range(6, 12)]
    torch.testing.assert_close(outs[1], torch.cat(want, 1), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("batch, padded", [(1, False), (3, True)])
def test_a_prompt_longer_than_one_call_runs_in_chunks(monkeypatch, batch, padded):
    monkeypatch.setattr(decode_kernel, "CHUNK_ROWS", 8)  # 8 // batch tokens per call
    model = model_of(seed=5, pos="rope")
    idx = torch.randint(0, 37, (batch, 20))
    real = torch.ones(batch, 17, dtype=torch.bool)
    if padded:
        real[1, :4], real[2, :9] = False, False
    outs = []
    for plan in (None, False):
        state = model.new_state(batch, 20)
        state.plan = plan
        got = [model.forward_step(idx[:, :17], state, real if padded else None)]
        got += [model.forward_step(idx[:, t : t + 1], state) for t in range(17, 20)]
        outs.append(torch.cat(got, 1))
    assert state.plan is False and 17 // max(1, 8 // batch) > 1  # several calls
    torch.testing.assert_close(outs[0], outs[1], atol=2e-5, rtol=1e-5)
    bad = idx[:, :17].clone()
    bad[-1, -1] = 37
    state = model.new_state(batch, 20)
    with pytest.raises(IndexError):
        model.forward_step(bad, state, real if padded else None)
    assert state.buffer.abs().sum() == 0  # refused before the first chunk wrote anything


def test_the_kernel_refuses_a_cache_of_another_shape():
    model = model_of()
    state = model.new_state(2, 8)
    model.forward_step(torch.tensor([[1, 2], [3, 4]]), state)
    model.forward_step(torch.tensor([[1], [2]]), state)
    other = model.new_state(2, 9)
    with pytest.raises(ValueError, match=r"cache of shape \(2, 2, 2, 2, 9, 16\).*made for"):
        state.plan.kernel(torch.tensor([[1], [2]]), other.buffer, 3)


def test_a_token_outside_the_vocabulary_is_the_modules_error():
    model = model_of()
    state = model.new_state(1, 8)
    model.forward_step(torch.tensor([[1, 2, 3]]), state)
    assert state.plan.kernel is not None  # the prompt ran in the kernel
    with pytest.raises(IndexError):
        model.forward_step(torch.tensor([[37]]), state)  # the kernel refused it; F.embedding says
    with pytest.raises(IndexError):
        model.forward_step(torch.tensor([[-1, 2]]), model.new_state(1, 8))


def test_one_thread_for_small_models_and_torchs_count_for_large():
    small = build_plan(model_of(), 1)
    assert decode_kernel.threads_for(small, 1) == 1
    big = build_plan(model_of(n_layer=3, n_embd=512, n_head=8), 1)  # 3 * 12 * 512^2 * 4 B
    assert decode_kernel.threads_for(big, 1) == torch.get_num_threads()


@pytest.fixture
def two_threads():
    """torch on two threads (the tests run on one), so that a choice of two can show."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_one_thread_while_the_weights_fit_in_half_a_cores_l2(monkeypatch, two_threads):
    plan = build_plan(model_of(n_layer=4, n_head=4, n_embd=128), 1)  # 3.0 MB of weights
    for l2, threads in [(2 << 20, 2), (8 << 20, 1), (None, 2)]:  # None: 2 MB assumed
        monkeypatch.setattr(decode_kernel, "l2_cache_bytes", lambda l2=l2: l2)
        expected = decode_kernel.ASSUMED_L2_BYTES // 2 if l2 is None else l2 // 2
        assert decode_kernel.one_thread_below() == expected
        assert decode_kernel.threads_for(plan, 1) == threads
    monkeypatch.setattr(decode_kernel, "l2_cache_bytes", lambda: 8 << 20)
    assert decode_kernel.threads_for(plan, 2) == 2  # 6.1 MB for 2 rows


def test_shared_cores_keep_models_under_8_mb_to_one_thread_at_any_batch(monkeypatch, two_threads):
    """``share_cores`` holds for the thread that says it, as torch's thread count does."""
    monkeypatch.setattr(decode_kernel, "l2_cache_bytes", lambda: 2 << 20)
    small = build_plan(model_of(n_layer=4, n_head=4, n_embd=128), 1)  # 3.0 MB
    big = build_plan(model_of(n_layer=3, n_embd=512, n_head=8), 1)  # 9.4 MB
    seen = {}

    def worker():
        torch.set_num_threads(2)
        decode_kernel.share_cores()
        seen["small"] = decode_kernel.threads_for(small, 1)
        seen["big"] = decode_kernel.threads_for(big, 1)
        seen["small, 4 rows"] = decode_kernel.threads_for(small, 4)  # the weights count
        decode_kernel.share_cores(False)
        seen["small, unshared"] = decode_kernel.threads_for(small, 1)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == {"small": 1, "big": 2, "small, 4 rows": 1, "small, unshared": 2}
    assert decode_kernel.threads_for(small, 1) == 2  # this thread never said so


def _cache_dir(root, entries) -> Path:
    for i, (level, size) in enumerate(entries):
        d = root / f"index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        if size is not None:
            (d / "size").write_text(f"{size}\n")
    return root


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([(1, "48K"), (1, "32K"), (2, "2048K"), (3, "491520K")], 2 << 20),
        ([(1, "32K"), (2, "1M")], 1 << 20),
        ([(2, "524288")], 524288),  # no unit: bytes
        ([(1, "32K"), (2, None), (3, "8M")], None),  # the L2 entry has no size
        ([(2, "lots")], None),
        ([(1, "32K"), (3, "8M")], None),
        ([], None),  # no cache directory entries at all
    ],
)
def test_the_l2_size_is_read_from_sysfs(tmp_path, entries, expected):
    assert decode_kernel.l2_cache_bytes(_cache_dir(tmp_path / "cache", entries)) == expected


def test_this_machine_reports_its_l2():
    """The reference machines run Linux: the sysfs entry is there and sane."""
    l2 = decode_kernel.l2_cache_bytes()
    assert l2 is not None and (64 << 10) <= l2 <= (64 << 20)


# -- the packed matrices --------------------------------------------------------------------------


@pytest.mark.parametrize("n", [16, 24, 48, 50, 96, 130])  # one panel, a 16/32 tail, padding
def test_pack_lays_a_weight_out_in_panels_of_48_columns_k_major(n):
    K = 7
    w = torch.randn(n, K)
    flat = decode_kernel.pack(w)
    padded = -(-n // 16) * 16
    assert flat.numel() == padded * K
    columns, offset = [], 0
    for n0 in range(0, padded, decode_kernel.PANEL):
        width = min(decode_kernel.PANEL, padded - n0)
        columns.append(flat[offset : offset + K * width].view(K, width).t())  # (width, K)
        offset += K * width
    back = torch.cat(columns)
    assert torch.equal(back[:n], w) and not back[n:].any()  # the padding rows are zeros


def test_the_kernel_sees_weights_changed_in_place_while_a_state_lives():
    model = model_of(seed=6, pos="rope")
    idx = torch.randint(0, 37, (2, 10))
    fast, slow = model.new_state(2, 10), model.new_state(2, 10)
    slow.plan = False
    model.forward_step(idx[:, :4], fast), model.forward_step(idx[:, :4], slow)
    packed = fast.plan.kernel.packed
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model(idx, targets=idx)[1].backward()
    optimizer.step()  # in place, as training between two generations does
    got = model.forward_step(idx[:, 4:5], fast)
    want = model.forward_step(idx[:, 4:5], slow)
    assert fast.plan.kernel.packed[0] is not packed[0]  # packed again
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p))
    model.load_state_dict(other.state_dict())  # copies in place
    got = model.forward_step(idx[:, 5:6], fast)
    torch.testing.assert_close(got, model.forward_step(idx[:, 5:6], slow), atol=2e-5, rtol=1e-5)


def test_the_kernel_sees_the_projects_adamw_step_fused_or_not():
    """torch's fused AdamW writes the parameters without bumping their version counters, by
    which the packed copy knows it is stale; ``configure_optimizer`` bumps them after each
    step. Without that an RL run's rollouts and in-run evaluations decode with the matrices
    of its first generation."""
    from scratchllm.training import TrainConfig, configure_optimizer

    model = model_of(seed=8)
    idx = torch.randint(0, 37, (2, 10))
    fast, slow = model.new_state(2, 10), model.new_state(2, 10)
    slow.plan = False
    model.forward_step(idx[:, :4], fast), model.forward_step(idx[:, :4], slow)
    optimizer = configure_optimizer(model, TrainConfig(lr=0.1, weight_decay=0.1))
    before = [p._version for p in model.parameters()]
    model(idx, targets=idx)[1].backward()
    optimizer.step()
    assert all(p._version > v for p, v in zip(model.parameters(), before))
    got = model.forward_step(idx[:, 4:5], fast)
    torch.testing.assert_close(got, model.forward_step(idx[:, 4:5], slow), atol=2e-5, rtol=1e-5)


def test_states_of_unchanged_weights_share_one_packed_copy():
    model = model_of(seed=7)
    a, b = model.new_state(1, 4), model.new_state(3, 6)
    model.forward_step(torch.tensor([[1]]), a), model.forward_step(torch.tensor([[1], [2], [3]]), b)
    assert all(x is y for x, y in zip(a.plan.kernel.packed, b.plan.kernel.packed))


# -- building, and falling back ------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["CXX names no file", "no compiler on PATH"])
def test_a_failed_build_warns_once_and_decoding_falls_back(monkeypatch, tmp_path, missing):
    monkeypatch.setattr(decode_kernel.library, "lib", None)
    monkeypatch.setattr(decode_kernel.library, "failed", None)
    if missing == "CXX names no file":
        monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
        reason = "no-such-compiler"
    else:
        monkeypatch.delenv("CXX", raising=False)
        monkeypatch.setenv("PATH", str(tmp_path))  # no g++, no c++
        reason = "no C++ compiler found (install g++ or set CXX)"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    model = model_of(seed=3)
    idx = torch.randint(0, 37, (2, 10))
    with pytest.warns(RuntimeWarning, match="C\\+\\+ decode step is unavailable .*PyTorch path"):
        state = model.new_state(2, 10)
        got = [model.forward_step(idx[:, :4], state)]
        got += [model.forward_step(idx[:, t : t + 1], state) for t in range(4, 10)]
    assert state.plan.kernel is None and reason in decode_kernel.failure()
    torch.testing.assert_close(torch.cat(got, 1), model(idx)[0], atol=1e-5, rtol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: a second state does not warn again
        model.forward_step(idx[:, :1], s := model.new_state(2, 2))
        model.forward_step(idx[:, 1:2], s)


def test_build_reports_the_compilers_error(monkeypatch, tmp_path):
    broken = tmp_path / "broken.cpp"
    broken.write_text("int f( { return 0; }\n")
    monkeypatch.setattr(decode_kernel.library, "source", broken)
    with pytest.raises(OSError, match="failed: .*error"):
        decode_kernel.library.build(decode_kernel.compiler(), tmp_path / "out.so")
    assert not any(p.name.endswith(".so") for p in tmp_path.iterdir())  # nothing half-written


def test_built_library_is_cached_by_a_hash_of_sources_compiler_and_cpu(tmp_path, monkeypatch):
    cxx = decode_kernel.compiler()
    path = decode_kernel.library.path(cxx)
    assert path.parent == decode_kernel.cache_dir() and path.name.startswith("decode_kernel-")
    source = decode_kernel.library.source
    copy = tmp_path / source.name
    header = source.with_name("kernel_math.h")
    copy.write_text(source.read_text())
    (tmp_path / header.name).write_text(header.read_text())
    monkeypatch.setattr(decode_kernel.library, "source", copy)
    assert decode_kernel.library.path(cxx) == path  # the same texts
    copy.write_text(source.read_text() + "\n// changed\n")
    assert decode_kernel.library.path(cxx) != path
    copy.write_text(source.read_text())
    (tmp_path / header.name).write_text(header.read_text() + "\n// changed\n")
    assert decode_kernel.library.path(cxx) != path  # the header it includes counts too


@pytest.mark.parametrize("n_embd, ffn_hidden", [(64, 200), (48, 96), (128, 512)])
def test_a_row_alone_gets_bitwise_the_logits_it_gets_in_a_batch(n_embd, ffn_hidden):
    """One row runs several panels at once, a batch one panel for all rows: the sums are
    the same, in the same order (what lets generate_batch promise the tokens of each
    request alone)."""
    model = model_of(seed=8, n_embd=n_embd, n_head=2, ffn_hidden=ffn_hidden, pos="rope")
    idx = torch.randint(0, 37, (3, 9))

    def run(rows: torch.Tensor) -> torch.Tensor:
        state = model.new_state(rows.shape[0], 9)
        got = [model.forward_step(rows[:, :5], state)]
        got += [model.forward_step(rows[:, t : t + 1], state) for t in range(5, 9)]
        assert state.plan.kernel is not None
        return torch.cat(got, 1)

    batch = run(idx)
    for b in range(3):
        assert torch.equal(run(idx[b : b + 1])[0], batch[b])
