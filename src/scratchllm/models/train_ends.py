"""The two ends of a GPT's training step on the C++ training kernels: the guarded twins of
``GPT._embed`` (the token table's rows plus the learned positions) and of the loss,
``lm_loss(lm_head(ln_f(x)), targets)``, that ``GPT.forward`` calls when ``embed_fits`` /
``head_fits`` hold.

Between the blocks of ``train_block.py``, a small model's step on PyTorch's path spends
about a millisecond at its two ends (4 x 128, 768 tokens, 65 token ids): the embedding's
gather and add, ``embedding_dense_backward`` and the position table's slice backward;
``ln_f``'s layer norm; three MKL products whose 65 columns are a poor fit for its tiles;
``log_softmax`` and ``nll_loss`` and their backwards; the divisions and additions of the
loss. Here each end is one Function:

* **the embedding** (``embedding_forward`` / ``embedding_backward``): one pass writes
  ``wte[idx] + wpe[t]``, and one pass sums the gradient's rows into both tables;
* **the head's loss**: ``ln_f`` on the kernels' layer norm, ``lm_head``'s products through
  ``train_kernel.mm`` on its weight transposed with the vocabulary padded to whole vectors
  (65 -> 80 columns of zeros), and the cross-entropy in one pass over each row of logits
  (``cross_entropy_forward``: the log-sum-exp, the loss, the compact copy of the logits the
  model returns). The backward writes ``(softmax - onehot) * dloss / count`` in one pass,
  plus any gradient that reached the logits themselves.

The formulas are PyTorch's, so values and gradients agree with its path to float32
rounding (``tests/models/test_train_ends.py``); the loss is summed in double. Everything
else stays on PyTorch's path: inference, no gradient, label smoothing, autocast, other
devices and dtypes, position tables other than learned, dropout on the embedding, a
``padding_idx`` / ``max_norm`` / sparse token table, a head with a bias, RMSNorm, hooks,
``train_kernel.enabled = False``.
"""

from __future__ import annotations

import ctypes

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from scratchllm.models import train_kernel
from scratchllm.models.base import _LABEL_SMOOTHING
from scratchllm.models.train_kernel import _kernel, _lib, _transpose, hooked, mm

IGNORE_INDEX = -1  # lm_loss's: targets that never count


def _trainable_cpu_float(x: torch.Tensor, *params: torch.Tensor | None) -> bool:
    """The checks both ends share: float32 CPU tensors, gradients wanted for something, and
    what every kernel path asks (``train_kernel._can_run``)."""
    return (
        x.is_cpu
        and all(p is None or (p.is_cpu and p.dtype is torch.float32) for p in params)
        and (x.requires_grad or any(p is not None and p.requires_grad for p in params))
        and train_kernel._can_run()
    )


# -- the embedding ---------------------------------------------------------------------


def embed_fits(model: nn.Module, idx: torch.Tensor, positions) -> bool:
    """Whether ``model._embed(idx, positions)`` can run as one Function: learned positions
    from 0 (``positions`` a slice, no padding or packed rows), no dropout to apply, plain
    float32 ``nn.Embedding`` tables on the CPU, gradients wanted for one of them."""
    c = model.config
    if c.pos != "learned" or not isinstance(positions, slice):
        return False
    if model.training and c.dropout > 0:
        return False
    mods = model.transformer._modules
    wte, wpe = mods["wte"], mods["wpe"]
    if type(wte) is not nn.Embedding or type(wpe) is not nn.Embedding:
        return False
    if any(
        e.padding_idx is not None or e.max_norm is not None or e.sparse or e.scale_grad_by_freq
        for e in (wte, wpe)
    ):
        return False
    w, p = wte._parameters["weight"], wpe._parameters["weight"]
    return (
        idx.dtype is torch.int64
        and idx.dim() == 2
        and not hooked(wte)
        and not hooked(wpe)
        and _trainable_cpu_float(idx, w, p)
        and w.is_contiguous()
        and p.is_contiguous()
        and w.shape[1] == p.shape[1]
    )


