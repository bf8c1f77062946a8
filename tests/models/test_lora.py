"""LoRA on our models: the config, which layers it wraps, freezing, initialisation,
exact merge/unmerge on every GPT variant, adapter files and their errors, generation
through the wrapped weights, and that training moves only the adapters."""

from __future__ import annotations

import copy
import dataclasses
import doctest
import json
import math

import pytest
import torch

from scratchllm.configs import lora as lora_config_module
from scratchllm.generation import generate
from scratchllm.models import GPT, MLPLM, RNNLM, GPTConfig, MLPConfig, RNNConfig, load, train_kernel
from scratchllm.models import lora as lora_module
from scratchllm.models.lora import (
    LoRAConfig,
    LoRALinear,
    apply_lora,
    base_storage,
    load_adapter,
    lora_layers,
    lora_state_dict,
    merge_adapters,
    merge_and_unload,
    read_adapter_config,
    save_adapter,
    unmerge_adapters,
)

TINY = dict(n_layer=2, n_head=2, n_embd=16, block_size=12, vocab_size=13)
VARIANTS = {
    "gpt2": {},
    "rope-rmsnorm-relu": dict(pos="rope", norm="rmsnorm", act="relu"),
    "sinusoidal-untied-nobias": dict(pos="sinusoidal", tie_weights=False, bias=False),
    "moe-top2": dict(ffn="moe", n_expert=3, moe_top_k=2),
}


def tiny_gpt(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{**TINY, **overrides})).eval()


def randomize_adapters(model, seed: int = 1, std: float = 0.2) -> None:
    """Give B a non-zero value (it starts at zero, which would make every test trivial)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.weight.copy_(torch.randn(layer.lora_B.weight.shape, generator=g) * std)


def ids(seed: int = 2, B: int = 3, T: int = 12, V: int = 13) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


# -- the config --------------------------------------------------------------------------------


def test_config_scaling_and_rslora():
    assert LoRAConfig(r=4, alpha=8).scaling == 2.0
    assert LoRAConfig(r=16, alpha=8, rslora=True).scaling == 2.0  # 8 / sqrt(16)


def test_config_json_round_trip_and_string_targets():
    config = LoRAConfig(r=4, alpha=6.5, dropout=0.1, targets="c_attn, c_fc", rslora=True)
    assert config.targets == ("c_attn", "c_fc")
    back = LoRAConfig(**json.loads(json.dumps(dataclasses.asdict(config))))
    assert back == config
    assert LoRAConfig.from_peft(json.loads(json.dumps(config.to_peft()))) == config


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(r=0), "rank r"),
        (dict(r=2.5), "rank r"),
        (dict(alpha=0), "alpha"),
        (dict(alpha=float("nan")), "alpha"),
        (dict(dropout=1.0), "dropout"),
        (dict(targets=()), "targets"),
        (dict(targets=","), "targets"),
    ],
)
def test_config_rejects_bad_values(fields, message):
    with pytest.raises(ValueError, match=message):
        LoRAConfig(**fields)


@pytest.mark.parametrize(
    "field, value",
    [
        ("use_dora", True),
        ("bias", "all"),
        ("modules_to_save", ["lm_head"]),
        ("rank_pattern", {"c_fc": 2}),
        ("layers_to_transform", [0]),
    ],
)
def test_peft_options_we_do_not_build_are_refused(field, value):
    fields = {**LoRAConfig().to_peft(), field: value}
    with pytest.raises(ValueError, match=field):
        LoRAConfig.from_peft(fields)


def test_peft_regex_targets_are_refused():
    with pytest.raises(ValueError, match="regular expression"):
        LoRAConfig.from_peft({**LoRAConfig().to_peft(), "target_modules": ".*c_attn"})


# -- applying ----------------------------------------------------------------------------------


def test_apply_freezes_the_base_and_trains_only_the_adapters():
    model = apply_lora(tiny_gpt(), LoRAConfig(r=4, alpha=8))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    # every block's four Linear layers, nothing else (lm_head is tied to wte)
    assert sorted(lora_layers(model)) == sorted(
        f"transformer.h.{i}.{m}"
        for i in range(2)
        for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    )
    C, r = 16, 4
    per_block = r * (C + 3 * C) + r * (C + C) + r * (C + 4 * C) + r * (4 * C + C)
    assert model.num_parameters() == 2 * per_block


@pytest.fixture
def pytorch_kernels(monkeypatch):
    """Both models on PyTorch's kernels, for bitwise comparisons in training mode: there the
    base model's plain layers take the fused C++ path (``models/train_kernel.py``, equal to
    PyTorch's to float32 rounding), which a LoRA layer does not."""
    monkeypatch.setattr(train_kernel, "enabled", False)


