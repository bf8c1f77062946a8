"""The optional C++ training kernels (``train_kernel.cpp``), as ``torch.autograd.Function``s
and plain calls.

A small model's training step on a CPU spends a third of its time outside the matrix
products (``benchmarks/bench_train_throughput.py --breakdown``), mostly in passes over
activations. The kernels share those passes:

* **Causal self-attention** from ``c_attn``'s output. PyTorch's path copies q, k and v
  into heads, runs the flash-attention kernel, copies the heads back side by side, and in
  the backward recomputes the scores and concatenates three gradients. Here the forward
  reads ``qkv [B, T, 3C]`` in place (adding ``c_attn``'s bias, ``linear_attention``), keeps
  the softmax weights ``[B, H, T, T]`` for the backward and writes ``y [B, T, C]``; the
  backward writes the gradient of ``qkv`` in its own layout and sums the bias gradient.
  At the short sequences this is for (``MAX_T``), the weights take no more memory than one
  layer's MLP activations, and keeping them saves the recomputation.
* **The exact GELU.** Inside an MLP (``gelu_mlp``) the forward adds ``c_fc``'s bias and
  keeps the GELU's slope, so that the backward is one product that also sums the bias
  gradient. Alone (``gelu``, e.g. after a LoRA layer), the forward is PyTorch's ``F.gelu``
  and the backward evaluates one exponential where PyTorch's evaluates erf and exp.
* **Layer norm, residual adds and column sums**, for the whole block of ``train_block.py``,
  which also runs in one call each way (``block_forward``, ``block_backward``).
* **The embedding and the cross-entropy**, the two ends of a GPT (``train_ends.py``).
* **The gradient clip** (``clip_grad_norm``): the global norm in one pass and the scaling
  in a second, for the Trainer's step.
* **The matrix products** of the Functions here and of ``train_block.py`` (``mm``,
  ``mm_t``): ``torch.mm``, or on a CPU where that is MKL's AVX2 path beside AVX-512 (not
  Intel's), the kernels' own register-tiled ``gemm``, 10-20 % faster on a Zen 4 core and
  twice as fast on a Zen 5 (``products``); ``mm_t``'s weight transposed by
  ``transposed``.

``CausalSelfAttention``, ``MLP``, ``ffn.GELU``, ``Block`` and ``GPT`` call them when
training a float32 model on a CPU (``wants``, ``linear_fits``, ``train_block.fits``,
``train_ends.embed_fits`` / ``head_fits``), outside ``torch.compile``, with the library
built; everything else (inference, other devices and dtypes, masks, caches, RoPE, dropout,
LoRA or hooked layers, autocast, label smoothing) stays on PyTorch's path, which remains
the reference: ``tests/models/test_train_kernel.py``, ``test_train_block.py`` and
``test_train_ends.py`` hold the two equal in values and gradients. Set
``train_kernel.enabled = False`` to train on PyTorch's path anyway (the ``scratchllm torch
ops`` row of ``bench_train_throughput.py``).

The library is built on first use like the decode step (``cpp_library``); where it cannot
be, a warning says so once and training runs PyTorch's path. The kernels use PyTorch's
intra-op thread count (``torch.set_num_threads``), and every sum they make runs in an
order that does not depend on it.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from scratchllm.models.cpp_library import Library

enabled = True  # False: training always runs PyTorch's kernels

# The attention kernel keeps B * H * T^2 softmax weights per layer for the backward (B 8,
# 6 heads, T 256: 12.6 MB), where the flash kernel keeps one number per row. It takes
# sequences up to MAX_T (at T 512 it still takes half the flash kernel's time) and at most
# MAX_WEIGHTS_BYTES of weights per layer; past either, PyTorch's kernel runs.
MAX_T = 512
MAX_WEIGHTS_BYTES = 32 << 20

_p, _i, _i64, _f = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64, ctypes.c_float

# Each function of train_kernel.cpp: (argument types, return type). The last int of each
# kernel is the thread count.
_SIGNATURES = {
    "attention_work_floats": ([_i, _i], _i64),
    "attention_forward": ([_p] * 5 + [_i] * 5, None),
    "attention_backward": ([_p] * 8 + [_i] * 5, None),
    "gelu_backward": ([_p] * 3 + [_i64, _i], None),
    "gelu_forward_slope": ([_p] * 3 + [_i64, _i64, _i], None),
    "slope_work_floats": ([_i64, _i64], _i64),
    "gelu_slope_backward": ([_p] * 4 + [_i64, _i64, _i], None),
    "layer_norm_forward": ([_p] * 8 + [_i64, _i64, _f, _i], None),
    "residual_add": ([_p] * 3 + [_i64, _i64, _i], None),
    "layer_norm_work_floats": ([_i64, _i64], _i64),
    "layer_norm_backward": ([_p] * 11 + [_i64, _i64, _i], None),
    "norm_chunks": ([_p, _i], _i64),
    "clip_global_norm": ([_p, _p, _i, _f, _p, _i], _f),
    "gemm": ([_i, _i, _i, _p, _i64, _i64, _p, _i64, _p, _i64, _i], None),
    "transpose_matrix": ([_p, _p, _i64, _i64, _i], None),
    "embedding_forward": ([_p] * 4 + [_i64] * 4 + [_i], _i64),
    "embedding_backward": ([_p] * 4 + [_i64] * 5 + [_i], None),
    "cross_entropy_forward": ([_p, _i64] + [_p] * 4 + [_i64] * 3 + [_p, _i], ctypes.c_double),
    "cross_entropy_backward": ([_p, _i64, _p, _p, _p, _f, _p, _i64, _i64, _i64, _i], None),
    "column_sums": ([_p] * 3 + [_i64, _i64, _i], None),
    "block_array_floats": ([_i64] * 5 + [_i, _p], ctypes.c_int),
    "block_forward": ([_p] * 16 + [_i] * 5 + [_f, _f, _i], None),
    "block_backward": ([_p] * 23 + [_i] * 6, None),
}


def _declare(lib: ctypes.CDLL) -> None:
    for name, (argtypes, restype) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, restype


library = Library(
    Path(__file__).with_name("train_kernel.cpp"),
    "C++ training kernel",
    "training runs PyTorch's kernels",
    _declare,
)


def wants(x: torch.Tensor) -> bool:
    """Whether the kernels should compute this training tensor (see the module's doc)."""
    return (
        enabled
        and x.requires_grad
        and torch.is_grad_enabled()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.compiler.is_compiling()
        and library.load() is not None
    )


# -- the matrix products -------------------------------------------------------------------

# Which product the kernels' Functions run: "cpp" (train_kernel.cpp's ``gemm``), "torch"
# (``torch.mm``), or None for ``products()``'s choice for this machine.
matmul_impl: str | None = None


def products() -> str:
    """``"cpp"`` or ``"torch"``: whose matrix products the training kernels run.

    PyTorch's CPU build multiplies float32 matrices with Intel's MKL, which on other
    vendors' CPUs takes its AVX2 code path even where the CPU has AVX-512: on two cores of
    this project's AMD EPYC that is 205 GFLOP/s on Zen 5, where ``gemm``'s AVX-512 tiles
    reach 420-510 on a GPT block's products, and 180-200 on Zen 4, whose AVX-512 runs on
    256-bit units, where ``gemm`` reaches 210-220 (``bench_train_throughput.py`` prints
    both peaks). So the choice is ``"cpp"`` on a CPU with AVX-512 that is not Intel's,
    ``"torch"`` elsewhere, unless ``matmul_impl`` says otherwise; the same machine always
    makes the same choice, so a resumed run multiplies as the first did.
    """
    if matmul_impl is not None:
        if matmul_impl not in ("cpp", "torch"):
            raise ValueError(
                f"train_kernel.matmul_impl must be 'cpp', 'torch' or None, not {matmul_impl!r}"
            )
        return matmul_impl
    return _machine_products()


@functools.cache
def _machine_products() -> str:
    from scratchllm.models.cpp_library import cpu_field

    flags, vendor = f"{cpu_field('flags')} ", cpu_field("vendor_id") or "GenuineIntel"
    return "cpp" if " avx512f " in flags and "GenuineIntel" not in vendor else "torch"


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for 2-D float32 CPU matrices: ``gemm`` where ``products()`` is ``"cpp"``
    and it takes them (``b`` row-major with a multiple of 16 columns; ``a`` with rows or
    columns of stride 1: row-major, a slice of a row-major matrix's columns, or the
    transpose of either), else ``torch.mm``."""
    M, K = a.shape
    N = b.shape[1]
    if (
        products() != "cpp"
        or N % 16
        or b.shape[0] != K  # (torch.mm names the mismatch)
        or not b.is_contiguous()
        or b.dtype is not torch.float32
    ):
        return a @ b
    ars, acs = a.stride()
    if not (acs == 1 or ars == 1) or a.dtype is not torch.float32:
        return a @ b
    out = b.new_empty(M, N)
    with profiled("matmul"):
        _lib().gemm(M, N, K, a.data_ptr(), ars, acs, b.data_ptr(), N, out.data_ptr(), N,
                    torch.get_num_threads())  # fmt: skip
    return out


def transposed(w: torch.Tensor) -> torch.Tensor:
    """A row-major copy of ``w.t()`` for a contiguous float32 CPU matrix ``w`` with a multiple
    of 16 rows: the kernels' ``transpose_matrix`` (16 x 16 blocks in registers, six times as
    fast as ``w.t().contiguous()`` on a GPT's weights), equal to it bit for bit."""
    if w.dim() != 2 or w.shape[0] % 16 or not w.is_contiguous() or w.dtype is not torch.float32:
        raise ValueError(
            f"transposed takes a contiguous float32 matrix with a multiple of 16 rows, got "
            f"{w.dtype} {tuple(w.shape)}{'' if w.is_contiguous() else ' (not contiguous)'}"
        )
    return _transpose(w)


def _transpose(w: torch.Tensor) -> torch.Tensor:
    """``transposed`` for a caller that has checked ``w`` itself (``mm_t``, every forward),
    except that ``w``'s rows need not be a multiple of 16: the copy's columns are then
    padded with zeros to the next one (``[in, out rounded up to 16]``)."""
    rows, cols = w.shape
    out = w.new_empty(cols, -(-rows // 16) * 16)
    _kernel("transpose_matrix", w, out, rows, cols)
    return out


def mm_t(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``x @ w.t()``, a linear layer's product (``w [out, in]``): through ``mm`` on a
    row-major copy of ``w.t()`` (``transposed``) where ``gemm`` runs it."""
    if products() == "cpp" and w.shape[0] % 16 == 0:
        fits = w.is_contiguous() and w.dtype is torch.float32
        return mm(x, _transpose(w) if fits else w.t().contiguous())
    return x @ w.t()


# glibc serves an allocation of 32 MB or more (its largest mmap threshold, which
# scratchllm.memory sets) with an mmap of its own, which faults in page by page every time:
# the kernels' buffers are packed into chunks well under it, which it keeps for reuse.
CHUNK_FLOATS = (16 << 20) // 4


def _plan(sizes) -> list[list[tuple[int, int]]]:
    """Arrays of ``sizes`` floats laid out in chunks of at most ``CHUNK_FLOATS`` (one array
    larger than that alone), in order, each on 16 floats: per chunk, ``(array, offset)``."""
    chunks: list[list[tuple[int, int]]] = []
    used = CHUNK_FLOATS + 1
    for i, n in enumerate(sizes):
        if not n:
            continue
        if used + n > CHUNK_FLOATS:
            chunks.append([])
            used = 0
        chunks[-1].append((i, used))
        used += -(-n // 16) * 16
    return chunks


def packed(like: torch.Tensor, sizes) -> tuple[list[torch.Tensor], list[int]]:
    """Float32 arrays of ``sizes`` elements in chunks (``_plan``) on ``like``'s device:
    ``(the chunks, each array's address)``, 0 for an empty array."""
    chunks, addresses = [], [0] * len(sizes)
    for plan in _plan(sizes):
        last, off = plan[-1]
        chunk = like.new_empty(off + sizes[last], dtype=torch.float32)
        base = chunk.data_ptr()
        for i, off in plan:
            addresses[i] = base + 4 * off
        chunks.append(chunk)
    return chunks, addresses


def packed_tensors(like: torch.Tensor, shapes) -> list[torch.Tensor | None]:
    """Float32 tensors of ``shapes`` (None: none), views of chunks laid out as ``packed``'s
    (each chunk split in one call: a slice and a view for each costs twice the time)."""
    sizes = [0 if s is None else math.prod(s) for s in shapes]
    out: list[torch.Tensor | None] = [None] * len(shapes)
    for plan in _plan(sizes):
        last, end = plan[-1]
        chunk = like.new_empty(end + sizes[last], dtype=torch.float32)
        cuts = [b - a for (_, a), (_, b) in zip(plan, plan[1:])] + [sizes[last]]
        for (i, _), part in zip(plan, chunk.split_with_sizes(cuts)):
            out[i] = (part if len(part) == sizes[i] else part[: sizes[i]]).view(shapes[i])
    return out


@functools.lru_cache(maxsize=64)
def block_arrays(B: int, T: int, C: int, H: int, F: int, threads: int) -> tuple[int, ...]:
    """The floats of each array a block's one C++ call uses (``block_array_floats``): its
    12 saved arrays, the forward's 5 and the backward's 9 of scratch."""
    sizes = (ctypes.c_int64 * 32)()
    n = _lib().block_array_floats(B, T, C, H, F, threads, sizes)
    return tuple(sizes[:n])


def _row_stride(T: int) -> int:
    """The softmax weights' row stride: T rounded up to 16 (the kernel's ``Tp``)."""
    return -(-T // 16) * 16


def attention_fits(B: int, T: int, n_head: int, head_dim: int) -> bool:
    """The shapes the attention kernel takes: ``head_dim`` a multiple of 16 (whole vectors),
    ``T <= MAX_T`` and the softmax weights within ``MAX_WEIGHTS_BYTES``."""
    weights = 4 * B * n_head * T * _row_stride(T)
    return head_dim % 16 == 0 and 0 < T <= MAX_T and weights <= MAX_WEIGHTS_BYTES


def _lib() -> ctypes.CDLL:
    lib = library.load()
    if lib is None:
        raise RuntimeError(f"the C++ training kernel is unavailable: {library.failed}")
    return lib


# record_function costs 5 us a call even with no profiler running (ten a block): name the
# kernels only when one runs.
_profiler_enabled = getattr(torch._C._autograd, "_profiler_enabled", lambda: True)


def profiled(name: str):
    """The profiler's range ``scratchllm::name`` when a profiler runs, else nothing."""
    if _profiler_enabled():
        return torch.profiler.record_function(f"scratchllm::{name}")
    return contextlib.nullcontext()


_PROFILED_AS = {"gelu_forward_slope": "gelu_forward", "gelu_slope_backward": "gelu_backward"}


def _kernel(name: str, *args) -> None:
    """The library's function ``name`` on ``args`` (tensors passed by address, None as a null
    pointer) and PyTorch's thread count, named ``scratchllm::name`` for the profiler."""
    ptrs = [a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args]
    with profiled(_PROFILED_AS.get(name, name)):
        getattr(_lib(), name)(*ptrs, torch.get_num_threads())


def _work(T: int, D: int) -> torch.Tensor:
    n = _lib().attention_work_floats(T, D)
    return torch.empty(torch.get_num_threads() * n, dtype=torch.float32)


def _attention_forward(qkv: torch.Tensor, bias: torch.Tensor | None, n_head: int):
    """The kernel's forward: ``(y, weights)``; with ``bias``, adds it to ``qkv`` in place."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    y = qkv.new_empty(B, T, C)
    weights = qkv.new_empty(B, n_head, T, _row_stride(T))
    work = _work(T, C // n_head)  # held here: the kernel writes into it
    _kernel("attention_forward", qkv, bias, y, weights, work, B, T, n_head, C // n_head)
    return y, weights


def _attention_backward(ctx, dy: torch.Tensor, bias_grad: bool):
    """The kernel's backward: ``(dqkv, the bias gradient or None)``."""
    qkv, y, weights = ctx.saved_tensors[:3]
    B, T, C3 = qkv.shape
    D = C3 // 3 // ctx.n_head
    dy = dy.contiguous()
    dqkv, work = torch.empty_like(qkv), _work(T, D)
    db = qkv.new_empty(C3) if bias_grad else None
    partial = qkv.new_empty(B, C3) if bias_grad else None
    _kernel("attention_backward", qkv, y, weights, dy, dqkv, db, partial, work, B, T, ctx.n_head, D)
    return dqkv, db


class _CausalAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qkv: torch.Tensor, n_head: int) -> torch.Tensor:
        qkv = qkv.contiguous()
        y, weights = _attention_forward(qkv, None, n_head)
        ctx.save_for_backward(qkv, y, weights)
        ctx.n_head = n_head
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: torch.Tensor):
        return _attention_backward(ctx, dy, False)[0], None


class _LinearAttention(torch.autograd.Function):
    """``causal_attention(c_attn(x))`` with c_attn's product PyTorch's and its bias added,
    and summed in the backward, by the kernel."""

    @staticmethod
    def forward(ctx, x, weight, bias, n_head: int) -> torch.Tensor:
        B, T, C = x.shape
        qkv = mm_t(x.view(B * T, C), weight).view(B, T, -1)
        y, weights = _attention_forward(qkv, bias, n_head)
        ctx.save_for_backward(qkv, y, weights, x, weight)
        ctx.n_head = n_head
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: torch.Tensor):
        x, weight = ctx.saved_tensors[3:]
        need_x, need_w, need_b, _ = ctx.needs_input_grad
        dqkv, db = _attention_backward(ctx, dy, need_b)
        B, T, C = x.shape
        flat = dqkv.view(B * T, -1)
        dw = mm(flat.t(), x.view(B * T, C)) if need_w else None
        dx = mm(flat, weight).view(B, T, C) if need_x else None
        return dx, dw, db, None


def causal_attention(qkv: torch.Tensor, n_head: int) -> torch.Tensor:
    """``softmax(q k^T / sqrt(D), causal) v`` with the heads side by side: ``qkv [B, T, 3C]``
    (``c_attn``'s output: q, k, v each ``C = n_head * D`` wide) -> ``[B, T, C]``.
    The caller checks ``wants(qkv)`` and ``attention_fits(B, T, n_head, D)``."""
    if qkv.dim() != 3 or qkv.shape[2] % (3 * n_head):
        raise ValueError(f"qkv must be [B, T, 3 * n_head * D], got {tuple(qkv.shape)}")
    B, T, C3 = qkv.shape
    if not attention_fits(B, T, n_head, C3 // 3 // n_head):
        raise ValueError(
            f"qkv {tuple(qkv.shape)} with {n_head} heads: the attention kernel takes "
            f"D a multiple of 16, T <= {MAX_T} and B * n_head * T^2 * 4 bytes of weights "
            f"<= {MAX_WEIGHTS_BYTES >> 20} MB"
        )
    return _CausalAttention.apply(qkv, n_head)


def linear_attention(x: torch.Tensor, c_attn: torch.nn.Linear, n_head: int) -> torch.Tensor:
    """``causal_attention(c_attn(x), n_head)`` with c_attn's bias folded into the kernel:
    ``x [B, T, C]`` -> ``[B, T, C]``. The caller checks ``linear_fits(x, c_attn)`` and
    ``attention_fits``."""
    return _LinearAttention.apply(x.contiguous(), c_attn.weight, c_attn.bias, n_head)


class _Gelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        ctx.save_for_backward(x)
        return torch.nn.functional.gelu(x)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        dy = dy.contiguous()
        dx = torch.empty_like(x)
        _kernel("gelu_backward", x, dy, dx, x.numel())
        return dx


def gelu(x: torch.Tensor) -> torch.Tensor:
    """The exact GELU ``x * Phi(x)``. The caller checks ``wants(x)``."""
    _lib()  # fail here, not in the backward
    return _Gelu.apply(x)


def gelu_keeping_slope(h: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``gelu(h + bias)`` for c_fc's product ``h [N, hidden]``, which gets the GELU's slope
    written over it for ``gelu_slope_backward``."""
    a = torch.empty_like(h)
    _kernel("gelu_forward_slope", h, bias, a, *h.shape)
    return a


def gelu_slope_backward(dy: torch.Tensor, slope: torch.Tensor, bias_grad: bool):
    """``dy * slope``, written over ``dy`` (which must be the caller's own), and its column
    sums (c_fc's bias gradient) if ``bias_grad``, else None."""
    db = dy.new_empty(dy.shape[1]) if bias_grad else None
    work = dy.new_empty(_lib().slope_work_floats(*dy.shape))
    _kernel("gelu_slope_backward", dy, slope, db, work, *dy.shape)
    return db


class _GeluMLP(torch.autograd.Function):
    """``c_proj(gelu(c_fc(x)))`` on 2-D ``x [N, C]``: PyTorch's matrix products around the
    kernel's GELU, which keeps the slope for the backward (``gelu_forward_slope``)."""

    @staticmethod
    def forward(ctx, x, w_fc, b_fc, w_proj, b_proj):
        h = mm_t(x, w_fc)  # the kernel adds the bias
        a = gelu_keeping_slope(h, b_fc)
        if products() == "cpp":
            out = mm_t(a, w_proj)
            if b_proj is not None:
                out += b_proj
        else:
            out = torch.addmm(b_proj, a, w_proj.t()) if b_proj is not None else a @ w_proj.t()
        ctx.save_for_backward(x, w_fc, a, h, w_proj)  # h now holds the slope
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout: torch.Tensor):
        x, w_fc, a, slope, w_proj = ctx.saved_tensors
        need_x, need_wfc, need_bfc, need_wproj, need_bproj = ctx.needs_input_grad
        dout = dout.contiguous()
        dw_proj = mm(dout.t(), a) if need_wproj else None
        db_proj = dout.sum(0) if need_bproj else None
        dx = dw_fc = db_fc = None
        if need_x or need_wfc or need_bfc:
            dh = mm(dout, w_proj)  # (N, hidden): ours, so the kernel writes over it
            db_fc = gelu_slope_backward(dh, slope, need_bfc)
            dw_fc = mm(dh.t(), x) if need_wfc else None
            dx = mm(dh, w_fc) if need_x else None
        return dx, dw_fc, db_fc, dw_proj, db_proj


def hooked(m: torch.nn.Module) -> bool:
    """Whether ``m`` has a forward or backward hook of its own, which a kernel that computes
    the module itself would skip."""
    return bool(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
    )


def _can_run() -> bool:
    """What every kernel path asks first: the kernels on, gradients wanted, no autocast, not
    compiling, no global module hooks, the library built."""
    module = torch.nn.modules.module
    return (
        enabled
        and torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
        and not (module._global_forward_hooks or module._global_forward_pre_hooks)
        and library.load() is not None
    )


def _plain_linear(m: torch.nn.Module) -> bool:
    """An ``nn.Linear`` itself (not a LoRA or quantised layer) with float32 CPU weights and no
    hooks that the fused MLP would skip. (Parameters read from ``_parameters``: a module's
    ``__getattr__`` costs half a microsecond, and this runs for every layer's call.)"""
    if type(m) is not torch.nn.Linear:
        return False
    w, b = m._parameters["weight"], m._parameters["bias"]
    return (
        w.is_cpu
        and w.dtype is torch.float32
        and (b is None or b.dtype is torch.float32)
        and not hooked(m)
    )


def _trains(m: torch.nn.Module) -> bool:
    w, b = m._parameters["weight"], m._parameters["bias"]
    return w.requires_grad or (b is not None and b.requires_grad)


def linear_fits(x: torch.Tensor, *linears: torch.nn.Module) -> bool:
    """Whether a kernel that computes these layers' products itself (``linear_attention``,
    ``gelu_mlp``) takes them on ``x``: plain float32 ``nn.Linear`` layers on a float32 CPU
    input, gradients wanted, no autocast, not compiling, the library built. (Checked on
    every layer's call, so written for speed: a block asks about 1 us of it.)"""
    return (
        x.is_cpu
        and x.dtype is torch.float32
        and all(_plain_linear(m) for m in linears)
        and (x.requires_grad or any(_trains(m) for m in linears))
        and _can_run()
    )


def gelu_mlp(x: torch.Tensor, c_fc: torch.nn.Linear, c_proj: torch.nn.Linear) -> torch.Tensor:
    """``c_proj(gelu(c_fc(x)))`` with the exact GELU, for ``x [..., C]``. The caller checks
    ``linear_fits(x, c_fc, c_proj)``."""
    flat = x.reshape(-1, x.shape[-1])
    if not flat.is_contiguous():
        flat = flat.contiguous()
    out = _GeluMLP.apply(flat, c_fc.weight, c_fc.bias, c_proj.weight, c_proj.bias)
    return out.view(*x.shape[:-1], out.shape[-1])


def clip_grad_norm(tensors: list[torch.Tensor], max_norm: float) -> torch.Tensor | None:
    """``torch.nn.utils.clip_grad_norm_(tensors, max_norm)`` in one call of the kernel: the
    norm in one pass and, where it exceeds ``max_norm``, the scaling in a second, where
    PyTorch takes a norm per tensor and scales each (about a hundred operations for a small
    GPT). Returns the norm before clipping as a float32 scalar tensor, or None when the
    kernel does not take ``tensors`` (not all contiguous float32 CPU tensors, ``enabled``
    off, or no library): then nothing was changed."""
    if not (
        enabled
        and tensors
        and all(t.is_cpu and t.dtype is torch.float32 and t.is_contiguous() for t in tensors)
    ):
        return None
    lib = library.load()
    if lib is None:
        return None
    n = len(tensors)
    ptrs = (ctypes.c_void_p * n)(*(t.data_ptr() for t in tensors))
    sizes = (ctypes.c_int64 * n)(*(t.numel() for t in tensors))
    partial = torch.empty(lib.norm_chunks(sizes, n), dtype=torch.float64)
    norm = lib.clip_global_norm(
        ptrs, sizes, n, max_norm, partial.data_ptr(), torch.get_num_threads()
    )
    return torch.tensor(norm, dtype=torch.float32)
