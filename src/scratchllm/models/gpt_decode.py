"""GPT's decode step as a guarded twin of its modules: what it supports, its weights, and
the one-token step in plain tensor functions (the C++ step is ``decode_kernel``).

Generating a token with a KV cache is tiny work: for batch 1, every matmul is a
matrix-vector product and attention reads one query against the cached keys. On a CPU
the cost is then mostly *overhead*, not arithmetic: each ``nn.Module`` call, each
``F.linear`` (which dispatches ``t`` and ``addmm``), each view and copy costs a few
microseconds, and a 4-layer model makes a few hundred of them per token. So
``GPT.forward_step`` sends its work here when the model is one this file covers:
``decode_token`` runs the C++ step (``decode_kernel.py``: any number of new tokens, left
padding included, in one call) when it is built, else, for one new token per row, the same
maths in PyTorch with as few operations as it can:

* the weights are gathered once per cache into a ``DecodePlan`` (one ``LayerWeights``
  per block), so no module attribute lookups happen per token;
* keys and values for the new token go into the cache with one copy per layer;
* each block is ``norm -> qkv -> cache write -> SDPA -> proj (+x) -> norm -> fc -> act
  -> proj (+x)``, about a dozen kernels.

**A guarded twin.** This path re-implements the block, so it must never run for a model
whose modules compute something else. ``why_not`` is the list of what it *supports*:
every ``GPTConfig`` field is classified (a value it runs, or a field whose value it reads
as it comes), and every module of the model must be exactly the type the config builds
(``torch.nn.Linear``, not a subclass: a LoRA or quantised wrapper declines). Whatever is
not on the list takes the module path. The plan is built once per KV cache (once per
``generate`` call); what a caller changes between two steps of one cache (training
mode, the attention implementation) is re-checked on every call by
``DecodePlan.applies``.

**Matrix-vector products.** For a model whose weights do not fit in the CPU caches
(6 x 384 is 42 MB), decoding is bound by memory bandwidth, and one BLAS ``gemv`` call
streams its matrix on one thread. Splitting the output rows in two halves and running
them as a batch of two (``torch.bmm``) lets both threads stream at once: 1.4x to 1.7x
faster per matrix, measured on 2 CPU cores. The halves are views of the weights (no
copy), so the plan always sees the current parameters. Batches larger than one, and
weights off the CPU (where it was never measured), use ``F.linear``.

``tests/models/test_gpt_decode.py`` holds both steps equal to ``forward`` (and to the
module path of ``forward_step``) for every position x norm x activation x bias x tying
variant, for one row and for several; ``test_decode_kernel.py`` adds widths, padding and
threads for the C++ one.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _module  # where torch keeps the global module hooks

from scratchllm.configs.models import ACTIVATIONS, NORMS, POSITIONS
from scratchllm.models.layers.attention import CausalSelfAttention
from scratchllm.models.layers.block import Block
from scratchllm.models.layers.ffn import GELU, MLP
from scratchllm.models.layers.norms import LayerNorm, RMSNorm
from scratchllm.models.layers.positions import apply_rope, rope_at

# -- what this path supports ---------------------------------------------------------------

# GPTConfig fields whose value changes the maths, and the values this path computes exactly.
SUPPORTED_VALUES: dict[str, tuple] = {
    "pos": POSITIONS,
    "norm": NORMS,
    "act": ACTIVATIONS,
    "ffn": ("mlp",),
    "bias": (True, False),
    "tie_weights": (True, False),
}
# Fields it takes whatever their value: sizes, constants it reads from the modules or the
# model's tables (rope_base, layer_norm_epsilon), dropout (inactive: eval mode is checked
# on every call) and the MoE settings (unused when ffn is "mlp").
ANY_VALUE: frozenset[str] = frozenset(
    {
        "block_size", "vocab_size", "n_layer", "n_head", "n_embd", "ffn_hidden",
        "rope_base", "layer_norm_epsilon", "dropout",
        "n_expert", "moe_top_k", "moe_aux_loss_coef",
    }
)  # fmt: skip

_NORM_TYPES = {"layernorm": LayerNorm, "rmsnorm": RMSNorm}
_ACT_TYPES = {"gelu": (GELU, "none"), "gelu_tanh": (GELU, "tanh"), "relu": (nn.ReLU, None)}


def _expected_type(name: str, config) -> type | None:
    """The exact module type the config builds at ``name`` (a ``named_modules`` name)."""
    norm = _NORM_TYPES[config.norm]
    top = {
        "transformer": nn.ModuleDict,
        "transformer.wte": nn.Embedding,
        "transformer.wpe": nn.Embedding,
        "transformer.drop": nn.Dropout,
        "transformer.h": nn.ModuleList,
        "transformer.ln_f": norm,
        "lm_head": nn.Linear,
    }
    if name in top:
        return top[name]
    parts = name.split(".")
    if parts[:2] != ["transformer", "h"] or len(parts) < 3 or not parts[2].isdigit():
        return None
    inner = {
        "": Block,
        "ln_1": norm,
        "ln_2": norm,
        "attn": CausalSelfAttention,
        "attn.c_attn": nn.Linear,
        "attn.c_proj": nn.Linear,
        "attn.resid_dropout": nn.Dropout,
        "mlp": MLP,
        "mlp.c_fc": nn.Linear,
        "mlp.c_proj": nn.Linear,
        "mlp.act": _ACT_TYPES[config.act][0],
        "mlp.dropout": nn.Dropout,
    }
    return inner.get(".".join(parts[3:]))


def _has_hooks(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _global_hooks() -> bool:
    """Whether hooks registered for every module (``register_module_forward_hook``) exist."""
    return bool(_module._global_forward_hooks or _module._global_forward_pre_hooks)


def why_not(model) -> str | None:
    """None when ``decode_token`` computes what ``model``'s modules compute; else the first
    thing about the model this path does not support, in words.

    Only what is listed above is supported: a config value outside ``SUPPORTED_VALUES``, a
    config field in neither list, or any module that is not exactly the type the config
    builds (a subclass of ``nn.Linear``, an extra submodule) all decline, as do training
    mode, the reference attention and forward hooks.
    """
    c = model.config
    for f in dataclasses.fields(c):
        value = getattr(c, f.name)
        if f.name in SUPPORTED_VALUES:
            if value not in SUPPORTED_VALUES[f.name]:
                return f"config {f.name}={value!r}"
        elif f.name not in ANY_VALUE:
            return f"config field {f.name!r} is not classified in gpt_decode"
    for name, module in model.named_modules():
        if not name:
            continue
        want = _expected_type(name, c)
        if type(module) is not want:
            got, wanted = type(module).__name__, want.__name__ if want else "expected"
            if got == wanted:  # torch.nn.GELU where the config builds ffn.GELU
                got, wanted = (f"{t.__module__}.{t.__qualname__}" for t in (type(module), want))
            return f"module {name} is a {got}, not {wanted}"
        if isinstance(module, nn.GELU) and module.approximate != _ACT_TYPES[c.act][1]:
            return f"module {name} is GELU(approximate={module.approximate!r}), not {c.act}"
    return _why_not_now(model, model.modules())


def _why_not_now(model, modules) -> str | None:
    """The part of ``why_not`` that does not depend on the model's structure."""
    if _global_hooks():
        return "global module hooks are registered"
    for module in modules:
        if module.training:
            return "training mode"
        if _has_hooks(module):
            return f"a forward hook on a {type(module).__name__}"
    for block in model.transformer.h:
        if block.attn.impl != "sdpa":
            return f"attention impl {block.attn.impl!r}"
    return None


