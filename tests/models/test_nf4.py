"""NF4 and QLoRA: the levels are the paper's, packing round-trips, quantization picks
the nearest level and is exact on levels times a scale, double quantization of the
scales, the layer's forward and backward against dense PyTorch, whole models saved and
loaded, and LoRA on a 4-bit base against the same LoRA on its dequantized weights."""

from __future__ import annotations

import copy
import doctest

import pytest
import torch
import torch.nn.functional as F

from scratchllm.generation import generate
from scratchllm.models import GPT, GPTConfig, load
from scratchllm.models import nf4 as nf4_module
from scratchllm.models.lora import (
    LoRAConfig,
    apply_lora,
    base_storage,
    load_adapter,
    lora_layers,
    lora_state_dict,
    merge_and_unload,
    save_adapter,
    set_lora_state_dict,
)
from scratchllm.models.nf4 import (
    NF4_LEVELS,
    NF4Config,
    NF4Linear,
    dequantize_model,
    dequantize_nf4,
    dequantize_scales,
    load_quantized,
    normal_float_levels,
    pack_4bit,
    quantize_model,
    quantize_nf4,
    quantize_scales,
    save_quantized,
    unpack_4bit,
)

# The table as printed in the QLoRA paper (Dettmers et al. 2023, Appendix E).
PAPER = [
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]  # fmt: skip
LEVELS = torch.tensor(PAPER)
TINY = dict(n_layer=2, n_head=2, n_embd=32, block_size=12, vocab_size=13)
DQ = [False, True]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_gpt(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{**TINY, **overrides})).eval()


def ids(seed: int = 2, B: int = 3, T: int = 12) -> torch.Tensor:
    return torch.randint(0, 13, (B, T), generator=gen(seed))


# -- the levels --------------------------------------------------------------------------------


def test_the_levels_are_the_papers():
    assert list(NF4_LEVELS) == PAPER
    # and they are what the definition gives (quantiles of N(0, 1)), bit for bit
    assert torch.equal(normal_float_levels(), LEVELS)
    assert len(set(PAPER)) == 16 and sorted(PAPER) == PAPER and 0.0 in PAPER


# -- packing -----------------------------------------------------------------------------------


def test_packing_round_trips_every_byte():
    codes = torch.cartesian_prod(torch.arange(16), torch.arange(16)).reshape(-1).to(torch.uint8)
    packed = pack_4bit(codes)
    assert packed.dtype == torch.uint8 and packed.numel() == 256
    assert sorted(packed.tolist()) == list(range(256))  # every byte value used once
    assert torch.equal(unpack_4bit(packed), codes)
    assert pack_4bit(torch.tensor([3, 10], dtype=torch.uint8)).item() == 3 * 16 + 10


def test_packing_an_odd_count_is_refused():
    with pytest.raises(ValueError, match="even number"):
        pack_4bit(torch.zeros(3, dtype=torch.uint8))


# -- quantization ------------------------------------------------------------------------------


