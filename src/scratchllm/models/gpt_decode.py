"""GPT's one-token decode step, written as plain tensor functions on the weights.

Generating a token with a KV cache is tiny work: for batch 1, every matmul is a
matrix-vector product and attention reads one query against the cached keys. On a CPU
the cost is then mostly *overhead*, not arithmetic: each ``nn.Module`` call, each
``F.linear`` (which dispatches ``t`` and ``addmm``), each view and copy costs a few
microseconds, and a 4-layer model makes a few hundred of them per token. So
``GPT.forward_step`` sends the common case (one new token, no padding, a dense MLP, the
fused attention) here, which runs the same maths with as few operations as we can:

* the weights are gathered once per cache into a flat tuple per layer (``DecodePlan``),
  so no module attribute lookups happen per token;
* keys and values for the new token go into the cache with one copy per layer;
* each block is ``norm -> qkv -> cache write -> SDPA -> proj (+x) -> norm -> fc -> act
  -> proj (+x)``, about a dozen kernels.

**Matrix-vector products.** For a model whose weights do not fit in the CPU caches
(6 x 384 is 42 MB), decoding is bound by memory bandwidth, and one BLAS ``gemv`` call
streams its matrix on one thread. Splitting the output rows in two halves and running
them as a batch of two (``torch.bmm``) lets both threads stream at once: 1.4x to 1.7x
faster per matrix, measured on 2 cores. The halves are views of the weights (no copy),
so the plan always sees the current parameters. Batches larger than one use ``F.linear``.

``tests/models/test_gpt.py`` holds this path equal to ``forward`` (and to the module
path of ``forward_step``) for every position, norm and activation variant.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scratchllm.models.layers.positions import apply_rope


@dataclass(frozen=True, eq=False)
class DecodePlan:
    """Everything one decode step needs, gathered from a ``GPT`` for a batch size."""

    n_head: int
    head_dim: int
    norm: str  # "layernorm" or "rmsnorm"
    eps: float
    act: str  # "gelu", "gelu_tanh" or "relu"
    wte: torch.Tensor  # (V, C)
    pos_table: torch.Tensor | None  # (block_size, C): wpe or the sinusoid table
    rope: tuple[torch.Tensor, torch.Tensor] | None  # (block_size, D) cos and sin
    layers: tuple[tuple, ...]  # per block: ln_1, c_attn, attn c_proj, ln_2, c_fc, mlp c_proj
    ln_f: tuple[torch.Tensor, torch.Tensor | None]
    head: tuple  # the lm_head matrix as ``_matrix`` prepares it


def build_plan(model, batch_size: int) -> DecodePlan:
    """Gather ``model``'s weights (views, not copies) for decoding ``batch_size`` rows."""
    c = model.config
    t = model.transformer
    pos_table = None
    if c.pos == "learned":
        pos_table = t.wpe.weight
    elif c.pos == "sinusoidal":
        pos_table = model.pos_table
    rope = (model.rope_cos, model.rope_sin) if c.pos == "rope" else None

    def matrix(linear: torch.nn.Linear) -> tuple:
        return _matrix(linear.weight, linear.bias, batch_size)

    layers = tuple(
        (
            (block.ln_1.weight, getattr(block.ln_1, "bias", None)),
            matrix(block.attn.c_attn),
            matrix(block.attn.c_proj),
            (block.ln_2.weight, getattr(block.ln_2, "bias", None)),
            matrix(block.mlp.c_fc),
            matrix(block.mlp.c_proj),
        )
        for block in t.h
    )
    return DecodePlan(
        n_head=c.n_head,
        head_dim=c.head_dim,
        norm=c.norm,
        eps=c.layer_norm_epsilon,
        act=c.act,
        wte=t.wte.weight,
        pos_table=pos_table,
        rope=rope,
        layers=layers,
        ln_f=(t.ln_f.weight, getattr(t.ln_f, "bias", None)),
        head=_matrix(model.lm_head.weight, None, batch_size),
    )