# -- the weights, gathered once per cache --------------------------------------------------


class Norm(NamedTuple):
    weight: torch.Tensor  # (C,) the gain
    bias: torch.Tensor | None  # (C,) LayerNorm with bias only
    eps: float
    rms: bool  # RMSNorm (no centring, no bias) rather than LayerNorm


class Matrix(NamedTuple):
    weight: torch.Tensor  # (out, in), as nn.Linear stores it
    bias: torch.Tensor | None  # (out,)
    halves: torch.Tensor | None  # (2, in, out/2): the weight's two halves for bmm (see above)
    half_bias: torch.Tensor | None  # (2, 1, out/2)


class LayerWeights(NamedTuple):
    ln_1: Norm
    c_attn: Matrix  # (3C, C): queries, keys and values in one matmul
    attn_proj: Matrix  # (C, C)
    ln_2: Norm
    c_fc: Matrix  # (hidden, C)
    mlp_proj: Matrix  # (C, hidden)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class DecodePlan:
    """Everything one decode step needs, gathered from a ``GPT`` for a batch size."""

    def __repr__(self) -> str:
        kernel = "C++" if self.kernel is not None else "PyTorch"
        return f"DecodePlan({len(self.layers)} layers, {self.n_head} heads, {kernel} step)"

    model: nn.Module
    n_head: int
    head_dim: int
    act: str  # "gelu", "gelu_tanh" or "relu"
    wte: torch.Tensor  # (V, C)
    pos_table: torch.Tensor | None  # (block_size, C): wpe or the sinusoid table
    rope: tuple[torch.Tensor, torch.Tensor] | None  # (block_size, D) cos and sin
    layers: tuple[LayerWeights, ...]
    ln_f: Norm
    head: Matrix  # lm_head (V, C)
    blocks: tuple[nn.Module, ...]  # the model's blocks and their attention modules,
    attns: tuple[nn.Module, ...]  # for the checks of ``applies``
    kernel: object = None  # a decode_kernel.KernelPlan, when the C++ step runs this model

    def applies(self) -> bool:
        """Whether the model still runs as the plan does, checked on every call: eval mode
        (``model.train()`` sets it on every block), the fused attention
        (``set_attention_impl``) and no global module hooks. The rest of ``why_not``
        (config, module types, hooks on modules) was checked when the plan was built."""
        if self.model.training or _global_hooks():
            return False
        for block, attn in zip(self.blocks, self.attns):
            if block.training or attn.impl != "sdpa":
                return False
        return True


