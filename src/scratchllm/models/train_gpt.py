"""A whole GPT's training forward and backward as one ``torch.autograd.Function``, for the
machines whose products are the kernels' ``gemm``: the guarded twin of ``GPT.forward``'s
embedding, blocks and loss that it calls when ``fits`` holds.

Each part already runs on the C++ kernels: the embedding and the loss as the Functions of
``train_ends.py``, each block as one call each way (``train_block._CppBlock``). Between
them a small model's step still spent about 2.5 ms of its ~27 in Python and PyTorch's
bookkeeping, slower right after the kernels evict its caches: six Functions and their
nodes, four module calls and their checks, a few dozen tensors to allocate. Here the
same kernels run in the same order from one Function (``embedding_forward``, each block's
``block_forward``, ``layer_norm_forward``, the head's product, ``cross_entropy_forward``,
and back), on buffers allocated once a step in a few chunks (``train_kernel.packed``):
the blocks' inputs, what all the blocks keep for the backward, and every gradient but the
head's, each parameter's a view. So values and gradients are those of the parts, bit for bit
(``tests/models/test_train_gpt.py``), and through them PyTorch's path's to float32
rounding.

It takes a model whose parts all fit (``train_ends.embed_fits`` / ``head_fits``,
``train_block.fits`` for every block, the MLP's width a multiple of 16), its blocks all of
one shape, with every parameter trainable and no hook on a block; anything else runs the
parts one by one.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from scratchllm.models import train_block, train_ends, train_kernel
from scratchllm.models.train_block import FORWARD_SCRATCH, SAVED, addresses
from scratchllm.models.train_kernel import _kernel, _lib, _transpose, mm

IGNORE_INDEX = train_ends.IGNORE_INDEX


def _block_params(blk: nn.Module) -> list[torch.Tensor | None]:
    """A block's twelve tensors in ``block_forward``'s order (biases may be None)."""
    mods = blk._modules
    a, m = mods["attn"]._modules, mods["mlp"]._modules
    layers = (mods["ln_1"], a["c_attn"], a["c_proj"], mods["ln_2"], m["c_fc"], m["c_proj"])
    return [t for layer in layers for t in train_block._weight_and_bias(layer)]


def _arguments(model: nn.Module, idx, targets, loss_mask, positions) -> tuple | None:
    """``_GPT.apply``'s arguments for ``model(idx, targets, loss_mask)``, or None where the
    model or the call does not fit (module doc)."""
    if (
        targets is None
        or not train_block.one_call
        or train_kernel.products() != "cpp"
        or model.config.ffn != "mlp"
    ):
        return None
    if not train_ends.embed_fits(model, idx, positions):
        return None
    t = model.transformer
    wte = t.wte.weight
    B, T = idx.shape
    # A stand-in for the residual stream with its metadata (shape, dtype, device, gradient
    # wanted): what the checks of the blocks and the head read, without its values.
    x = wte.as_strided((B, T, wte.shape[1]), (0, 0, 1))
    if not train_ends.head_fits(model, x, targets, loss_mask):
        return None
    tensors: list[torch.Tensor | None] = []
    n_head = t.h[0]._modules["attn"].n_head
    for blk in t.h:
        if (
            train_kernel.hooked(blk)
            or blk._modules["attn"].n_head != n_head
            or not train_block.fits(blk, x)
        ):  # fmt: skip
            return None
        tensors += _block_params(blk)
    first = [None if p is None else p.shape for p in tensors[:12]]
    if first[0] != (wte.shape[1],) or any(
        (p is None) != (f is None) or (p is not None and p.shape != f)
        for i, p in enumerate(tensors)
        for f in (first[i % 12],)
    ):
        return None  # blocks of other widths than the embedding's or than each other
    F = first[8][0]  # c_fc's rows
    ends = (wte, t.wpe.weight, t.ln_f.weight, t.ln_f.bias, model.lm_head.weight)
    if F % 16 or not all(
        p is None or (p.requires_grad and p.is_contiguous()) for p in (*ends, *tensors)
    ):
        return None  # (a frozen part: the parts one by one compute only what is wanted)
    if loss_mask is not None:
        targets = targets.masked_fill(~loss_mask.bool(), IGNORE_INDEX)
    epsilons = [eps for blk in t.h for eps in (blk.ln_1.eps, blk.ln_2.eps)] + [t.ln_f.eps]
    shape = (len(t.h), n_head, F)
    return (idx.contiguous(), targets.contiguous(), shape, epsilons, *ends, *tensors)


def fits(model: nn.Module, idx, targets, loss_mask, positions) -> bool:
    """Whether ``model(idx, targets, loss_mask)`` with these ``positions`` (a slice: no
    padding or packed rows) runs as one Function."""
    return _arguments(model, idx, targets, loss_mask, positions) is not None


def run(model: nn.Module, idx, targets, loss_mask, positions):
    """``(logits, loss)`` of ``model(idx, targets, loss_mask)`` as one Function, or None
    where it does not fit (then the caller runs the parts)."""
    args = _arguments(model, idx, targets, loss_mask, positions)
    return None if args is None else _GPT.apply(*args)


class _GPT(torch.autograd.Function):
    @staticmethod
    def forward(ctx, *args):
        with train_kernel.profiled("gpt_forward"):
            return _GPT._forward(ctx, *args)

    @staticmethod
    @once_differentiable
    def backward(ctx, dlogits, dloss):
        with train_kernel.profiled("gpt_backward"):
            return _GPT._backward(ctx, dlogits, dloss)

    @staticmethod
    def _forward(ctx, idx, targets, shape, epsilons, wte, wpe, g_f, b_f, w_head, *blocks):
        n_layer, n_head, F = shape
        B, T = idx.shape
        V, C = wte.shape
        N = B * T
        lib, threads = _lib(), torch.get_num_threads()
        # each block's input, then the last output; what every block keeps; one scratch
        xs = train_kernel.packed_tensors(wte, [(B, T, C)] * (n_layer + 1))
        sizes = train_kernel.block_arrays(B, T, C, n_head, F, threads)
        saved, saved_at = train_kernel.packed(wte, sizes[:SAVED] * n_layer)
        scratch, scratch_at = train_kernel.packed(wte, sizes[SAVED : SAVED + FORWARD_SCRATCH])
        scratch_at = addresses(scratch_at)
        train_ends.embedding_forward(idx, wte, wpe, xs[0])
        ptrs = [_ptr(t) for t in blocks]
        with train_kernel.profiled("block_forward"):
            for i in range(n_layer):
                lib.block_forward(
                    xs[i].data_ptr(), xs[i + 1].data_ptr(),
                    addresses(saved_at[SAVED * i : SAVED * (i + 1)]), scratch_at,
                    *ptrs[12 * i : 12 * i + 12], B, T, C, n_head, F, epsilons[2 * i],
                    epsilons[2 * i + 1], threads,
                )  # fmt: skip
        del scratch
        last = xs[n_layer].view(N, C)
        h, mean, rstd = torch.empty_like(last), last.new_empty(N), last.new_empty(N)
        _kernel("layer_norm_forward", last, None, None, g_f, b_f, h, mean, rstd, N, C, epsilons[-1])
        padded = mm(h, _transpose(w_head))  # (N, V rounded up to 16): zeros past V
        logits, loss, lse, counted = train_ends.cross_entropy(padded, targets, V)
        ctx.save_for_backward(
            idx, targets, h, mean, rstd, padded, lse, wte, wpe, g_f, w_head, *blocks, *xs, *saved
        )
        ctx.shape, ctx.counted, ctx.has_bias = shape, counted, b_f is not None
        ctx.saved_at = saved_at
        ctx.set_materialize_grads(False)
        return logits, loss

    @staticmethod
    def _backward(ctx, dlogits, dloss):
        n_layer, n_head, F = ctx.shape
        (idx, targets, h, mean, rstd, padded, lse, wte, wpe, g_f, w_head,
         *rest) = ctx.saved_tensors  # fmt: skip
        blocks, xs = rest[: 12 * n_layer], rest[12 * n_layer : 13 * n_layer + 1]
        B, T = idx.shape
        V, C = wte.shape
        N = B * T
        lib, threads = _lib(), torch.get_num_threads()
        # every gradient but the head's in a few chunks, each parameter's a view of one
        shapes = [wte.shape, wpe.shape, g_f.shape, g_f.shape if ctx.has_bias else None]
        shapes += [None if t is None else t.shape for t in blocks]
        dwte, dwpe, dg_f, db_f, *dblocks = train_kernel.packed_tensors(wte, shapes)
        # the loss, the head and ln_f
        dpad = train_ends.cross_entropy_backward(
            padded, targets, lse, dlogits, dloss, V, ctx.counted
        )
        d = dpad[:, :V]
        dw_head = mm(d.t(), h)
        dh = mm(d, w_head)
        dout, dx = torch.empty_like(dh), torch.empty_like(dh)
        work = dh.new_empty(lib.layer_norm_work_floats(N, C))
        last = xs[n_layer].view(N, C)
        _kernel(
            "layer_norm_backward", dh, last, mean, rstd, g_f, None, dout, dg_f, db_f, None,
            work, N, C,
        )  # fmt: skip
        # the blocks, the last first, each gradient of its input the next one's dout
        sizes = train_kernel.block_arrays(B, T, C, n_head, F, threads)
        scratch, scratch_at = train_kernel.packed(dh, sizes[SAVED + FORWARD_SCRATCH :])
        scratch_at = addresses(scratch_at)
        saved_at = ctx.saved_at
        weights = [_ptr(t) for t in blocks]
        grads = [_ptr(t) for t in dblocks]
        with train_kernel.profiled("block_backward"):
            for i in reversed(range(n_layer)):
                w, g = weights[12 * i : 12 * i + 12], grads[12 * i : 12 * i + 12]
                lib.block_backward(
                    dout.data_ptr(), xs[i].data_ptr(),
                    addresses(saved_at[SAVED * i : SAVED * (i + 1)]), scratch_at,
                    dx.data_ptr(), *w[0:12:2], *g, B, T, C, n_head, F, threads,
                )  # fmt: skip
                dx, dout = dout, dx
        _kernel("embedding_backward", idx, dout, dwte, dwpe, B, T, C, V, wpe.shape[0])
        return (None, None, None, None, dwte, dwpe, dg_f, db_f, dw_head, *dblocks)


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()
