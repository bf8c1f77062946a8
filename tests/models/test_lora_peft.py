"""Our LoRA against peft's (the pinned peer): the same model wrapped by
``peft.get_peft_model`` with ``init_lora_weights=False`` (so B is not zero), its A and B
copied into ours, gives the same logits and the same gradients; adapter files cross both
ways; and our adapter loads with peft onto Hugging Face's GPT-2 exported from our base."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

peft = pytest.importorskip("peft")

from scratchllm.models import GPT, GPTConfig  # noqa: E402
from scratchllm.models.lora import (  # noqa: E402
    LoRAConfig,
    apply_lora,
    load_adapter,
    lora_state_dict,
    save_adapter,
    set_lora_state_dict,
)

TINY = dict(n_layer=2, n_head=2, n_embd=16, block_size=10, vocab_size=13)
VARIANTS = {
    "gpt2": {},
    "rope-rmsnorm": dict(pos="rope", norm="rmsnorm"),
    "untied-nobias": dict(tie_weights=False, bias=False),
    "moe": dict(ffn="moe", n_expert=3, moe_top_k=2),
}
TARGETS = ("c_attn", "c_proj", "c_fc")


def tiny_gpt(**overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**{**TINY, **overrides}))


def peft_config(config: LoRAConfig) -> peft.LoraConfig:
    return peft.LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.targets),
        use_rslora=config.rslora,
        init_lora_weights=False,  # A and B both random, as nn.Linear initialises them
    )


def both(base: GPT, config: LoRAConfig):
    """The same base wrapped by peft and by us, with peft's random A and B copied in."""
    theirs = peft.get_peft_model(copy.deepcopy(base), peft_config(config))
    ours = apply_lora(copy.deepcopy(base), config)
    set_lora_state_dict(ours, peft.get_peft_model_state_dict(theirs))
    return theirs, ours


def batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 13, (3, 10), generator=g)
    return x, torch.randint(0, 13, (3, 10), generator=g)


def peft_name(name: str) -> str:
    """peft's parameter name -> ours: drop its wrapper prefix and the adapter's name."""
    return name.removeprefix("base_model.model.").replace(".default.", ".")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("rslora", [False, True], ids=["alpha/r", "rslora"])
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_logits_and_gradients_equal_peft(variant, rslora, dropout):
    config = LoRAConfig(r=4, alpha=6, dropout=dropout, targets=TARGETS, rslora=rslora)
    theirs, ours = both(tiny_gpt(**VARIANTS[variant]), config)
    assert any(torch.count_nonzero(v) for k, v in lora_state_dict(ours).items() if "lora_B" in k)
    theirs.train()
    ours.train()
    x, y = batch()
    torch.manual_seed(5)  # the same dropout masks: both draw them in the same order
    logits_p, loss_p = theirs(x, y)
    torch.manual_seed(5)
    logits_o, loss_o = ours(x, y)
    torch.testing.assert_close(logits_o, logits_p, rtol=0, atol=1e-6)
    loss_p.backward()
    loss_o.backward()

    grads_p = {peft_name(n): p.grad for n, p in theirs.named_parameters() if p.requires_grad}
    grads_o = {n: p.grad for n, p in ours.named_parameters() if p.requires_grad}
    assert sorted(grads_o) == sorted(grads_p)  # the same parameters train
    assert all(".lora_A." in n or ".lora_B." in n for n in grads_o)
    for name, grad in grads_o.items():
        assert grad is not None and grad.abs().sum() > 0, name
        torch.testing.assert_close(grad, grads_p[name], rtol=1e-5, atol=1e-7, msg=name)
    for name, p in ours.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, name  # the base gets no gradient


def test_merge_equals_peft_merge_and_unload():
    config = LoRAConfig(r=4, alpha=8, targets=TARGETS)
    theirs, ours = both(tiny_gpt(), config)
    from scratchllm.models.lora import merge_and_unload

    theirs_plain = theirs.merge_and_unload()
    ours_plain = merge_and_unload(ours)
    for name, p in ours_plain.state_dict().items():
        torch.testing.assert_close(p, theirs_plain.state_dict()[name], rtol=0, atol=1e-7)


def test_peft_loads_our_adapter(tmp_path):
    config = LoRAConfig(r=4, alpha=8, targets=TARGETS, rslora=True)
    _, ours = both(tiny_gpt(), config)
    save_adapter(ours, tmp_path / "ours")
    loaded = peft.PeftModel.from_pretrained(tiny_gpt(), tmp_path / "ours").eval()
    assert loaded.peft_config["default"].use_rslora
    x, _ = batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], ours.eval()(x)[0], rtol=0, atol=1e-6)


def test_we_load_peft_adapter(tmp_path):
    config = LoRAConfig(r=4, alpha=8, targets=("c_attn", "mlp.c_proj"))
    theirs, _ = both(tiny_gpt(), config)
    theirs.save_pretrained(tmp_path / "theirs")
    ours = load_adapter(tiny_gpt(), tmp_path / "theirs").eval()
    assert set(ours.lora_config.targets) == set(config.targets)  # peft keeps a set
    assert (ours.lora_config.r, ours.lora_config.alpha) == (config.r, config.alpha)
    x, _ = batch()
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], theirs.eval()(x)[0], rtol=0, atol=1e-6)


def test_our_adapter_loads_with_peft_onto_exported_hf_gpt2(tmp_path):
    transformers = pytest.importorskip("transformers")
    from scratchllm.interop import export_gpt2

    base = tiny_gpt(act="gelu_tanh")  # GPT-2's own activation
    _, ours = both(base, LoRAConfig(r=4, alpha=8, targets=TARGETS))
    export_gpt2(base, tmp_path / "hf")
    save_adapter(ours, tmp_path / "adapter")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft notes that GPT-2's Conv1D needs fan_in_fan_out
        adapted = peft.PeftModel.from_pretrained(hf, tmp_path / "adapter").eval()
    x, _ = batch()
    with torch.no_grad():
        torch.testing.assert_close(adapted(x).logits, ours.eval()(x)[0], rtol=0, atol=1e-5)
