"""Training throughput: scratchllm's GPT + training step vs Hugging Face GPT-2 + AdamW.

Both train the same architecture on the same random batches in one process, fp32 on
CPU, dropout 0, AdamW lr 1e-3, betas (0.9, 0.99), weight decay 0.1:

* **peer**: ``transformers.GPT2LMHeadModel`` (SDPA attention) + ``torch.optim.AdamW``
  (the default, non-fused path); one iteration = forward + backward + step + zero_grad.
* **ours**: ``scratchllm.models.GPT`` + ``scratchllm.training.train_step_fn``, the very
  update ``Trainer`` takes (``scratchllm train``): the schedule's lr, forward, backward,
  the global-norm clip at 1.0, fused AdamW with decay on matrices only
  (``configure_optimizer``), zero_grad. Ours does strictly more work (the clip).
  Each block runs as one autograd Function on the C++ training kernels
  (``models/train_block.py``: layer norms, attention, the GELU, residual adds and biases
  between PyTorch's matrix products) and the clip is one C++ call, as in ``scratchllm
  train`` on a CPU; the row ``scratchllm torch ops`` is the same step with them off, on
  the same PyTorch kernels as HF's (``--no-torch-ops`` skips it).
* Both run with glibc keeping freed memory for reuse (``scratchllm.memory``), as
  ``scratchllm train`` does on CPU: it is process-wide, so HF's step gets it too. Without
  it (``--malloc-default``) a 6 x 384 step takes 13,000-58,000 page faults instead of 200-320.
* ``--compile`` adds a row for ours with ``compile=True`` (``scratchllm train
  --compile``), and prints how long the first two steps took to compile.

The activation is the same function on both sides (``--act``): exact GELU (our default;
HF ``activation_function="gelu"``, the same ``F.gelu`` kernel) or GPT-2's tanh form (ours
``gelu_tanh``; HF ``gelu_pytorch_tanh``, the same kernel). GPT-2's shipped config says
``gelu_new``, which transformers computes as a seven-op Python formula; against that (``--hf-act
gelu_new``) HF's step is about 10 % slower, a gap that says nothing about the rest of the
step, so it is not the default. (Figures before 2026-12-03 compared our exact GELU with
HF's ``gelu_new``.)

Configurations (shared/BASELINES.md section 2):

* small: 4 layers x 4 heads x 128 wide, block 64, batch 12, vocab 65
* baby:  6 layers x 6 heads x 384 wide, block 256, batch 8, vocab 65 (skip with --quick)

MFU (model FLOPs utilisation) = 6 * N * tokens/s / peak, N = every unique parameter (the
tied token table once, the position table included); the peak is measured here, as the
best of a few 2048 x 2048 fp32 matmuls, measured again at the start of every round (this
machine's speed drifts by a third within minutes, and a peak taken once would turn that
drift into MFU). Rounds of each implementation alternate so that load from other
processes hits both alike. The table shows medians over rounds: of the time per
iteration, of MFU against that round's peak, and of the ratio to HF within each round.

MFU counts only the 6N parameter FLOPs (the definition the goals use). The second,
labelled column ``MFU+attn`` also counts causal self-attention's score and mix matmuls
(PaLM's appendix B: 12 * n_layer * n_embd * T FLOPs per token for forward + backward,
no causal discount), which 6N leaves out and which cost a seventh of the step at T 256.

``--breakdown`` profiles our step, with its kernels called one by one from Python (the same
bits, ``train_block.one_call = False``, so that each is a profiler range: where its time
goes, and the MFU it would reach if the matrix products alone took time), then replays the
step's matrix products with nothing else running: in the step's order, their operands coming
from memory as in the step, and each repeated at once, in cache; with the machine's copy
bandwidth in and beyond the cache, it shows how much of the products' time is memory.

``--levers`` times the pieces of the update around forward/backward side by side on
the small model's own parameters and gradients: our AdamW (what ``configure_optimizer``
picks: one C++ call per group) vs PyTorch's fused vs foreach vs the per-parameter
for-loop, and the gradient clip foreach vs loop.
``--from-python`` adds a row for our step with its kernels called one by one from Python
(``train_block.one_call = False``, the same bits), as the step ran before each block became
one C++ call and the whole model one Function. ``--kernels`` times the fused layers against
the PyTorch ops they replace, on the config's shapes, forward + backward: ``c_attn`` with
attention, and the MLP. ``--fixed-cost`` times every step on one row of 16 tokens, where
what is left is the cost a step pays whatever its batch.

    python benchmarks/bench_train_throughput.py            # small and baby
    python benchmarks/bench_train_throughput.py --quick    # small only
    python benchmarks/bench_train_throughput.py --breakdown  # + where our step's time goes
    python benchmarks/bench_train_throughput.py --quick --levers  # + optimizer / clip variants
    python benchmarks/bench_train_throughput.py --kernels  # + the C++ kernels vs PyTorch's ops
    python benchmarks/bench_train_throughput.py --quick --from-python  # + kernels from Python
    python benchmarks/bench_train_throughput.py --quick --fixed-cost  # + steps on 1 x 16 tokens
    python benchmarks/bench_train_throughput.py --quick --compile  # + ours under torch.compile
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from scratchllm.memory import keep_freed_memory

CONFIGS = {
    # name: (n_layer, n_head, n_embd, block T, batch B, warm-up iterations, timed iterations)
    "small": (4, 4, 128, 64, 12, 10, 30),
    "baby": (6, 6, 384, 256, 8, 2, 6),
}
VOCAB = 65


def square_matmul(product, n: int, repeats: int) -> float:
    """Best fp32 GFLOP/s of ``product`` on two n x n matrices (2 n^3 FLOPs), now."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    product(a, b)  # warm-up: thread pool, caches
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        product(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def matmul_peaks(repeats: int = 5) -> dict[str, float]:
    """The fp32 GFLOP/s of square matmuls now: ``torch.mm`` at 2048, and the training
    kernels' ``gemm`` (``train_kernel.mm``) at 1024 and 2048 when the library is built."""
    from scratchllm.models import train_kernel

    peaks = {"torch.mm 2048": square_matmul(torch.mm, 2048, repeats)}
    if train_kernel.library.load() is not None:
        saved, train_kernel.matmul_impl = train_kernel.matmul_impl, "cpp"
        try:
            for n in (1024, 2048):
                peaks[f"gemm {n}"] = square_matmul(train_kernel.mm, n, repeats)
        finally:
            train_kernel.matmul_impl = saved
    return peaks


def matmul_peak(repeats: int = 5) -> float:
    """The peak MFU divides by: the best of ``matmul_peaks`` (GFLOP/s), the fastest fp32
    matrix product this machine runs now, PyTorch's or ours. (MKL's on a CPU not Intel's
    takes its AVX2 path: a peak of torch.mm alone would be half of what the machine does,
    and our products would count above 100 %.)"""
    return max(matmul_peaks(repeats).values())


def unique_params(model: torch.nn.Module) -> int:
    """Every parameter tensor counted once (a tied wte / lm_head is one tensor)."""
    return sum({id(p): p.numel() for p in model.parameters()}.values())


def make_batches(T: int, B: int, count: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (B, T + 1), generator=g) for _ in range(count)]