def embedding_forward(
    idx: torch.Tensor, wte: torch.Tensor, wpe: torch.Tensor, out: torch.Tensor
) -> None:
    """``out [B, T, C] = wte[idx] + wpe[:T]``; an id outside the table raises IndexError."""
    B, T = idx.shape
    V, C = wte.shape
    with train_kernel.profiled("embedding_forward"):
        bad = _lib().embedding_forward(
            idx.data_ptr(), wte.data_ptr(), wpe.data_ptr(), out.data_ptr(), B, T, C, V,
            torch.get_num_threads(),
        )  # fmt: skip
    if bad >= 0:
        raise IndexError(
            f"token id {int(idx.view(-1)[bad])} at row {bad // T}, position {bad % T} is "
            f"outside the token table's {V} rows (ids 0 .. {V - 1}): check the tokenizer "
            f"against the model's vocab_size"
        )


class _Embed(torch.autograd.Function):
    @staticmethod
    def forward(ctx, idx: torch.Tensor, wte: torch.Tensor, wpe: torch.Tensor) -> torch.Tensor:
        out = wte.new_empty(*idx.shape, wte.shape[1])
        embedding_forward(idx, wte, wpe, out)
        ctx.save_for_backward(idx)
        ctx.tables = wte.shape, wpe.shape
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, dout: torch.Tensor):
        (idx,) = ctx.saved_tensors
        (V, C), (P, _) = ctx.tables
        _, need_wte, need_wpe = ctx.needs_input_grad
        B, T = idx.shape
        dout = dout.contiguous()
        dwte = dout.new_empty(V, C)
        dwpe = dout.new_empty(P, C) if need_wpe else None
        _kernel("embedding_backward", idx, dout, dwte, dwpe, B, T, C, V, P)
        return None, dwte if need_wte else None, dwpe


def embed(model: nn.Module, idx: torch.Tensor) -> torch.Tensor:
    """``model._embed(idx, slice(0, T))`` as one Function. The caller checks ``embed_fits``."""
    t = model.transformer
    return _Embed.apply(idx.contiguous(), t.wte.weight, t.wpe.weight)


# -- the head and its loss ---------------------------------------------------------------


def head_fits(
    model: nn.Module, x: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor | None
) -> bool:
    """Whether ``lm_loss(model.lm_head(model.transformer.ln_f(x)), targets, loss_mask)``
    can run as one Function: a LayerNorm ``ln_f`` and a plain ``nn.Linear`` head without
    bias in float32 on the CPU, gradients wanted, no label smoothing, int64 targets and a
    loss mask (if any) of ``x``'s batch shape."""
    from scratchllm.models.layers.norms import LayerNorm  # (the layers import train_kernel)

    ln_f, head = model.transformer._modules["ln_f"], model._modules["lm_head"]
    if type(ln_f) is not LayerNorm or type(head) is not nn.Linear:
        return False
    w = head._parameters["weight"]
    g, b = ln_f._parameters["weight"], ln_f.bias  # (no bias: an attribute None)
    return (
        x.dim() == 3
        and x.dtype is torch.float32
        and w.dim() == 2
        and w.shape[1] == x.shape[2] == g.shape[0]
        and head._parameters["bias"] is None
        and targets.dtype is torch.int64
        and targets.shape == x.shape[:2]
        and (loss_mask is None or loss_mask.shape == x.shape[:2])
        and _LABEL_SMOOTHING.get() == 0.0
        and not hooked(ln_f)
        and not hooked(head)
        and w.is_contiguous()
        and _trainable_cpu_float(x, w, g, b)
    )