def build_plan(model, batch_size: int, max_length: int | None = None) -> DecodePlan | None:
    """Gather ``model``'s weights (views, not copies) for decoding ``batch_size`` rows, or
    None when ``why_not(model)`` finds something this path does not support. With the
    cache's ``max_length``, the plan also holds the C++ step when it can run the model."""
    if why_not(model) is not None:
        return None
    c = model.config
    t = model.transformer
    pos_table = None
    if c.pos == "learned":
        pos_table = t.wpe.weight
    elif c.pos == "sinusoidal":
        pos_table = model.pos_table
    rope = (model.rope_cos, model.rope_sin) if c.pos == "rope" else None

    def norm(module: nn.Module) -> Norm:
        return Norm(module.weight, getattr(module, "bias", None), module.eps, c.norm == "rmsnorm")

    def matrix(linear: nn.Linear) -> Matrix:
        return _matrix(linear.weight, linear.bias, batch_size)

    layers = tuple(
        LayerWeights(
            ln_1=norm(block.ln_1),
            c_attn=matrix(block.attn.c_attn),
            attn_proj=matrix(block.attn.c_proj),
            ln_2=norm(block.ln_2),
            c_fc=matrix(block.mlp.c_fc),
            mlp_proj=matrix(block.mlp.c_proj),
        )
        for block in t.h
    )
    plan = DecodePlan(
        model=model,
        n_head=c.n_head,
        head_dim=c.head_dim,
        act=c.act,
        wte=t.wte.weight,
        pos_table=pos_table,
        rope=rope,
        layers=layers,
        ln_f=norm(t.ln_f),
        head=_matrix(model.lm_head.weight, None, batch_size),
        blocks=tuple(t.h),
        attns=tuple(block.attn for block in t.h),
    )
    if max_length is not None and _kernel_can_run(plan):
        from scratchllm.models import decode_kernel

        if decode_kernel.load() is not None:
            kernel = decode_kernel.KernelPlan(
                plan, batch_size, max_length, decode_kernel.threads_for(plan, batch_size)
            )
            plan = dataclasses.replace(plan, kernel=kernel)
    return plan


def _kernel_can_run(plan: DecodePlan) -> bool:
    """The C++ step reads float32 CPU tensors, densely packed."""
    from scratchllm.models import decode_kernel

    if not decode_kernel.enabled:
        return False
    tensors = [plan.wte, plan.pos_table, *(plan.rope or ()), plan.ln_f.weight, plan.ln_f.bias]
    tensors.append(plan.head.weight)
    for layer in plan.layers:
        for part in layer:
            tensors += [part.weight, part.bias]
    return all(
        t.dtype == torch.float32 and t.device.type == "cpu" and t.is_contiguous()
        for t in tensors
        if t is not None
    )