HF_ACT = {"gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh"}  # the same torch kernel


def hf_step_fn(L: int, H: int, C: int, T: int, act: str):
    """HF GPT-2 with ``activation_function=act`` and torch's default AdamW."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB, n_positions=T, n_layer=L, n_head=H, n_embd=C,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function=act,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    try:
        model = GPT2LMHeadModel(config, attn_implementation="sdpa")
    except TypeError:  # older transformers take it on the config only
        config._attn_implementation = "sdpa"
        model = GPT2LMHeadModel(config)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)

    def step(chunk: torch.Tensor) -> None:
        x, y = chunk[:, :-1], chunk[:, 1:]
        logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return model, step


def ours_step_fn(L: int, H: int, C: int, T: int, B: int, act: str, compile: bool = False):
    """Our GPT and ``train_step_fn``: one ``Trainer`` update per call (no host sync)."""
    from scratchllm.models import GPT, GPTConfig
    from scratchllm.training import TrainConfig, train_step_fn

    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=L, n_head=H, n_embd=C, block_size=T, vocab_size=VOCAB, act=act))
    cfg = TrainConfig(
        batch_size=B, block_size=T, lr=1e-3, weight_decay=0.1, beta1=0.9, beta2=0.99,
        grad_clip=1.0, warmup_iters=0, schedule="constant", device="cpu", progress=False,
        compile=compile,
    )  # fmt: skip
    train = train_step_fn(model, cfg, "cpu")

    def step(chunk: torch.Tensor) -> None:
        train(chunk[:, :-1], chunk[:, 1:])

    return model, step


def _switched_off(step, module, flag: str):
    """``step`` with ``module.flag`` False while it runs (and True again after)."""

    def run(chunk: torch.Tensor) -> None:
        setattr(module, flag, False)
        try:
            step(chunk)
        finally:
            setattr(module, flag, True)

    return run


def from_python(step):
    """``step`` with the kernels called one by one from Python (``train_block.one_call =
    False``: each block from Python, no whole-model Function; the same bits), as before
    2026-12-08."""
    from scratchllm.models import train_block

    return _switched_off(step, train_block, "one_call")


def torch_ops(step):
    """``step`` with the C++ training kernels off (``train_kernel.enabled = False``): our
    model on the same PyTorch kernels as HF's."""
    from scratchllm.models import train_kernel

    return _switched_off(step, train_kernel, "enabled")


