"""A whole pre-norm GPT block as one ``torch.autograd.Function`` for training on a CPU: the
guarded twin of ``layers.block.Block.forward`` that the block calls when ``fits`` holds.

At a small model's sizes (4 x 128, 768 tokens a step) a block on PyTorch's path is 88
operations and 31 autograd nodes, forward and backward, and what is not a matrix product is
mostly passes over activations that a few kernels can share. Here the eight matrix
products (and the backward's sixteen) go through ``train_kernel.mm`` (PyTorch's, or the
kernels' own ``gemm`` where ``train_kernel.products()`` says so), and everything between
them runs the C++ kernels of ``train_kernel.cpp``:

* ``ln_1``: one pass (``layer_norm_forward``), keeping each row's mean and 1 / std;
* ``c_attn``'s bias, the causal attention and its softmax weights (``attention_forward``);
* ``x + c_proj(y)`` and ``ln_2`` of it: one pass that adds the residual and the bias to the
  product and normalises the sum;
* ``c_fc``'s bias and the exact GELU, keeping its slope (``gelu_forward_slope``);
* the last residual add with ``mlp.c_proj``'s bias (``residual_add``).

The backward mirrors it: each layer norm's backward also adds the residual's gradient that
went around it, and sums the bias gradient of the layer before; the GELU's is one product.
No bias is copied into every row first, as ``addmm`` does, and no sum of a bias gradient is
a pass of its own, except ``mlp.c_proj``'s (``column_sums``).

Where the products are the kernels' ``gemm`` (``train_kernel.products()``) and the MLP's
width is a multiple of 16, the same sequence runs as one C++ call each way
(``_CppBlock``: ``block_forward`` / ``block_backward``), bit for bit: from Python it is 13
calls forward and 17 backward, each with tensors to allocate, and Python between kernels
runs slower than alone, its caches evicted by them. What the backward reads is then one
buffer.

``tests/models/test_train_block.py`` holds it equal to the module path (values and every
gradient, to float32 rounding), the one call equal to the sequence bit for bit, and checks
that every other block stays on that path: a mask, not causal, dropout, RMSNorm, ReLU or
tanh GELU, a mixture of experts, heads not a multiple of 16 wide, LoRA or hooked layers,
autocast, float64, no gradient, ``train_kernel.enabled = False`` (and the checks keep other
devices there too).
"""

from __future__ import annotations

import ctypes

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from scratchllm.models import train_kernel
from scratchllm.models.train_kernel import (
    _attention_backward,
    _attention_forward,
    _kernel,
    _lib,
    gelu_keeping_slope,
    gelu_slope_backward,
    mm,
    mm_t,
)

# False: a block's kernels are called one by one from Python even where they could run as
# one C++ call (``_CppBlock``), and no GPT runs as one Function (``train_gpt``): the same
# bits, with each kernel and product its own profiler range (``bench_train_throughput.py
# --breakdown``).
one_call = True


def _has_hooks(block: nn.Module) -> bool:
    """Whether a module inside the block has a hook its own call would run. (The modules read
    from ``_modules``, not walked by ``block.modules()``, which took a tenth of a small
    step: this runs for every block's call.)"""
    attn, mlp = block._modules["attn"]._modules, block._modules["mlp"]._modules
    return any(
        train_kernel.hooked(m) for m in (*block._modules.values(), *attn.values(), *mlp.values())
    )