def test_init_is_kaiming_a_and_zero_b_so_the_model_starts_unchanged(pytorch_kernels):
    base = tiny_gpt()
    model = apply_lora(copy.deepcopy(base), LoRAConfig(r=4, alpha=8))
    for layer in lora_layers(model).values():
        A = layer.lora_A.weight
        bound = 1 / math.sqrt(layer.in_features)  # kaiming_uniform(a=sqrt(5)) = nn.Linear's
        assert A.abs().max() <= bound and A.abs().max() > 0.7 * bound
        assert torch.count_nonzero(layer.lora_B.weight) == 0
    x = ids()
    assert torch.equal(model(x)[0], base(x)[0])


def test_suffix_targets_select_as_peft_does():
    model = apply_lora(tiny_gpt(), LoRAConfig(targets=("attn.c_proj",)))
    assert sorted(lora_layers(model)) == [
        "transformer.h.0.attn.c_proj",
        "transformer.h.1.attn.c_proj",
    ]
    model = apply_lora(tiny_gpt(), LoRAConfig(targets=("c_proj",)))
    assert len(lora_layers(model)) == 4  # attn.c_proj and mlp.c_proj of both blocks


def test_moe_experts_and_router_are_targets():
    model = apply_lora(tiny_gpt(ffn="moe", n_expert=3), LoRAConfig(targets=("c_fc", "router")))
    assert len(lora_layers(model)) == 2 * 3 + 2


def test_an_unknown_target_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"q_proj.*\['c_attn', 'c_fc', 'c_proj', 'lm_head'\]"):
        apply_lora(tiny_gpt(), LoRAConfig(targets=("c_attn", "q_proj")))


def test_a_target_that_is_not_linear_is_refused():
    with pytest.raises(ValueError, match="ln_1.*LayerNorm, not a Linear"):
        apply_lora(tiny_gpt(), LoRAConfig(targets=("ln_1",)))


def test_a_tied_head_is_refused_an_untied_one_is_wrapped():
    model = tiny_gpt()
    with pytest.raises(ValueError, match="lm_head shares its matrix"):
        apply_lora(model, LoRAConfig(targets=("lm_head",)))
    assert all(p.requires_grad for p in model.parameters())  # the failure changed nothing
    model = apply_lora(tiny_gpt(tie_weights=False), LoRAConfig(targets=("lm_head",)))
    assert list(lora_layers(model)) == ["lm_head"]


def test_applying_twice_is_refused():
    model = apply_lora(tiny_gpt(), LoRAConfig())
    with pytest.raises(ValueError, match="already carries LoRA"):
        apply_lora(model, LoRAConfig())


def test_the_wrappers_take_the_mode_of_the_layers_they_replace():
    assert not any(m.training for m in apply_lora(tiny_gpt(), LoRAConfig()).modules())
    assert all(m.training for m in apply_lora(tiny_gpt().train(), LoRAConfig()).modules())


def test_dropout_acts_on_the_adapter_input_in_training_only(pytorch_kernels):
    model = apply_lora(tiny_gpt(), LoRAConfig(r=4, alpha=8, dropout=0.5))
    randomize_adapters(model)
    x = ids()
    eval_logits = model(x)[0]
    model.train()
    assert not torch.allclose(model(x)[0], eval_logits)
    model.eval()
    assert torch.equal(model(x)[0], eval_logits)
    # with the adapters zeroed, dropout has nothing to act on: the base model exactly
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.weight.zero_()
    model.train()
    assert torch.equal(model(x)[0], tiny_gpt().train()(x)[0])