def _matrix(weight: torch.Tensor, bias: torch.Tensor | None, batch_size: int) -> tuple:
    """``(split, split_bias, weight, bias)``: for one row and an even output size,
    ``split`` is the weight ``[out, in]`` seen as two halves ``[2, in, out/2]`` for
    ``torch.bmm`` (and ``split_bias`` the bias as ``[2, 1, out/2]``); else both are None."""
    out_features = weight.shape[0]
    if batch_size == 1 and out_features % 2 == 0:
        split = weight.view(2, out_features // 2, weight.shape[1]).transpose(1, 2)
        split_bias = None if bias is None else bias.view(2, 1, out_features // 2)
        return split, split_bias, weight, bias
    return None, None, weight, bias


def _linear(x: torch.Tensor, m: tuple) -> torch.Tensor:
    """``x [B, in] @ W^T + b`` with the plan's matrix ``m`` (see ``_matrix``)."""
    split, split_bias, weight, bias = m
    if split is None:
        return F.linear(x, weight, bias)
    x2 = x.expand(2, 1, x.shape[-1])  # (2, 1, in): the one row, once per half
    y = torch.bmm(x2, split) if split_bias is None else torch.baddbmm(split_bias, x2, split)
    return y.view(1, -1)  # (2, 1, out/2) -> (1, out): the halves side by side


def _norm(plan: DecodePlan, x: torch.Tensor, weights: tuple) -> torch.Tensor:
    weight, bias = weights
    if plan.norm == "layernorm":
        return F.layer_norm(x, weight.shape, weight, bias, plan.eps)
    return F.rms_norm(x, weight.shape, weight, plan.eps)


def _act(plan: DecodePlan, h: torch.Tensor) -> torch.Tensor:
    if plan.act == "gelu":
        return F.gelu(h)
    if plan.act == "gelu_tanh":
        return F.gelu(h, approximate="tanh")
    return F.relu_(h)  # h is a fresh tensor: changing it in place is safe


def decode_token(plan: DecodePlan, idx: torch.Tensor, kv: torch.Tensor, start: int) -> torch.Tensor:
    """Logits ``[B, 1, V]`` for one new token per row, ``idx [B, 1]`` at position ``start``.

    ``kv [n_layer, 2, B, H, max_length, D]`` is the cache buffer; slot ``start`` of every
    layer is written with the new keys and values, and attention reads slots ``0..start``.
    """
    B, H, D = idx.shape[0], plan.n_head, plan.head_dim
    n = start + 1
    x = F.embedding(idx.view(B), plan.wte)  # (B, C)
    if plan.pos_table is not None:
        x = x + plan.pos_table[start]
    rope = None
    if plan.rope is not None:
        # (D,) -> (1, 1, 1, 1, D): broadcasts over (B, 2, H, 1, D) queries and keys
        rope = tuple(table[start].view(1, 1, 1, 1, D) for table in plan.rope)
    for (ln_1, c_attn, attn_proj, ln_2, c_fc, mlp_proj), buf in zip(plan.layers, kv):
        qkv = _linear(_norm(plan, x, ln_1), c_attn).view(B, 3, H, 1, D)
        slot = buf.narrow(3, start, 1)  # (2, B, H, 1, D): this token's key and value
        if rope is None:
            q = qkv[:, 0]
            slot.copy_(qkv[:, 1:].transpose(0, 1))
        else:
            qk = apply_rope(qkv[:, :2], *rope)  # (B, 2, H, 1, D)
            q = qk[:, 0]
            slot[0].copy_(qk[:, 1])
            slot[1].copy_(qkv[:, 2])
        keys = buf.narrow(3, 0, n)  # (2, B, H, n, D)
        y = F.scaled_dot_product_attention(q, keys[0], keys[1])  # (B, H, 1, D)
        x = x + _linear(y.reshape(B, H * D), attn_proj)
        x = x + _linear(_act(plan, _linear(_norm(plan, x, ln_2), c_fc)), mlp_proj)
    return _linear(_norm(plan, x, plan.ln_f), plan.head).view(B, 1, -1)