def time_rounds(
    steps: dict, batches: list[torch.Tensor], warmup: int, rounds: int
) -> dict[str, dict[str, float]]:
    """Each step function timed in ``rounds`` alternating rounds, with the matmul peak
    measured at the start of every round. For each: ``seconds`` (median per iteration),
    ``speed`` (median of 1 / (seconds x that round's peak in FLOP/s): FLOPs x speed = MFU)
    and ``vs_first`` (median of the first function's time / its time, round by round).
    Ratios and MFU are taken within a round, so that the machine's drift between rounds
    (a third within minutes here) cancels."""
    for step in steps.values():
        for chunk in batches[:warmup]:
            step(chunk)
    timed = batches[warmup:]
    per_round: dict[str, list[float]] = {name: [] for name in steps}
    peaks = []
    for _ in range(rounds):
        peaks.append(matmul_peak(repeats=3) * 1e9)
        for name, step in steps.items():
            t0 = time.perf_counter()
            for chunk in timed:
                step(chunk)
            per_round[name].append((time.perf_counter() - t0) / len(timed))
    first = per_round[next(iter(steps))]
    return {
        name: {
            "seconds": statistics.median(ts),
            "speed": statistics.median(1 / (t * p) for t, p in zip(ts, peaks)),
            "vs_first": statistics.median(f / t for f, t in zip(first, ts)),
        }
        for name, ts in per_round.items()
    }