# -- merging -----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("rslora", [False, True])
def test_merge_and_unmerge_are_exact_on_every_variant(variant, rslora):
    model = apply_lora(tiny_gpt(**VARIANTS[variant]), LoRAConfig(r=4, alpha=8, rslora=rslora))
    randomize_adapters(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = ids()
    with torch.no_grad():
        adapted = model(x)[0]
        merge_adapters(model)
        assert all(layer.merged for layer in lora_layers(model).values())
        merged = model(x)[0]
        torch.testing.assert_close(merged, adapted, rtol=0, atol=1e-6)
        unmerge_adapters(model)
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k]), k  # the original weights back, bit for bit
        assert torch.equal(model(x)[0], adapted)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_merge_and_unload_writes_a_plain_checkpoint(variant, tmp_path):
    model = apply_lora(tiny_gpt(**VARIANTS[variant]), LoRAConfig(r=4, alpha=8))
    randomize_adapters(model)
    x = ids()
    with torch.no_grad():
        adapted = model(x)[0]
    plain = merge_and_unload(model)
    assert not lora_layers(plain) and not hasattr(plain, "lora_config")
    assert all(type(m) is torch.nn.Linear for n, m in plain.named_modules() if n.endswith("c_attn"))
    assert all(p.requires_grad for p in plain.parameters())
    plain.save(tmp_path / "merged")
    loaded = load(tmp_path / "merged")
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], adapted, rtol=0, atol=1e-6)


def test_the_weight_property_is_the_applied_matrix():
    model = apply_lora(tiny_gpt(), LoRAConfig(r=4, alpha=8))
    randomize_adapters(model)
    layer = model.transformer.h[0].mlp.c_fc
    x = torch.randn(5, 16)
    with torch.no_grad():
        torch.testing.assert_close(
            layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias), rtol=0, atol=1e-6
        )


@pytest.mark.parametrize("family", ["mlp", "rnn"])
def test_the_mlp_and_rnn_language_models_take_lora_too(family):
    torch.manual_seed(0)
    if family == "mlp":
        model = MLPLM(MLPConfig(n=3, vocab_size=13, n_embd=8, n_hidden=32)).eval()
        targets = ("fc", "lm_head")
    else:
        model = RNNLM(RNNConfig(cell="gru", vocab_size=13, n_embd=8, n_hidden=16)).eval()
        targets = ("lm_head",)
    apply_lora(model, LoRAConfig(r=2, alpha=4, targets=targets))
    assert len(lora_layers(model)) == len(targets)
    randomize_adapters(model)
    x = ids(T=6)
    with torch.no_grad():
        adapted = model(x)[0]
        merge_adapters(model)
        torch.testing.assert_close(model(x)[0], adapted, rtol=0, atol=1e-6)


# -- generation uses the wrapped weights -------------------------------------------------------


@pytest.mark.parametrize("variant", ["gpt2", "rope-rmsnorm-relu"])
def test_greedy_generation_with_adapters_equals_the_merged_model(variant):
    base = tiny_gpt(**VARIANTS[variant])
    model = apply_lora(copy.deepcopy(base), LoRAConfig(r=4, alpha=8))
    randomize_adapters(model, std=1.0)
    prompt = ids(B=2, T=3)
    out = generate(model, prompt, max_new_tokens=8, temperature=0.0)
    merged = merge_and_unload(copy.deepcopy(model)).eval()
    assert torch.equal(out, generate(merged, prompt, max_new_tokens=8, temperature=0.0))
    # and the adapters matter: the base alone writes something else
    assert not torch.equal(out, generate(base, prompt, max_new_tokens=8, temperature=0.0))


# -- training ----------------------------------------------------------------------------------


def test_training_moves_only_the_adapters_and_lowers_the_loss():
    model = apply_lora(tiny_gpt(), LoRAConfig(r=4, alpha=8)).train()
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = ids(B=4)
    y = (x + 1) % 13  # next token = this one + 1
    losses = []
    for _ in range(30):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # (the frozen tied head of a tiny model caps the logits, so the loss cannot fall far)
    assert losses[-1] < losses[0] - 0.2
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, frozen[n]) and p.grad is None, n


def test_base_storage_of_a_dense_model_is_four_bytes_a_parameter():
    plain = tiny_gpt()
    n_bytes, n_params = base_storage(apply_lora(copy.deepcopy(plain), LoRAConfig()))
    assert n_params == plain.num_parameters()  # the adapters are not the base
    assert n_bytes == 4 * n_params