def fits(block: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``block(x)`` (no mask, cache or RoPE; the caller checks those) can run as one
    Function: a LayerNorm / attention / exact-GELU MLP block of plain ``nn.Linear`` layers
    without dropout, in training with gradients wanted (``train_kernel.linear_fits``), on
    shapes the attention kernel takes."""
    from scratchllm.models.layers.ffn import GELU, MLP  # (the layers import this module)
    from scratchllm.models.layers.norms import LayerNorm

    mods = block._modules
    attn, mlp, ln_1, ln_2 = mods["attn"], mods["mlp"], mods["ln_1"], mods["ln_2"]
    if not (type(mlp) is MLP and type(ln_1) is LayerNorm and type(ln_2) is LayerNorm):
        return False
    a, m = attn._modules, mlp._modules
    act = m["act"]
    dropout = block.training and (attn.dropout > 0 or m["dropout"].p > 0)
    return (
        x.dim() == 3
        and type(act) is GELU
        and act.approximate == "none"
        and attn.impl == "sdpa"
        and not dropout
        and train_kernel.attention_fits(x.shape[0], x.shape[1], attn.n_head, attn.head_dim)
        and train_kernel.linear_fits(x, a["c_attn"], a["c_proj"], m["c_fc"], m["c_proj"])
        and ln_1._parameters["weight"].dtype is torch.float32
        and ln_2._parameters["weight"].dtype is torch.float32
        and not _has_hooks(block)
    )


def _t(n: int, like: torch.Tensor) -> torch.Tensor:
    return like.new_empty(n)


class _Block(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, n_head, eps1, eps2, g1, be1, wa, ba, wo, bo, g2, be2, wf, bf, wp, bp):
        B, T, C = x.shape
        N = B * T
        xf = x.reshape(N, C)
        h1, mean1, rstd1 = torch.empty_like(xf), _t(N, xf), _t(N, xf)
        _kernel("layer_norm_forward", xf, None, None, g1, be1, h1, mean1, rstd1, N, C, eps1)
        qkv = mm_t(h1, wa).view(B, T, 3 * C)
        y, weights = _attention_forward(qkv, ba, n_head)  # adds c_attn's bias to qkv
        x1 = mm_t(y.view(N, C), wo)  # the next kernel makes it x + c_proj(y) and normalises it
        h2, mean2, rstd2 = torch.empty_like(xf), _t(N, xf), _t(N, xf)
        _kernel("layer_norm_forward", x1, xf, bo, g2, be2, h2, mean2, rstd2, N, C, eps2)
        slope = mm_t(h2, wf)  # the kernel writes GELU's slope over it
        a = gelu_keeping_slope(slope, bf)
        out = mm_t(a, wp)
        _kernel("residual_add", out, x1, bp, N, C)
        ctx.save_for_backward(
            qkv, y, weights, xf, mean1, rstd1, h1, x1, mean2, rstd2, h2, slope, a,
            g1, wa, wo, g2, wf, wp,
        )  # fmt: skip
        ctx.n_head = n_head
        ctx.biases = be1 is not None, ba is not None, bo is not None, be2 is not None
        return out.view(B, T, C)

    @staticmethod
    @once_differentiable
    def backward(ctx, dout: torch.Tensor):
        (qkv, y, weights, xf, mean1, rstd1, h1, x1, mean2, rstd2, h2, slope, a,
         g1, wa, wo, g2, wf, wp) = ctx.saved_tensors  # fmt: skip
        has_be1, has_ba, has_bo, has_be2 = ctx.biases
        need = ctx.needs_input_grad
        N, C = xf.shape
        lib = _lib()
        d2 = dout.reshape(N, C).contiguous()
        # the MLP: its GELU's gradient is written over dh, which sums c_fc's bias gradient
        dbp = None
        if need[15]:  # as the kernels sum columns (gelu_slope_backward), not torch.sum
            dbp, work = _t(C, d2), _t(lib.slope_work_floats(N, C), d2)
            _kernel("column_sums", d2, dbp, work, N, C)
        dwp = mm(d2.t(), a) if need[14] else None
        dh = mm(d2, wp)
        dbf = gelu_slope_backward(dh, slope, need[13])
        dwf = mm(dh.t(), h2) if need[12] else None
        # dx1 = d2 (around ln_2) + ln_2's backward; dx1's column sums: c_proj's bias gradient
        dh2 = mm(dh, wf)
        dx1, dg2 = torch.empty_like(dh2), _t(C, dh2)
        dbe2 = _t(C, dh2) if has_be2 else None
        dbo = _t(C, dh2) if has_bo else None
        work = _t(lib.layer_norm_work_floats(N, C), dh2)
        _kernel(
            "layer_norm_backward", dh2, x1, mean2, rstd2, g2, d2, dx1, dg2, dbe2, dbo, work, N, C
        )
        # attention, then dx = dx1 (around ln_1) + ln_1's backward, written over dh1
        dwo = mm(dx1.t(), y.view(N, C)) if need[8] else None
        dqkv, dba = _attention_backward(ctx, mm(dx1, wo).view(y.shape), has_ba)
        dqkv = dqkv.view(N, 3 * C)
        dwa = mm(dqkv.t(), h1) if need[6] else None
        dx = mm(dqkv, wa)
        dg1 = _t(C, dx)
        dbe1 = _t(C, dx) if has_be1 else None
        _kernel(
            "layer_norm_backward", dx, xf, mean1, rstd1, g1, dx1, dx, dg1, dbe1, None, work, N, C
        )
        grads = (
            dx.view(y.shape), None, None, None, dg1, dbe1, dwa, dba, dwo, dbo, dg2, dbe2,
            dwf, dbf, dwp, dbp,
        )  # fmt: skip
        return tuple(g if n else None for g, n in zip(grads, need))


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


SAVED, FORWARD_SCRATCH = 12, 5  # block_array_floats' arrays: saved, then each scratch


def addresses(ptrs) -> ctypes.Array:
    """Addresses as the C array of pointers a block's one call takes."""
    return (ctypes.c_void_p * len(ptrs))(*ptrs)


class _CppBlock(torch.autograd.Function):
    """``_Block`` in one C++ call each way (``block_forward`` / ``block_backward``: the same
    kernels and products in the same order), for the machines whose products are the
    kernels' ``gemm`` (``train_kernel.products()``). What the backward reads is a few
    chunks (``train_kernel.packed``)."""

    @staticmethod
    def forward(ctx, x, n_head, eps1, eps2, g1, be1, wa, ba, wo, bo, g2, be2, wf, bf, wp, bp):
        B, T, C = x.shape
        F = wf.shape[0]
        lib, threads = _lib(), torch.get_num_threads()
        sizes = train_kernel.block_arrays(B, T, C, n_head, F, threads)
        saved, saved_at = train_kernel.packed(x, sizes[:SAVED])
        scratch, scratch_at = train_kernel.packed(x, sizes[SAVED : SAVED + FORWARD_SCRATCH])
        out = torch.empty_like(x)
        params = (g1, be1, wa, ba, wo, bo, g2, be2, wf, bf, wp, bp)
        with train_kernel.profiled("block_forward"):
            lib.block_forward(
                x.data_ptr(), out.data_ptr(), addresses(saved_at), addresses(scratch_at),
                *map(_ptr, params), B, T, C, n_head, F, eps1, eps2, threads,
            )  # fmt: skip
        del scratch
        ctx.save_for_backward(x, g1, wa, wo, g2, wf, wp, *saved)
        ctx.saved_at = saved_at
        ctx.n_head = n_head
        ctx.biases = be1 is not None, ba is not None, bo is not None, be2 is not None
        ctx.biases_mlp = bf is not None, bp is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout: torch.Tensor):
        x, g1, wa, wo, g2, wf, wp, *_ = ctx.saved_tensors  # (the rest: the saved chunks)
        has_be1, has_ba, has_bo, has_be2 = ctx.biases
        has_bf, has_bp = ctx.biases_mlp
        need = ctx.needs_input_grad
        B, T, C = x.shape
        F = wf.shape[0]
        lib, threads = _lib(), torch.get_num_threads()
        dout = dout.contiguous()
        sizes = train_kernel.block_arrays(B, T, C, ctx.n_head, F, threads)
        scratch, scratch_at = train_kernel.packed(x, sizes[SAVED + FORWARD_SCRATCH :])
        dx = torch.empty_like(x)

        def grad(wanted: bool, *shape: int) -> torch.Tensor | None:
            return x.new_empty(shape) if wanted else None

        # The norms' gains and biases and the attention's biases are summed in the passes
        # that run anyway, so they are written whenever they exist; the weights' products
        # and the MLP's bias sums run only where wanted.
        dg1, dbe1, dba = x.new_empty(C), grad(has_be1, C), grad(has_ba, 3 * C)
        dg2, dbe2, dbo = x.new_empty(C), grad(has_be2, C), grad(has_bo, C)
        dwa, dwo = grad(need[6], 3 * C, C), grad(need[8], C, C)
        dwf, dbf = grad(need[12], F, C), grad(has_bf and need[13], F)
        dwp, dbp = grad(need[14], C, F), grad(has_bp and need[15], C)
        grads = (dg1, dbe1, dwa, dba, dwo, dbo, dg2, dbe2, dwf, dbf, dwp, dbp)
        with train_kernel.profiled("block_backward"):
            lib.block_backward(
                dout.data_ptr(), x.data_ptr(), addresses(ctx.saved_at), addresses(scratch_at),
                dx.data_ptr(), *map(_ptr, (g1, wa, wo, g2, wf, wp)), *map(_ptr, grads),
                B, T, C, ctx.n_head, F, threads,
            )  # fmt: skip
        out = (dx, None, None, None, *grads)
        return tuple(g if n else None for g, n in zip(out, need))


def _weight_and_bias(m: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A layer's weight and bias (None if it has none), read from its dicts: a module's
    ``__getattr__`` costs half a microsecond, and a block reads twelve of them a call."""
    p = m._parameters
    return p["weight"], p.get("bias", m.__dict__.get("bias"))


def block(blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``blk(x)``'s new residual stream, as one Function. The caller checks ``fits``."""
    mods = blk._modules
    attn, mlp, ln_1, ln_2 = mods["attn"], mods["mlp"], mods["ln_1"], mods["ln_2"]
    a, m = attn._modules, mlp._modules
    wf, bf = _weight_and_bias(m["c_fc"])
    in_one = one_call and train_kernel.products() == "cpp" and wf.shape[0] % 16 == 0
    return (_CppBlock if in_one else _Block).apply(
        x.contiguous(), attn.n_head, ln_1.eps, ln_2.eps,
        *_weight_and_bias(ln_1), *_weight_and_bias(a["c_attn"]), *_weight_and_bias(a["c_proj"]),
        *_weight_and_bias(ln_2), wf, bf, *_weight_and_bias(m["c_proj"]),
    )  # fmt: skip
