"""The one-token decode path (``models/gpt_decode.py``) as a guarded twin of the modules:
equal to them for every variant it supports, and declining everything else."""

import dataclasses
import itertools

import pytest
import torch
from torch import nn

from scratchllm.models import GPT, GPTConfig, decode_kernel
from scratchllm.models import gpt as gpt_module
from scratchllm.models.gpt_decode import (
    ANY_VALUE,
    SUPPORTED_VALUES,
    DecodePlan,
    LayerWeights,
    build_plan,
    why_not,
)
from scratchllm.models.layers.ffn import GELU
from scratchllm.models.layers.norms import LayerNorm

V = 31


def model_of(seed=0, **overrides) -> GPT:
    fields = dict(n_layer=2, n_head=2, n_embd=16, block_size=24, vocab_size=V)
    fields.update(overrides)
    torch.manual_seed(seed)
    return GPT(GPTConfig(**fields)).eval()


def decode(model, idx, state, prompt=6):
    """Prefill ``prompt`` tokens, then one token at a time: logits ``[B, T, V]``."""
    out = [model.forward_step(idx[:, :prompt], state)]
    out += [model.forward_step(idx[:, t : t + 1], state) for t in range(prompt, idx.shape[1])]
    return torch.cat(out, 1)


# -- the support list ------------------------------------------------------------------------


def test_every_config_field_is_classified():
    """A new GPTConfig field must be added to SUPPORTED_VALUES or ANY_VALUE (gpt_decode.py),
    after checking whether decode_token computes it."""
    fields = {f.name for f in dataclasses.fields(GPTConfig)}
    classified = set(SUPPORTED_VALUES) | ANY_VALUE
    assert fields - classified == set(), "unclassified GPTConfig fields"
    assert classified - fields == set(), "classified names that are not GPTConfig fields"
    assert not set(SUPPORTED_VALUES) & ANY_VALUE


def test_an_unclassified_field_declines():
    @dataclasses.dataclass
    class NewConfig(GPTConfig):
        alibi: bool = False  # an option gpt_decode has never heard of

    model = model_of()
    model.config = NewConfig(**dataclasses.asdict(model.config))
    assert why_not(model) == "config field 'alibi' is not classified in gpt_decode"
    assert build_plan(model, 1) is None


# The full product of the variants the path supports: pos x norm x act x bias x tie.
PRODUCT = list(
    itertools.product(
        SUPPORTED_VALUES["pos"],
        SUPPORTED_VALUES["norm"],
        SUPPORTED_VALUES["act"],
        (True, False),
        (True, False),
    )
)