# -- adapter files -----------------------------------------------------------------------------


def test_save_writes_only_the_adapter_in_peft_layout(tmp_path):
    model = apply_lora(tiny_gpt(), LoRAConfig(r=4, alpha=8, targets=("c_attn",)))
    save_adapter(model, tmp_path / "ad")
    assert sorted(p.name for p in (tmp_path / "ad").iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    from safetensors.torch import load_file

    tensors = load_file(tmp_path / "ad" / "adapter_model.safetensors")
    assert sorted(tensors) == [
        f"base_model.model.transformer.h.{i}.attn.c_attn.lora_{m}.weight"
        for i in range(2)
        for m in "AB"
    ]
    assert tensors["base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"].shape == (4, 16)
    assert tensors["base_model.model.transformer.h.0.attn.c_attn.lora_B.weight"].shape == (48, 4)
    fields = json.loads((tmp_path / "ad" / "adapter_config.json").read_text())
    assert fields["peft_type"] == "LORA" and fields["r"] == 4 and fields["lora_alpha"] == 8
    assert fields["target_modules"] == ["c_attn"]


def test_load_applies_the_adapter_to_its_base(tmp_path):
    model = apply_lora(tiny_gpt(), LoRAConfig(r=4, alpha=8, rslora=True))
    randomize_adapters(model)
    save_adapter(model, tmp_path / "ad")
    fresh = load_adapter(tiny_gpt(), tmp_path / "ad")
    assert read_adapter_config(tmp_path / "ad") == model.lora_config == fresh.lora_config
    x = ids()
    with torch.no_grad():
        assert torch.equal(fresh(x)[0], model(x)[0])
    for k, v in lora_state_dict(model).items():
        assert torch.equal(lora_state_dict(fresh)[k], v)


@pytest.mark.parametrize(
    "other, message",
    [
        (dict(n_embd=24), "has shape"),  # wider base: A and B do not fit
        (dict(n_layer=1), "unexpected"),  # fewer blocks: the adapter has layers left over
        (dict(n_layer=3), "missing"),  # more blocks: some layers get no adapter
    ],
)
def test_load_onto_another_base_is_a_clear_error_and_changes_nothing(tmp_path, other, message):
    save_adapter(apply_lora(tiny_gpt(), LoRAConfig()), tmp_path / "ad")
    wrong = tiny_gpt(**other)
    with pytest.raises(ValueError, match=message):
        load_adapter(wrong, tmp_path / "ad")
    assert not lora_layers(wrong) and all(p.requires_grad for p in wrong.parameters())


def test_load_onto_a_base_without_the_targets_names_them(tmp_path):
    save_adapter(apply_lora(tiny_gpt(), LoRAConfig(targets=("c_fc",))), tmp_path / "ad")
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="unknown LoRA target 'c_fc'"):
        load_adapter(MLPLM(MLPConfig(vocab_size=13)), tmp_path / "ad")


def test_bad_adapter_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_adapter(tiny_gpt(), tmp_path)
    save_adapter(apply_lora(tiny_gpt(), LoRAConfig()), tmp_path / "ad")
    weights = tmp_path / "ad" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="cannot read adapter weights"):
        load_adapter(tiny_gpt(), tmp_path / "ad")
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="missing adapter weights"):
        load_adapter(tiny_gpt(), tmp_path / "ad")
    (tmp_path / "ad" / "adapter_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        load_adapter(tiny_gpt(), tmp_path / "ad")
    (tmp_path / "ad" / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    with pytest.raises(ValueError, match="lora_alpha"):
        load_adapter(tiny_gpt(), tmp_path / "ad")


def test_saving_a_model_without_adapters_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no LoRA adapters"):
        save_adapter(tiny_gpt(), tmp_path / "ad")


def test_a_wrapped_layer_is_not_a_plain_linear():
    """The fast decode path and HF-style code recognise plain ``nn.Linear``; a wrapper
    must not pass for one, or its adapter would be skipped."""
    layer = apply_lora(tiny_gpt(), LoRAConfig()).transformer.h[0].attn.c_attn
    assert isinstance(layer, LoRALinear) and not isinstance(layer, torch.nn.Linear)


@pytest.mark.parametrize("module", [lora_module, lora_config_module])
def test_docstring_examples_run(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