def breakdown(step, batches: list[torch.Tensor], flops_per_iter: float) -> None:
    """Profile a few of our iterations and print where the time goes, with the MFU the
    step could reach if the matmuls ran as they do now and everything else took no time
    (``matmul only``), or everything but attention did (``matmul + attention``)."""
    from torch.profiler import ProfilerActivity, profile

    from scratchllm.models import train_block

    for chunk in batches[:2]:
        step(chunk)
    peak = matmul_peak(repeats=3)  # the machine's speed now, beside the profiled steps
    # The kernels one by one from Python (train_block.one_call off: the same bits), so that
    # each product and kernel is a profiler range; in one call a block is one range.
    train_block.one_call = False
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for chunk in batches[2:]:
                step(chunk)
    finally:
        train_block.one_call = True
    groups = {"matmul": 0.0, "attention": 0.0, "activation": 0.0, "other": 0.0}
    total = 0.0
    for event in prof.key_averages():
        us = event.self_cpu_time_total
        total += us
        name = event.key
        if name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "scratchllm::matmul"):
            groups["matmul"] += us
        elif "scaled_dot_product" in name or name.startswith("scratchllm::attention"):
            groups["attention"] += us
        elif "gelu" in name:  # aten::gelu, aten::gelu_backward, scratchllm::gelu_backward
            groups["activation"] += us
        else:
            groups["other"] += us
    iters = len(batches) - 2
    print("  where our step's time goes (profiled, self CPU time; the kernels called one by one):")
    for name, us in groups.items():
        print(f"    {name:<11} {us / iters / 1e3:8.1f} ms/iter {us / total:6.1%}")
    mm = groups["matmul"] / iters / 1e6
    attn = groups["attention"] / iters / 1e6
    for label, seconds in (("matmul only", mm), ("matmul + attention", mm + attn)):
        print(f"    MFU bound, {label:<19} {flops_per_iter / seconds / (peak * 1e9):6.1%}")
    in_order, repeated = replay_products(step, batches[-1])
    print(
        f"  the step's {in_order[2]} matrix products replayed alone, against the peak "
        f"({matmul_peak(repeats=3):.0f} GFLOP/s now):\n"
        f"    in the step's order (operands from memory)   {in_order[1]:6.0f} GFLOP/s "
        f"{in_order[0] * 1e3:7.2f} ms\n"
        f"    each repeated at once (operands in cache)    {repeated[1]:6.0f} GFLOP/s "
        f"{repeated[0] * 1e3:7.2f} ms\n"
        f"    copy bandwidth: 1 MB {copy_bandwidth(1 << 20):.0f} GB/s, "
        f"64 MB {copy_bandwidth(64 << 20):.0f} GB/s (read + write)"
    )


def replay_products(step, chunk: torch.Tensor) -> tuple[tuple, tuple]:
    """Copies of the operands of every matrix product one step runs (``mm``, ``addmm``'s
    product; caught below autograd, where the block Function's and the backward's products
    are, with the kernels' products on ``torch.mm`` for the catch), multiplied again alone
    as the step multiplies them (``train_kernel.mm``, or ``mm_t`` for a weight's transpose):
    ``((seconds, GFLOP/s, count) in the step's order, (seconds, GFLOP/s, count) with each
    product repeated at once)``. The first is what the products cost with nothing else
    running, their operands coming from wherever the previous ones left them; the second
    what they cost in cache."""
    from torch.utils._python_dispatch import TorchDispatchMode

    operands: list[tuple[torch.Tensor, torch.Tensor]] = []

    def copy(t: torch.Tensor) -> torch.Tensor:  # the same strides: a transposed view stays one
        return torch.empty_strided(t.shape, t.stride()).copy_(t)

    class Catch(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            if func is torch.ops.aten.mm.default:
                operands.append((copy(args[0]), copy(args[1])))
            elif func is torch.ops.aten.addmm.default:  # PyTorch's path: the product only
                operands.append((copy(args[1]), copy(args[2])))
            return func(*args, **(kwargs or {}))

    from scratchllm.models import train_kernel

    saved, train_kernel.matmul_impl = train_kernel.matmul_impl, "torch"
    try:
        with Catch():
            step(chunk)
    finally:
        train_kernel.matmul_impl = saved
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in operands)

    def product(a: torch.Tensor, b: torch.Tensor) -> None:
        if b.t().is_contiguous() and not b.is_contiguous():  # x @ w.t(): a layer's forward
            train_kernel.mm_t(a, b.t())
        else:
            train_kernel.mm(a, b)

    def in_order() -> None:
        for a, b in operands:
            product(a, b)

    in_order()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        in_order()
        times.append(time.perf_counter() - t0)
    ordered = statistics.median(times)
    hot = 0.0
    for a, b in operands:
        product(a, b)
        t0 = time.perf_counter()
        for _ in range(5):
            product(a, b)
        hot += (time.perf_counter() - t0) / 5
    n = len(operands)
    return (ordered, flops / ordered / 1e9, n), (hot, flops / hot / 1e9, n)