def exact_scales(n: int) -> torch.Tensor:
    """``n`` (even) positive scales that survive double quantization exactly: pairs
    3 +- d with d a power of two (FP8 holds d / (absmax / 448)), so the mean is exactly 3."""
    d = torch.tensor([0.5, 0.25, 0.125, 0.0625]).repeat(n)[: n // 2]
    return 3.0 + torch.stack([d, -d], dim=1).reshape(-1)


@pytest.mark.parametrize("double_quant", DQ)
@pytest.mark.parametrize("shape", [(8, 64), (16, 40)])  # 40 * 16 = 640: ten blocks of 64
def test_levels_times_a_scale_come_back_exactly(shape, double_quant):
    n = shape[0] * shape[1]
    n_blocks = n // 64
    codes = torch.randint(0, 16, (n_blocks, 64), generator=gen(0))
    codes[:, 0] = 15  # a level of magnitude 1 in every block, so its absmax is the scale
    scales = (
        exact_scales(n_blocks) if double_quant else torch.rand(n_blocks, generator=gen(1)) + 0.1
    )
    w = (LEVELS[codes] * scales[:, None]).reshape(shape)
    linear = torch.nn.Linear(shape[1], shape[0])
    with torch.no_grad():
        linear.weight.copy_(w)
    layer = NF4Linear.from_linear(linear, NF4Config(double_quant=double_quant))
    assert torch.equal(unpack_4bit(layer.packed).view(n_blocks, 64), codes.to(torch.uint8))
    assert torch.equal(layer.scales(), scales)
    assert torch.equal(layer.dequantize(), w)


def test_a_partial_last_block_is_padded_and_cut_off():
    w = torch.randn(7, 9, generator=gen(0))  # 63 values: one block, padded with a zero
    packed, absmax = quantize_nf4(w)
    assert packed.numel() == 32 and absmax.numel() == 1
    assert unpack_4bit(packed)[-1] == 7  # the padding is level 0.0
    assert dequantize_nf4(packed, absmax, 63).shape == (63,)


def test_each_value_gets_its_nearest_level():
    x = torch.randn(50, 64, generator=gen(3))
    packed, absmax = quantize_nf4(x)
    codes = unpack_4bit(packed).view(50, 64).long()
    brute = ((x / absmax[:, None])[..., None] - LEVELS).abs().argmin(dim=-1)  # (50, 64)
    assert torch.equal(codes, brute)
    # so the error is at most half the widest gap between levels, times the scale
    err = (dequantize_nf4(packed, absmax, x.numel()).view(50, 64) - x).abs()
    assert (err <= (LEVELS.diff().max() / 2) * absmax[:, None] + 1e-7).all()


def test_the_byte_table_decodes_as_unpacking_does():
    packed, absmax = quantize_nf4(torch.randn(300, generator=gen(4)))
    by_codes = (LEVELS[unpack_4bit(packed).long()].view(-1, 64) * absmax[:, None]).reshape(-1)
    assert torch.equal(dequantize_nf4(packed, absmax, 300), by_codes[:300])


def test_a_zero_block_stays_zero():
    w = torch.zeros(2, 64)
    w[1] = torch.randn(64, generator=gen(5))
    packed, absmax = quantize_nf4(w)
    out = dequantize_nf4(packed, absmax, 128)
    assert torch.equal(out[:64], torch.zeros(64)) and torch.isfinite(out).all()


def test_double_quantization_error_is_that_of_an_8_bit_float():
    absmax = torch.rand(1000, generator=gen(6)) * 0.1 + 0.01
    codes, scale, mean = quantize_scales(absmax)
    assert codes.dtype == torch.float8_e4m3fn and codes.numel() == 1000 and scale.numel() == 4
    back = dequantize_scales(codes, scale, mean)
    # E4M3 keeps 3 mantissa bits: relative error <= 2^-4 of the centred value (and an
    # absolute 2^-10 of the block scale for the subnormals near the mean)
    centred = (absmax - mean).abs()
    bound = centred / 16 + scale.repeat_interleave(256)[:1000] / 1024 + 1e-9
    assert ((back - absmax).abs() <= bound).all()
    assert (back - absmax).abs().max() > 0  # it is a real (lossy) quantization


# -- the layer ---------------------------------------------------------------------------------


@pytest.mark.parametrize("double_quant", DQ)
@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_backward_equal_dense_pytorch_on_the_dequantized_weight(double_quant, bias):
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 40, bias=bias)
    layer = NF4Linear.from_linear(linear, NF4Config(double_quant=double_quant))
    w = layer.dequantize()
    x = torch.randn(3, 5, 48, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    y = layer(x)
    y_ref = F.linear(x_ref, w, None if not bias else layer.bias)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-6)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=1e-6)
    assert not any(b.requires_grad for b in layer.buffers())


def test_weight_bytes_per_parameter_are_the_papers():
    linear = torch.nn.Linear(512, 512)
    plain = NF4Linear.from_linear(linear)
    assert plain.weight_nbytes() / 512**2 == 0.5 + 4 / 64  # 4 bits + an fp32 scale per 64
    dq = NF4Linear.from_linear(linear, NF4Config(double_quant=True))
    n_blocks = 512**2 // 64  # 4096 scales: 16 blocks of 256
    assert dq.weight_nbytes() == 512**2 // 2 + n_blocks + 4 * (n_blocks // 256) + 4
    assert abs(dq.weight_nbytes() / 512**2 - (0.5 + 0.127 / 8)) < 1e-3  # 0.127 bit overhead