def _matrix(weight: torch.Tensor, bias: torch.Tensor | None, batch_size: int) -> Matrix:
    """For one row of an even output size on the CPU, the weight ``[out, in]`` also seen as
    two halves ``[2, in, out/2]`` for ``torch.bmm`` (and the bias as ``[2, 1, out/2]``)."""
    out_features = weight.shape[0]
    if batch_size == 1 and out_features % 2 == 0 and weight.device.type == "cpu":
        halves = weight.view(2, out_features // 2, weight.shape[1]).transpose(1, 2)
        half_bias = None if bias is None else bias.view(2, 1, out_features // 2)
        return Matrix(weight, bias, halves, half_bias)
    return Matrix(weight, bias, None, None)


# -- the step ----------------------------------------------------------------------------


def _linear(x: torch.Tensor, m: Matrix) -> torch.Tensor:
    """``x [B, in] @ W^T + b``."""
    if m.halves is None:
        return F.linear(x, m.weight, m.bias)
    x2 = x.expand(2, 1, x.shape[-1])  # (2, 1, in): the one row, once per half
    b = m.half_bias
    y = torch.bmm(x2, m.halves) if b is None else torch.baddbmm(b, x2, m.halves)
    return y.view(1, -1)  # (2, 1, out/2) -> (1, out): the halves side by side


def _norm(x: torch.Tensor, n: Norm) -> torch.Tensor:
    if n.rms:
        return F.rms_norm(x, n.weight.shape, n.weight, n.eps)
    return F.layer_norm(x, n.weight.shape, n.weight, n.bias, n.eps)


def _act(plan: DecodePlan, h: torch.Tensor) -> torch.Tensor:
    if plan.act == "gelu":
        return F.gelu(h)
    if plan.act == "gelu_tanh":
        return F.gelu(h, approximate="tanh")
    return F.relu_(h)  # h is a fresh tensor: changing it in place is safe


def decode_token(
    plan: DecodePlan,
    idx: torch.Tensor,
    kv: torch.Tensor,
    start: int,
    positions: torch.Tensor | None = None,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Logits ``[B, T, V]`` for new tokens ``idx [B, T]``, written to slots ``start..`` of
    the cache, by the C++ step when the plan has one (any T), else by
    ``decode_token_torch`` (T = 1). None when the C++ step finds a token id outside the
    vocabulary (the caller's module path then raises the usual error).

    ``kv [n_layer, 2, B, H, max_length, D]`` is the cache buffer. With left padding,
    ``positions [B, T]`` holds each token's position (else row b's token t is at
    ``start + t``) and ``key_mask [B, max_length]`` (True = a real token) hides the padding.
    """
    if plan.kernel is not None and idx.dtype == torch.int64:
        from scratchllm.models import decode_kernel

        if decode_kernel.enabled:
            return plan.kernel(idx, kv, start, positions, key_mask)
    if idx.shape[1] != 1:
        return None
    return decode_token_torch(plan, idx, kv, start, positions, key_mask)


def decode_token_torch(
    plan: DecodePlan,
    idx: torch.Tensor,
    kv: torch.Tensor,
    start: int,
    positions: torch.Tensor | None = None,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``decode_token`` for one token per row (``idx [B, 1]``, ``positions [B, 1]``) in
    PyTorch functions: the fallback when the C++ step is not built, and its twin in tests."""
    B, H, D = idx.shape[0], plan.n_head, plan.head_dim
    n = start + 1
    x = F.embedding(idx.view(B), plan.wte)  # (B, C)
    where = slice(start, n) if positions is None else positions  # (1,) or (B, 1)
    if plan.pos_table is not None:
        x = x + plan.pos_table[where].view(-1, x.shape[-1])
    rope = None
    if plan.rope is not None:  # (1, 1, 1, D) or (B, 1, 1, 1, D): broadcasts over (B, 2, H, 1, D)
        rope = rope_at(*plan.rope, where)
    mask = None if key_mask is None else key_mask[:, None, None, :n]  # (B, 1, 1, n)
    for layer, buf in zip(plan.layers, kv):
        qkv = _linear(_norm(x, layer.ln_1), layer.c_attn).view(B, 3, H, 1, D)
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
        y = F.scaled_dot_product_attention(q, keys[0], keys[1], attn_mask=mask)  # (B, H, 1, D)
        x = x + _linear(y.reshape(B, H * D), layer.attn_proj)
        x = x + _linear(_act(plan, _linear(_norm(x, layer.ln_2), layer.c_fc)), layer.mlp_proj)
    return _linear(_norm(x, plan.ln_f), plan.head).view(B, 1, -1)