def copy_bandwidth(nbytes: int) -> float:
    """GB/s (read + write) of copying one float32 array of ``nbytes`` into another."""
    a, b = torch.randn(nbytes // 4), torch.empty(nbytes // 4)
    b.copy_(a)
    repeats = max(3, (256 << 20) // nbytes)
    t0 = time.perf_counter()
    for _ in range(repeats):
        b.copy_(a)
    return 2 * nbytes * repeats / (time.perf_counter() - t0) / 1e9


def alternate(fns: dict, repeats: int, rounds: int = 5) -> dict[str, tuple[float, float]]:
    """(min, max) over rounds of each function's mean seconds per call, rounds alternating."""
    for fn in fns.values():
        fn()
    per: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn()
            per[name].append((time.perf_counter() - t0) / repeats)
    return {name: (min(ts), max(ts)) for name, ts in per.items()}


def levers(model: torch.nn.Module, step_seconds: float) -> None:
    """The update's pieces on ``model``'s own parameter shapes, each variant on its own
    copy of the parameters with the same gradients: AdamW fused / foreach / for-loop (and
    how far apart their parameters end after the timed steps: they must agree), the
    global-norm clip foreach vs loop. Shown against our whole step's median time."""
    torch.manual_seed(0)
    base = [p.detach().clone() for p in model.parameters()]
    grads = [torch.randn_like(p) * 1e-2 for p in base]

    def copy() -> list[torch.nn.Parameter]:
        params = [torch.nn.Parameter(p.clone()) for p in base]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        return params

    from scratchllm.training.optimizer import AdamW

    kw = dict(lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    variants = {"ours": (AdamW, dict(fused=True)), "fused": (torch.optim.AdamW, dict(fused=True)),
                "foreach": (torch.optim.AdamW, dict(foreach=True)),
                "for-loop": (torch.optim.AdamW, dict(foreach=False))}  # fmt: skip
    owned = {name: copy() for name in variants}
    opts = {name: make(owned[name], **kw, **v) for name, (make, v) in variants.items()}
    times = alternate({f"AdamW {name}": opt.step for name, opt in opts.items()}, repeats=20)
    clip_params = copy()
    times |= alternate(
        {
            f"clip {mode}": lambda f=(mode == "foreach"): torch.nn.utils.clip_grad_norm_(
                clip_params, 1e9, foreach=f
            )
            for mode in ("foreach", "loop")
        },
        repeats=20,
    )
    print(
        f"  update pieces (range over 5 alternating rounds; our step: {step_seconds * 1e3:.1f} ms)"
    )
    for name, (lo, hi) in times.items():
        print(f"    {name:<16} {lo * 1e3:7.3f} - {hi * 1e3:7.3f} ms  "
              f"{lo / step_seconds:6.1%} - {hi / step_seconds:6.1%} of the step")  # fmt: skip
    gap = max(
        (a - b).abs().max().item()
        for name in ("foreach", "for-loop")
        for a, b in zip(owned["fused"], owned[name])
    )
    print(f"    fused vs foreach / for-loop parameters after the same steps: max |diff| {gap:.1e}")
    same = all(torch.equal(a, b) for a, b in zip(owned["fused"], owned["ours"]))
    print(f"    ours (one C++ call per group) vs fused: {'the same bits' if same else 'DIFFERENT'}")


def kernel_pieces(H: int, C: int, T: int, B: int, rounds: int = 7) -> None:
    """The C++ training kernels against the PyTorch ops they replace, on this config's
    shapes, forward + backward with every gradient, rounds alternating:

    * ``c_attn`` and attention (``train_kernel.linear_attention``; PyTorch: ``addmm``, the
      split into heads, SDPA's flash kernel, the copy back);
    * the MLP ``c_proj(gelu(c_fc(x)))`` (``train_kernel.gelu_mlp``, PyTorch's products around
      the kernel's GELU; PyTorch: ``addmm``, ``F.gelu``, ``addmm``).

    The outputs and gradients are checked equal first."""
    import torch.nn.functional as F

    from scratchllm.models import train_kernel

    def sdpa(x: torch.Tensor) -> torch.Tensor:
        heads = (B, T, H, C // H)
        q, k, v = (t.view(heads).transpose(1, 2) for t in c_attn(x).split(C, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return y.transpose(1, 2).reshape(B, T, C)

    torch.manual_seed(0)
    c_attn = torch.nn.Linear(C, 3 * C)
    c_fc, c_proj = torch.nn.Linear(C, 4 * C), torch.nn.Linear(4 * C, C)
    x = torch.randn(B, T, C, requires_grad=True)
    dy = torch.randn(B, T, C)

    def grads(out: torch.Tensor, layers: list[torch.nn.Module]) -> list[torch.Tensor]:
        return list(torch.autograd.grad(out, [x, *(p for m in layers for p in m.parameters())], dy))

    pieces = {
        f"c_attn + attention [{B}, {T}, {C}], {H} heads": {
            "C++": lambda: grads(train_kernel.linear_attention(x, c_attn, H), [c_attn]),
            "PyTorch": lambda: grads(sdpa(x), [c_attn]),
        },
        f"MLP [{B}, {T}, {C}] -> {4 * C} -> {C}": {
            "C++": lambda: grads(train_kernel.gelu_mlp(x, c_fc, c_proj), [c_fc, c_proj]),
            "PyTorch": lambda: grads(c_proj(F.gelu(c_fc(x))), [c_fc, c_proj]),
        },
    }
    print(f"  C++ training kernels vs PyTorch's ops (median of {rounds} alternating rounds):")
    for what, fns in pieces.items():
        diff = max(
            ((a - b).abs().max() / b.abs().max()).item()
            for a, b in zip(fns["C++"](), fns["PyTorch"]())
        )
        per: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(rounds):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                for _ in range(10):
                    fn()
                per[name].append((time.perf_counter() - t0) / 10)
        ratio = statistics.median(c / t for c, t in zip(per["C++"], per["PyTorch"]))
        ms = {name: statistics.median(ts) * 1e3 for name, ts in per.items()}
        print(f"    {what:<42} C++ {ms['C++']:7.3f} ms  PyTorch {ms['PyTorch']:7.3f} ms  "
              f"{ratio:5.2f}x the time  max rel. diff {diff:.1e}")  # fmt: skip


def fixed_cost(steps: dict, T: int, rounds: int) -> None:
    """Each step on batches of one row of 16 tokens, where the arithmetic is next to nothing:
    what is left is Python, PyTorch's dispatch and autograd, and the passes over the weights,
    their gradients and AdamW's state, none of which shrink with the batch."""
    rows = [chunk[:1, : min(T, 16) + 1] for chunk in make_batches(T, 1, 12)]
    timing = time_rounds(steps, rows, 2, rounds)
    print("  the same steps on 1 x 16 tokens (the fixed cost of a step):")
    for impl, t in timing.items():
        print(f"    {impl:<20} {t['seconds'] * 1e3:7.2f} ms/iter")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small config only")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds")
    parser.add_argument(
        "--act", choices=sorted(HF_ACT), default="gelu",
        help="the MLP activation of both models (default: gelu, exact; our GPT's default)",
    )  # fmt: skip
    parser.add_argument(
        "--hf-act", metavar="NAME", default=None,
        help="HF's activation_function instead of --act's twin, e.g. gelu_new (GPT-2's)",
    )  # fmt: skip
    parser.add_argument("--compile", action="store_true", help="also time ours under torch.compile")
    parser.add_argument(
        "--no-torch-ops", action="store_true",
        help="skip the row of ours without the C++ training kernels (PyTorch's ops only)",
    )  # fmt: skip
    parser.add_argument(
        "--malloc-default", action="store_true",
        help="leave glibc returning freed memory to the system (scratchllm train does not)",
    )  # fmt: skip
    parser.add_argument(
        "--breakdown", action="store_true",
        help="also profile our step (where the time goes) and replay its matrix products alone",
    )  # fmt: skip
    parser.add_argument(
        "--levers", action="store_true", help="also time AdamW ours/fused/foreach/loop and the clip"
    )
    parser.add_argument(
        "--kernels", action="store_true",
        help="also time the C++ training kernels against the PyTorch ops they replace",
    )  # fmt: skip
    parser.add_argument(
        "--from-python", action="store_true",
        help="add a row for our step with its kernels called one by one from Python "
        "(train_block.one_call = False: no block in one C++ call, no whole-model Function)",
    )  # fmt: skip
    parser.add_argument(
        "--fixed-cost", action="store_true",
        help="also time each step on one row of 16 tokens: the cost that does not shrink with "
        "the batch",
    )  # fmt: skip
    args = parser.parse_args()
    hf_act = args.hf_act or HF_ACT[args.act]
    from transformers.activations import ACT2CLS

    if hf_act not in ACT2CLS:
        parser.error(
            f"--hf-act {hf_act!r} is not a transformers activation; one of {sorted(ACT2CLS)}"
        )
    kept = False if args.malloc_default else keep_freed_memory()

    from scratchllm.models import train_kernel

    peaks = matmul_peaks()
    shown = ", ".join(f"{name}^2 {rate:.0f}" for name, rate in peaks.items())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"fp32 matmul peak: {max(peaks.values()):.1f} GFLOP/s now, the best of {shown} (best")
    print("of 5 each); MFU uses each round's")
    print(f"the training kernels' products: {train_kernel.products()} (train_kernel.products())")
    print(f"activation: ours {args.act}, HF {hf_act}")
    print(f"glibc keeps freed memory for reuse (both): {'yes' if kept else 'no'}\n")
    names = ["small"] if args.quick else ["small", "baby"]
    header = (
        f"{'config':<6} {'impl':<22} {'params':>11} {'ms/iter':>9} {'tok/s':>8} "
        f"{'MFU':>6} {'MFU+attn':>8} {'vs HF':>6}"
    )
    print(header)
    print("-" * len(header))
    for name in names:
        L, H, C, T, B, warmup, iters = CONFIGS[name]
        hf, hf_step = hf_step_fn(L, H, C, T, hf_act)
        ours, our_step = ours_step_fn(L, H, C, T, B, args.act)
        n_hf, n_ours = unique_params(hf), unique_params(ours)
        assert n_hf == n_ours, f"parameter counts differ: HF {n_hf}, ours {n_ours}"
        batches = make_batches(T, B, warmup + iters)
        steps = {"HF": hf_step, "scratchllm": our_step}
        if args.from_python:
            steps["scratchllm from Python"] = from_python(our_step)
        if not args.no_torch_ops:
            steps["scratchllm torch ops"] = torch_ops(our_step)
        if args.compile:
            _, steps["scratchllm compiled"] = ours_step_fn(L, H, C, T, B, args.act, True)
            t0 = time.perf_counter()
            for chunk in batches[:2]:
                steps["scratchllm compiled"](chunk)
            print(
                f"({name}: torch.compile's first two steps took {time.perf_counter() - t0:.1f} s)"
            )
        timing = time_rounds(steps, batches, warmup, args.rounds)
        for impl, t in timing.items():
            mfu = 6 * n_ours * B * T * t["speed"]  # FLOPs per iteration / (s x peak)
            mfu_attn = (6 * n_ours + 12 * L * C * T) * B * T * t["speed"]
            print(
                f"{name:<6} {impl:<22} {n_ours:>11,} {t['seconds'] * 1e3:>9.1f} "
                f"{B * T / t['seconds']:>8,.0f} {mfu:>6.1%} {mfu_attn:>8.1%} "
                f"{t['vs_first']:>5.2f}x"
            )
        if args.breakdown:
            breakdown(our_step, batches[: min(len(batches), 8)], 6 * n_ours * B * T)
        if args.levers:
            levers(ours, timing["scratchllm"]["seconds"])
        if args.kernels:
            kernel_pieces(H, C, T, B, rounds=args.rounds)
        if args.fixed_cost:
            fixed_cost(steps, T, args.rounds)
        del hf, ours, steps
    print("\nGoals: small >= 1.25x HF and MFU >= 60%; baby MFU >= 80% (MFU = 6N only).")


if __name__ == "__main__":
    main()