@pytest.mark.parametrize("impl", ["kernel", "torch"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("variant", PRODUCT, ids=lambda v: "-".join(map(str, v)))
def test_fast_path_equals_the_modules_for_every_variant(variant, batch, impl, monkeypatch):
    """Both fast paths: the C++ step (decode_kernel) and the PyTorch functions."""
    monkeypatch.setattr(decode_kernel, "enabled", impl == "kernel")
    pos, norm, act, bias, tie = variant
    i = PRODUCT.index(variant)
    # Odd and even vocabulary and MLP widths: an odd output is not split in halves.
    model = model_of(
        seed=4, pos=pos, norm=norm, act=act, bias=bias, tie_weights=tie,
        vocab_size=31 + i % 2, ffn_hidden=50 + (i // 2) % 2,
    )  # fmt: skip
    assert why_not(model) is None
    idx = torch.randint(0, model.config.vocab_size, (batch, 12))
    fast, slow = model.new_state(batch, 12), model.new_state(batch, 12)
    slow.plan = False  # declines the fast path: every step runs through the modules
    got, want = decode(model, idx, fast), decode(model, idx, slow)
    assert isinstance(fast.plan, DecodePlan)
    assert all(isinstance(layer, LayerWeights) for layer in fast.plan.layers)
    assert (fast.plan.kernel is not None) == (impl == "kernel")
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got, model(idx)[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.buffer, slow.buffer, atol=1e-6, rtol=1e-5)


def test_fast_path_declines_what_it_does_not_cover():
    idx = torch.randint(0, V, (1, 4))
    moe, reference, training = model_of(ffn="moe"), model_of(), model_of().train()
    reference.set_attention_impl("reference")
    for model in (moe, reference, training):
        state = model.new_state(1, 4)
        model.forward_step(idx[:, :3], state)
        model.forward_step(idx[:, 3:], state)
        assert state.plan is False
    assert why_not(moe) == "config ffn='moe'"
    assert why_not(reference) == "attention impl 'reference'"
    assert why_not(training) == "training mode"
    fast = model_of()
    state = fast.new_state(1, 4)
    fast.forward_step(idx[:, :3], state)
    # The first call builds the plan; the C++ step runs prompts too (so that a row's numbers
    # never depend on its batch), the PyTorch step only single tokens.
    assert state.plan and state.plan.kernel is not None
    fast.forward_step(idx[:, 3:], state)
    assert state.plan


# -- wrapped layers (LoRA, quantisation) are never bypassed ------------------------------------


class LowRankLinear(nn.Linear):
    """A stand-in for a LoRA or quantised layer: an nn.Linear subclass computing more."""

    def __init__(self, base: nn.Linear, rank: int = 2) -> None:
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None)
        self.load_state_dict(base.state_dict())
        self.a = nn.Parameter(torch.randn(rank, base.in_features) * 0.3)
        self.b = nn.Parameter(torch.randn(base.out_features, rank) * 0.3)

    def forward(self, x):
        return super().forward(x) + x @ self.a.t() @ self.b.t()


class ScaledLayerNorm(LayerNorm):
    def forward(self, x):
        return 2.0 * super().forward(x)


@pytest.mark.parametrize(
    "where", ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj", "lm_head", "ln_2", "act"]
)
def test_a_wrapped_layer_declines_and_its_output_is_used(where):
    model = model_of(seed=5)
    plain = model_of(seed=5)
    block = model.transformer.h[1]
    if where == "lm_head":
        model.lm_head = LowRankLinear(model.lm_head)
    elif where == "ln_2":
        wrapped = ScaledLayerNorm(16)
        wrapped.load_state_dict(block.ln_2.state_dict())
        block.ln_2 = wrapped
    elif where == "act":
        block.mlp.act = nn.ReLU()  # the config says GELU
    else:
        parent, name = where.split(".")
        setattr(getattr(block, parent), name, LowRankLinear(getattr(getattr(block, parent), name)))
    model.eval()  # the new module starts in training mode, which would decline by itself
    assert why_not(model).startswith(f"module {'lm_head' if where == 'lm_head' else 'transformer'}")
    idx = torch.randint(0, V, (2, 10))
    state = model.new_state(2, 10)
    got = decode(model, idx, state)
    assert state.plan is False
    torch.testing.assert_close(got, model(idx)[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, plain(idx)[0], atol=1e-4)  # the wrapper changed the output


def test_why_not_names_the_module_and_its_type():
    model = model_of()
    model.transformer.h[0].attn.c_attn = LowRankLinear(model.transformer.h[0].attn.c_attn).eval()
    assert why_not(model) == "module transformer.h.0.attn.c_attn is a LowRankLinear, not Linear"
    model = model_of()
    model.transformer.h[1].mlp.extra = nn.Linear(2, 2)  # a module the config never builds
    assert why_not(model) == "module transformer.h.1.mlp.extra is a Linear, not expected"
    model = model_of(act="gelu")
    model.transformer.h[1].mlp.act = GELU(approximate="tanh")
    assert why_not(model) == (
        "module transformer.h.1.mlp.act is GELU(approximate='tanh'), not gelu"
    )
    model.transformer.h[1].mlp.act = nn.GELU()  # the same maths, but not the class built
    assert why_not(model) == (
        "module transformer.h.1.mlp.act is a torch.nn.modules.activation.GELU, "
        "not scratchllm.models.layers.ffn.GELU"
    )


def test_a_forward_hook_declines():
    model = model_of()
    calls = []
    model.transformer.h[0].mlp.register_forward_hook(lambda m, i, o: calls.append(1))
    assert why_not(model) == "a forward hook on a MLP"
    idx = torch.randint(0, V, (1, 8))
    decode(model, idx, model.new_state(1, 8))
    assert len(calls) == 3  # the prompt and both single tokens ran the hooked module


# -- re-checked on every call ------------------------------------------------------------------


def test_mode_and_attention_impl_are_rechecked_on_every_call(monkeypatch):
    model = model_of(seed=6, pos="rope")
    fast_steps = []
    real = gpt_module.decode_token

    def counting(*args):
        fast_steps.append(1)
        return real(*args)

    monkeypatch.setattr(gpt_module, "decode_token", counting)
    idx = torch.randint(0, V, (1, 12))
    state = model.new_state(1, 12)
    logits = [model.forward_step(idx[:, :6], state)]  # the C++ step runs the prompt too
    fast_steps.clear()
    logits.append(model.forward_step(idx[:, 6:7], state))
    assert len(fast_steps) == 1
    model.set_attention_impl("reference")
    logits.append(model.forward_step(idx[:, 7:8], state))
    assert len(fast_steps) == 1  # the reference attention ran, and kept its weights
    assert model.transformer.h[0].attn.last_weights.shape == (1, 2, 1, 8)
    model.set_attention_impl("sdpa")
    model.train()  # dropout is 0, so training mode changes nothing but the path
    logits.append(model.forward_step(idx[:, 8:9], state))
    assert len(fast_steps) == 1
    model.eval()
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: None)
    try:
        logits.append(model.forward_step(idx[:, 9:10], state))
    finally:
        handle.remove()
    assert len(fast_steps) == 1
    logits += [model.forward_step(idx[:, t : t + 1], state) for t in (10, 11)]
    assert len(fast_steps) == 3  # back on the fast path with the same plan
    torch.testing.assert_close(torch.cat(logits, 1), model(idx)[0], atol=1e-5, rtol=1e-5)


def test_the_split_matrices_are_cpu_only():
    from scratchllm.models.gpt_decode import _matrix

    w = torch.zeros(6, 4)
    assert _matrix(w, None, 1).halves.shape == (2, 4, 3)
    assert _matrix(w, None, 2).halves is None  # batches use F.linear
    assert _matrix(torch.zeros(5, 4), None, 1).halves is None  # odd: no halves
    assert _matrix(torch.zeros(6, 4, device="meta"), None, 1).halves is None