def test_reconstruction_error_of_gaussian_weights():
    """NF4 is made for normally distributed weights: about 9 % relative error (the
    figure docs/lora.md reports), the same with double quantization."""
    for dq in DQ:
        torch.manual_seed(0)
        linear = torch.nn.Linear(256, 256)
        torch.nn.init.normal_(linear.weight, std=0.02)
        w = NF4Linear.from_linear(linear, NF4Config(double_quant=dq)).dequantize()
        rel = (w - linear.weight).norm() / linear.weight.norm()
        assert 0.08 < rel < 0.10, (dq, rel)


# -- whole models ------------------------------------------------------------------------------


def test_quantize_model_replaces_every_linear_but_the_tied_head():
    model = tiny_gpt()
    names = quantize_model(model)
    assert len(names) == 2 * 4 and "lm_head" not in names
    assert all(isinstance(model.get_submodule(n), NF4Linear) for n in names)
    assert type(model.lm_head) is torch.nn.Linear
    assert model.lm_head.weight is model.transformer.wte.weight


@pytest.mark.parametrize("double_quant", DQ)
def test_base_storage_counts_codes_scales_and_the_fp32_rest(double_quant):
    dense = tiny_gpt()
    model = copy.deepcopy(dense)
    names = quantize_model(model, NF4Config(double_quant=double_quant))
    n_bytes, n_params = base_storage(model)
    assert n_params == dense.num_parameters()
    quantized = sum(dense.get_submodule(n).weight.numel() for n in names)
    blocks = [dense.get_submodule(n).weight.numel() // 64 for n in names]  # all whole blocks
    scale_bytes = sum(b + 4 * -(b // -256) + 4 for b in blocks) if double_quant else 4 * sum(blocks)
    assert n_bytes == quantized // 2 + scale_bytes + 4 * (n_params - quantized)


def test_a_small_gpt_base_is_under_0_6_bytes_a_parameter_with_double_quant():
    torch.manual_seed(0)  # docs/lora.md's "baby": 6 x 384, block 256, vocab 65
    model = GPT(GPTConfig(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=65))
    quantize_model(model, NF4Config(double_quant=True))
    n_bytes, n_params = base_storage(model)
    assert 0.516 < n_bytes / n_params < 0.6  # 0.566: the fp32 embeddings, norms, biases add 0.05


@pytest.mark.parametrize("double_quant", DQ)
def test_a_quantized_model_saves_and_loads(tmp_path, double_quant):
    model = tiny_gpt(pos="rope", norm="rmsnorm")
    quantize_model(model, NF4Config(double_quant=double_quant))
    save_quantized(model, tmp_path / "q")
    back = load_quantized(tmp_path / "q")
    saved, loaded = model.state_dict(), back.state_dict()
    assert list(saved) == list(loaded)
    for k, v in saved.items():
        assert v.dtype == loaded[k].dtype and torch.equal(v, loaded[k]), k
    x = ids()
    with torch.no_grad():
        assert torch.equal(back(x)[0], model(x)[0])
    dense = tiny_gpt(pos="rope", norm="rmsnorm")
    dense.save(tmp_path / "dense")
    ratio = (tmp_path / "q" / "model.safetensors").stat().st_size / (
        tmp_path / "dense" / "model.safetensors"
    ).stat().st_size
    assert ratio < 0.35  # the file is mostly 4-bit codes


def test_loading_a_quantized_directory_without_its_description_is_a_clear_error(tmp_path):
    tiny_gpt().save(tmp_path / "plain")
    with pytest.raises(FileNotFoundError, match="quantization.json"):
        load_quantized(tmp_path / "plain")
    model = tiny_gpt()
    quantize_model(model)
    save_quantized(model, tmp_path / "q")
    description = tmp_path / "q" / "quantization.json"
    for text, message in [
        ("{oops", "not a quantization description"),
        ('{"nf4": {"transformer.h.0.attn.c_attn": {"block_sz": 64}}}', "block_sz"),
        ('{"nf4": {"transformer.h.9.attn.c_attn": {}}}', "does not have"),
    ]:
        description.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_quantized(tmp_path / "q")


def test_dequantize_model_gives_back_a_plain_model(tmp_path):
    model = tiny_gpt()
    quantize_model(model)
    x = ids()
    with torch.no_grad():
        q_logits = model(x)[0]
    dequantize_model(model).save(tmp_path / "plain")
    with torch.no_grad():
        torch.testing.assert_close(load(tmp_path / "plain")(x)[0], q_logits, rtol=0, atol=1e-6)


def test_quantizing_after_lora_is_refused():
    with pytest.raises(ValueError, match="quantize the base first"):
        quantize_model(apply_lora(tiny_gpt(), LoRAConfig()))


# -- QLoRA: LoRA on the 4-bit base -------------------------------------------------------------


def qlora_base(double_quant: bool) -> GPT:
    model = tiny_gpt()
    quantize_model(model, NF4Config(double_quant=double_quant))
    return model


def qlora_and_reference(double_quant: bool):
    """A QLoRA model and a dense model holding its dequantized weights, same adapters."""
    config = LoRAConfig(r=4, alpha=8)
    base = qlora_base(double_quant)
    reference = apply_lora(dequantize_model(copy.deepcopy(base)), config)
    qlora = apply_lora(base, config)
    with torch.no_grad():
        for layer in lora_layers(qlora).values():
            layer.lora_B.weight.normal_(std=0.2, generator=gen(7))
    set_lora_state_dict(reference, lora_state_dict(qlora))
    return qlora, reference


@pytest.mark.parametrize("double_quant", DQ)
def test_qlora_logits_and_gradients_equal_lora_on_the_dequantized_weights(double_quant):
    qlora, reference = qlora_and_reference(double_quant)
    x, y = ids(), ids(seed=3)
    _, loss_q = qlora(x, y)
    _, loss_r = reference(x, y)
    torch.testing.assert_close(loss_q, loss_r, rtol=0, atol=1e-6)
    loss_q.backward()
    loss_r.backward()
    params_r = dict(reference.named_parameters())
    trainable = [(n, p) for n, p in qlora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n, _ in trainable)
    for name, p in trainable:
        torch.testing.assert_close(p.grad, params_r[name].grad, rtol=1e-5, atol=1e-7)
    assert all(p.grad is None for p in qlora.parameters() if not p.requires_grad)


def test_qlora_trains_and_merges_into_a_plain_checkpoint(tmp_path):
    qlora, _ = qlora_and_reference(double_quant=True)
    qlora.train()
    opt = torch.optim.AdamW([p for p in qlora.parameters() if p.requires_grad], lr=1e-2)
    x = ids(B=4)
    losses = []
    for _ in range(20):
        _, loss = qlora(x, (x + 1) % 13)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1
    qlora.eval()
    save_adapter(qlora, tmp_path / "adapter")
    with torch.no_grad():
        trained = qlora(x)[0]
        # the adapter goes back onto a freshly quantized base
        again = load_adapter(qlora_base(double_quant=True), tmp_path / "adapter")
        assert torch.equal(again(x)[0], trained)
        merge_and_unload(qlora).save(tmp_path / "merged")
        torch.testing.assert_close(load(tmp_path / "merged")(x)[0], trained, rtol=0, atol=1e-6)


def test_qlora_cannot_merge_in_place():
    qlora, _ = qlora_and_reference(double_quant=False)
    with pytest.raises(ValueError, match="4-bit base"):
        qlora.transformer.h[0].attn.c_attn.merge()


def test_greedy_generation_with_qlora_equals_the_merged_model():
    qlora, _ = qlora_and_reference(double_quant=False)
    prompt = ids(B=2, T=3)
    out = generate(qlora, prompt, max_new_tokens=8, temperature=0.0)
    merged = merge_and_unload(copy.deepcopy(qlora)).eval()
    assert torch.equal(out, generate(merged, prompt, max_new_tokens=8, temperature=0.0))


def test_quantized_logits_stay_close_to_the_dense_model():
    dense = tiny_gpt()
    quantized = copy.deepcopy(dense)
    quantize_model(quantized, NF4Config(double_quant=True))
    x = ids()
    with torch.no_grad():
        a, b = dense(x)[0], quantized(x)[0]
    assert (a - b).norm() / a.norm() < 0.1


def test_docstring_examples_run():
    result = doctest.testmod(nf4_module)
    assert result.attempted > 0 and result.failed == 0


def test_a_quantized_model_casts_to_bfloat16_and_still_runs():
    model = tiny_gpt()
    quantize_model(model, NF4Config(double_quant=True))
    x = ids()
    with torch.no_grad():
        fp32 = model(x)[0]
        bf16 = model.to(torch.bfloat16)(x)[0]
    assert model.transformer.h[0].attn.c_attn.packed.dtype == torch.uint8  # codes untouched
    assert bf16.dtype == torch.bfloat16
    assert (bf16.float() - fp32).norm() / fp32.norm() < 0.05