def cross_entropy(padded: torch.Tensor, targets: torch.Tensor, V: int):
    """The loss over the head's ``padded`` logits ``[N, V rounded up to 16]``: ``(logits
    [B, T, V], the mean loss, each row's log-sum-exp, the rows counted)``. A target
    outside the vocabulary raises IndexError."""
    B, T = targets.shape
    N = B * T
    logits, lse, losses = padded.new_empty(B, T, V), padded.new_empty(N), padded.new_empty(N)
    count = ctypes.c_int64()
    with train_kernel.profiled("cross_entropy_forward"):
        total = _lib().cross_entropy_forward(
            padded.data_ptr(), padded.shape[1], targets.data_ptr(), logits.data_ptr(),
            lse.data_ptr(), losses.data_ptr(), N, V, IGNORE_INDEX, ctypes.addressof(count),
            torch.get_num_threads(),
        )  # fmt: skip
    counted = count.value
    if counted < 0:
        row = -1 - counted
        raise IndexError(
            f"target {int(targets.view(-1)[row])} at row {row // T}, position {row % T} "
            f"is outside the vocabulary (0 .. {V - 1}, or {IGNORE_INDEX} to leave it out)"
        )
    loss = torch.tensor(total / counted if counted else float("nan"), dtype=padded.dtype)
    return logits, loss, lse, counted


def cross_entropy_backward(padded, targets, lse, dlogits, dloss, V: int, counted: int):
    """The gradient of ``cross_entropy``'s logits in the padded layout (zeros past V), from
    the loss's gradient ``dloss`` and the logits' own ``dlogits`` (either may be None)."""
    N, Vp = padded.shape
    scale = float(dloss) / counted if dloss is not None and counted else 0.0
    if dlogits is not None:
        dlogits = dlogits.reshape(N, V).contiguous()
    dpad = torch.empty_like(padded)
    _kernel(
        "cross_entropy_backward", padded, Vp, targets, lse, dlogits, scale, dpad, N, V,
        IGNORE_INDEX,
    )  # fmt: skip
    return dpad


class _HeadLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, g, b, w, targets, eps):
        B, T, C = x.shape
        N = B * T
        xf = x.reshape(N, C)
        h, mean, rstd = torch.empty_like(xf), xf.new_empty(N), xf.new_empty(N)
        _kernel("layer_norm_forward", xf, None, None, g, b, h, mean, rstd, N, C, eps)
        padded = mm(h, _transpose(w))  # (N, V rounded up to 16): zeros past V
        logits, loss, lse, ctx.counted = cross_entropy(padded, targets, w.shape[0])
        ctx.save_for_backward(xf, mean, rstd, h, padded, lse, targets, g, w)
        ctx.has_bias = b is not None
        ctx.set_materialize_grads(False)
        return logits, loss

    @staticmethod
    @once_differentiable
    def backward(ctx, dlogits, dloss):
        xf, mean, rstd, h, padded, lse, targets, g, w = ctx.saved_tensors
        need_x, need_g, need_b, need_w = ctx.needs_input_grad[:4]
        N, C = xf.shape
        V = w.shape[0]
        dpad = cross_entropy_backward(padded, targets, lse, dlogits, dloss, V, ctx.counted)
        d = dpad[:, :V]
        dw = mm(d.t(), h) if need_w else None
        dx = dg = db = None
        if need_x or need_g or need_b:
            dh = mm(d, w)
            dx, dg = torch.empty_like(dh), dh.new_empty(C)
            db = dh.new_empty(C) if ctx.has_bias else None
            work = dh.new_empty(_lib().layer_norm_work_floats(N, C))
            _kernel(
                "layer_norm_backward", dh, xf, mean, rstd, g, None, dx, dg, db, None, work, N, C
            )
        return (
            dx.view(*targets.shape, C) if need_x else None,
            dg if need_g else None,
            db if need_b else None,
            dw,
            None,
            None,
        )


def head_loss(
    model: nn.Module, x: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits, lm_loss(logits, targets, loss_mask))`` for ``logits =
    model.lm_head(model.transformer.ln_f(x))``, as one Function. The caller checks
    ``head_fits``."""
    if loss_mask is not None:
        targets = targets.masked_fill(~loss_mask.bool(), IGNORE_INDEX)
    ln_f = model.transformer.ln_f
    return _HeadLoss.apply(
        x.contiguous(), ln_f.weight, ln_f.bias, model.lm_head.weight, targets.contiguous(),
        ln_f.eps,
    )  # fmt: skip
