"""The optional C++ training kernels (``train_kernel.cpp``): causal attention, forward and
backward, and the exact GELU's backward, as ``torch.autograd.Function``s.

A small model's training step on a CPU spends a third of its time outside the matrix
products (``benchmarks/bench_train_throughput.py --breakdown``). Two pieces of that are
worth a kernel of their own:

* **Causal self-attention** from ``c_attn``'s output. PyTorch's path copies q, k and v
  into heads, runs the flash-attention kernel, copies the heads back side by side, and in
  the backward recomputes the scores and concatenates three gradients. Here the forward
  reads ``qkv [B, T, 3C]`` in place, keeps the softmax weights ``[B, H, T, T]`` for the
  backward and writes ``y [B, T, C]``; the backward writes the gradient of ``qkv`` in its
  own layout. At the short sequences this is for (``MAX_T``), the weights take no more
  memory than one layer's MLP activations, and keeping them saves the recomputation.
* **The exact GELU's backward**, which evaluates one exponential where PyTorch's
  ``gelu_backward`` evaluates erf and exp (the forward is PyTorch's ``F.gelu``).

``CausalSelfAttention`` and ``ffn.GELU`` call them when ``wants(x)``: a float32 CPU tensor that
needs a gradient, outside ``torch.compile``, with the library built; everything else
(inference, other devices and dtypes, masks, caches, RoPE, dropout on the weights) stays
on PyTorch's path, which remains the reference: ``tests/models/test_train_kernel.py``
holds the two equal in values and gradients. Set ``train_kernel.enabled = False`` to train
on PyTorch's path anyway (the ``scratchllm torch ops`` row of
``bench_train_throughput.py``).

The library is built on first use like the decode step (``cpp_library``); where it cannot
be, a warning says so once and training runs PyTorch's path. The kernels use PyTorch's
intra-op thread count (``torch.set_num_threads``), one (batch, head) per task for attention.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import torch
from torch.autograd.function import once_differentiable

from scratchllm.models.cpp_library import Library

enabled = True  # False: attention and GELU always run PyTorch's kernels

# The attention kernel keeps B * H * T^2 softmax weights per layer for the backward (B 8,
# 6 heads, T 256: 12.6 MB), where the flash kernel keeps one number per row. It takes
# sequences up to MAX_T (at T 512 it still takes half the flash kernel's time) and at most
# MAX_WEIGHTS_BYTES of weights per layer; past either, PyTorch's kernel runs.
MAX_T = 512
MAX_WEIGHTS_BYTES = 32 << 20

_p = ctypes.c_void_p
_i = ctypes.c_int32


def _declare(lib: ctypes.CDLL) -> None:
    lib.attention_work_floats.argtypes = [_i, _i]
    lib.attention_work_floats.restype = ctypes.c_int64
    lib.attention_forward.argtypes = [_p] * 4 + [_i] * 5
    lib.attention_forward.restype = None
    lib.attention_backward.argtypes = [_p] * 6 + [_i] * 5
    lib.attention_backward.restype = None
    lib.gelu_backward.argtypes = [_p, _p, _p, ctypes.c_int64, _i]
    lib.gelu_backward.restype = None


library = Library(
    Path(__file__).with_name("train_kernel.cpp"),
    "C++ training kernel",
    "training uses PyTorch's attention and GELU",
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


def _work(T: int, D: int) -> torch.Tensor:
    n = _lib().attention_work_floats(T, D)
    return torch.empty(torch.get_num_threads() * n, dtype=torch.float32)


class _CausalAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qkv: torch.Tensor, n_head: int) -> torch.Tensor:
        B, T, C3 = qkv.shape
        C = C3 // 3
        D = C // n_head
        qkv = qkv.contiguous()
        y = qkv.new_empty(B, T, C)
        weights = qkv.new_empty(B, n_head, T, _row_stride(T))
        work = _work(T, D)  # held here: the kernel writes into it
        with torch.profiler.record_function("scratchllm::attention_forward"):
            _lib().attention_forward(
                qkv.data_ptr(), y.data_ptr(), weights.data_ptr(), work.data_ptr(),
                B, T, n_head, D, torch.get_num_threads(),
            )  # fmt: skip
        ctx.save_for_backward(qkv, y, weights)
        ctx.n_head = n_head
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy: torch.Tensor):
        qkv, y, weights = ctx.saved_tensors
        B, T, C3 = qkv.shape
        D = C3 // 3 // ctx.n_head
        dy = dy.contiguous()
        dqkv, work = torch.empty_like(qkv), _work(T, D)
        with torch.profiler.record_function("scratchllm::attention_backward"):
            _lib().attention_backward(
                qkv.data_ptr(), y.data_ptr(), weights.data_ptr(), dy.data_ptr(),
                dqkv.data_ptr(), work.data_ptr(), B, T, ctx.n_head, D,
                torch.get_num_threads(),
            )  # fmt: skip
        return dqkv, None


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
        with torch.profiler.record_function("scratchllm::gelu_backward"):
            _lib().gelu_backward(
                x.data_ptr(), dy.data_ptr(), dx.data_ptr(), x.numel(), torch.get_num_threads()
            )
        return dx


def gelu(x: torch.Tensor) -> torch.Tensor:
    """The exact GELU ``x * Phi(x)``. The caller checks ``wants(x)``."""
    _lib()  # fail here, not in the backward
    return _Gelu.apply(x)
