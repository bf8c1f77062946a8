"""4-bit NormalFloat (NF4): QLoRA's frozen base, in PyTorch.

A weight matrix is cut into blocks of 64 numbers. Each block keeps its absolute maximum
``c`` (the *absmax* scale) and, for each weight ``w``, the index of the level nearest to
``w / c`` among 16 fixed levels in ``[-1, 1]``: 4 bits. Reading it back is a table look-up
and a multiply, ``w ~ levels[code] * c``. Trained weights are close to normally
distributed, so the levels are not evenly spaced: Dettmers et al. (QLoRA, 2023) place them
at quantiles of N(0, 1), each level taking an equal share of the probability mass, with
an exact zero (so padding and zero weights stay zero)::

    8 positive levels: ndtri(linspace(0.9677083, 0.5, 9)[:-1])   (the 9th point, 0.5, is 0)
    7 negative levels: -ndtri(linspace(0.9677083, 0.5, 8)[:-1])
    then 0, sorted, divided by the largest, so the ends are exactly -1 and 1.

``0.9677083`` is the mean of ``1 - 1/(2*15)`` and ``1 - 1/(2*16)``: the outermost quantile
kept finite. ``normal_float_levels()`` computes the table; ``NF4_LEVELS`` is the paper's
published table, and the tests hold the two equal bit for bit.

Storage, per weight: 4 bits of code plus a 32-bit scale per 64 weights (0.5 bit), so
0.5625 bytes. *Double quantization* stores the scales themselves in 8-bit floats
(``float8_e4m3fn``) in blocks of 256, after subtracting their mean (they are all
positive; centring them uses the 8-bit range on both sides): 8/64 + 32/(64*256) = 0.127
bit per weight of overhead, 0.516 bytes in all.

``NF4Linear`` holds a frozen ``nn.Linear`` this way (two codes packed per ``uint8``, the
first in the high nibble) and dequantizes the matrix inside each matmul, in the forward
pass and again in the backward one, so the dense matrix never outlives its product.

>>> import torch
>>> w = torch.tensor([[0.0, 0.5, -1.0, 2.0]])
>>> packed, absmax = quantize_nf4(w, block_size=4)
>>> absmax.tolist()                    # w / 2 = [0, 0.25, -0.5, 1]: nearest levels
[2.0]
>>> packed.tolist()                    # codes 7 (0.0), 10 (0.2461), 2 (-0.5251), 15 (1.0)
[122, 47]
>>> dequantize_nf4(packed, absmax, 4, block_size=4).tolist()
[0.0, 0.4922246038913727, -1.0501461029052734, 2.0]
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from scratchllm.configs.lora import NF4Config

# The 16 NF4 levels of the QLoRA paper (Appendix E; bitsandbytes' table), code 0 .. 15.
NF4_LEVELS = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)
FP8 = torch.float8_e4m3fn  # the 8-bit float of double quantization; largest finite 448
QUANT_FILE = "quantization.json"  # beside config.json in a saved quantized model


def normal_float_levels(offset: float = 0.9677083) -> torch.Tensor:
    """The NF4 levels from their definition: quantiles of N(0, 1), scaled to [-1, 1].

    Computed in float32 as the paper's code does (the published table is its output).
    """
    pos = torch.special.ndtri(torch.linspace(offset, 0.5, 9)[:-1].double()).float()
    neg = -torch.special.ndtri(torch.linspace(offset, 0.5, 8)[:-1].double()).float()
    levels = torch.cat([pos, torch.zeros(1), neg]).sort().values
    return levels / levels.max()


def _levels(device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.tensor(NF4_LEVELS, dtype=torch.float32, device=device)


# -- packing: two 4-bit codes per byte -------------------------------------------------------


def pack_4bit(codes: torch.Tensor) -> torch.Tensor:
    """``codes [2N]`` (uint8, each < 16) -> ``[N]`` bytes, the first code in the high nibble.

    >>> pack_4bit(torch.tensor([1, 2, 15, 0], dtype=torch.uint8)).tolist()
    [18, 240]
    """
    if codes.numel() % 2:
        raise ValueError(f"pack_4bit needs an even number of codes, got {codes.numel()}")
    pairs = codes.reshape(-1, 2)
    return (pairs[:, 0] << 4) | pairs[:, 1]


def unpack_4bit(packed: torch.Tensor) -> torch.Tensor:
    """The inverse of ``pack_4bit``: ``[N]`` bytes -> ``[2N]`` codes."""
    return torch.stack([packed >> 4, packed & 0x0F], dim=-1).reshape(-1)


# -- blockwise NF4 -----------------------------------------------------------------------------


def _blocks(x: torch.Tensor, block_size: int) -> torch.Tensor:
    """``x`` flattened and zero-padded to whole blocks: ``[n_blocks, block_size]``."""
    flat = x.detach().reshape(-1).float()
    pad = -flat.numel() % block_size
    return F.pad(flat, (0, pad)).view(-1, block_size)


def quantize_nf4(x: torch.Tensor, block_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (any shape) -> ``(packed uint8 [n_blocks * block_size / 2], absmax fp32
    [n_blocks])``: each value's nearest level to ``value / absmax`` of its block."""
    if block_size % 2:
        raise ValueError(f"block_size ({block_size}) must be even: two codes share a byte")
    blocks = _blocks(x, block_size)  # (n_blocks, block_size)
    absmax = blocks.abs().amax(dim=1)  # (n_blocks,)
    # An all-zero block has absmax 0; divide by 1 instead (its codes are all level 0.0).
    normed = blocks / torch.where(absmax > 0, absmax, 1.0)[:, None]  # in [-1, 1]
    levels = _levels(x.device)
    midpoints = (levels[1:] + levels[:-1]) / 2  # 15 boundaries between 16 levels
    codes = torch.bucketize(normed, midpoints).to(torch.uint8)  # nearest level's index
    return pack_4bit(codes.reshape(-1)), absmax


def dequantize_nf4(
    packed: torch.Tensor,
    absmax: torch.Tensor,
    numel: int,
    block_size: int = 64,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The first ``numel`` values ``levels[code] * absmax`` as a flat ``dtype`` tensor.

    A byte holds two codes, so a 256-row table of level pairs decodes it in one look-up
    (``F.embedding``): the same values as ``levels[unpack_4bit(packed)]``, about 4x faster
    on a CPU, because nothing is unpacked.
    """
    levels = _levels(packed.device)
    byte = torch.arange(256, device=packed.device)
    pairs = torch.stack([levels[byte >> 4], levels[byte & 0x0F]], dim=1)  # (256, 2)
    values = F.embedding(packed.long(), pairs).view(-1, block_size)  # (n_blocks, block_size)
    return (values * absmax[:, None]).reshape(-1)[:numel].to(dtype)


# -- double quantization: the scales in 8-bit floats ------------------------------------------


def quantize_scales(
    absmax: torch.Tensor, block_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``absmax [n]`` -> ``(fp8 codes [n], scale fp32 [n_blocks], mean fp32 [])``.

    The scales are centred on their mean, then each block of ``block_size`` is divided by
    its own absmax / 448 (448 is FP8 E4M3's largest value) and rounded to FP8.
    """
    mean = absmax.float().mean()
    blocks = _blocks(absmax.float() - mean, block_size)  # (n_blocks, block_size)
    scale = blocks.abs().amax(dim=1) / torch.finfo(FP8).max  # (n_blocks,)
    codes = (blocks / torch.where(scale > 0, scale, 1.0)[:, None]).to(FP8)
    return codes.reshape(-1)[: absmax.numel()], scale, mean  # the padding is not kept


def dequantize_scales(
    codes: torch.Tensor, scale: torch.Tensor, mean: torch.Tensor, block_size: int = 256
) -> torch.Tensor:
    """The inverse of ``quantize_scales``: the ``n`` scales, fp32."""
    blocks = _blocks(codes.float(), block_size)  # (n_blocks, block_size)
    return (blocks * scale[:, None] + mean).reshape(-1)[: codes.numel()]


# -- the layer ---------------------------------------------------------------------------------


class _DequantMatmul(torch.autograd.Function):
    """``x @ W^T`` with ``W`` dequantized in the forward pass and again in the backward
    one, so autograd never keeps the dense matrix (the 4-bit codes are the only copy)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: NF4Linear) -> torch.Tensor:
        ctx.layer = layer
        return F.linear(x, layer.dequantize(x.dtype))  # (..., in) @ (in, out) -> (..., out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad @ ctx.layer.dequantize(grad.dtype), None  # (..., out) @ (out, in)


class NF4Linear(nn.Module):
    """A frozen ``nn.Linear`` stored as NF4 codes; ``forward(x) = x W^T + b``.

    Buffers: ``packed`` (uint8, two codes a byte) and either ``absmax`` (fp32, one per
    block) or, with double quantization, ``absmax_codes`` (FP8 bits), ``absmax_scale`` (fp32,
    one per 256 scales) and ``absmax_mean`` (fp32). The bias stays a full-precision
    parameter. ``NF4Linear(in, out, bias, config)`` makes an empty layer to load a state
    into; ``NF4Linear.from_linear(linear, config)`` quantizes one.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        config: NF4Config | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.config = config = config or NF4Config()
        self.dtype = dtype  # what the weight is dequantized to when no input says otherwise
        n_blocks = -(in_features * out_features // -config.block_size)  # ceil division
        self.register_buffer(
            "packed",
            torch.zeros(n_blocks * config.block_size // 2, dtype=torch.uint8, device=device),
        )
        if config.double_quant:
            n_scale_blocks = -(n_blocks // -config.scale_block_size)
            # FP8 bit patterns kept as uint8, so model.half() or .to(dtype) leaves them alone
            codes = torch.zeros(n_blocks, dtype=torch.uint8, device=device)
            self.register_buffer("absmax_codes", codes)
            self.register_buffer("absmax_scale", torch.zeros(n_scale_blocks, device=device))
            self.register_buffer("absmax_mean", torch.zeros((), device=device))
        else:
            self.register_buffer("absmax", torch.zeros(n_blocks, device=device))
        self.n_blocks = n_blocks
        self.bias = (
            nn.Parameter(torch.zeros(out_features, dtype=dtype, device=device)) if bias else None
        )

    @classmethod
    def from_linear(cls, linear: nn.Linear, config: NF4Config | None = None) -> NF4Linear:
        """Quantize ``linear``'s weight (its bias is copied as it is)."""
        w = linear.weight
        layer = cls(
            linear.in_features,
            linear.out_features,
            linear.bias is not None,
            config,
            w.dtype,
            w.device,
        )
        packed, absmax = quantize_nf4(w, layer.config.block_size)
        with torch.no_grad():
            layer.packed.copy_(packed)
            if layer.config.double_quant:
                codes, scale, mean = quantize_scales(absmax, layer.config.scale_block_size)
                layer.absmax_codes.copy_(codes.view(torch.uint8))
                layer.absmax_scale.copy_(scale)
                layer.absmax_mean.copy_(mean)
            else:
                layer.absmax.copy_(absmax)
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
                layer.bias.requires_grad_(linear.bias.requires_grad)
        return layer

    def scales(self) -> torch.Tensor:
        """Each block's absmax, fp32 (read back from 8 bits under double quantization)."""
        if self.config.double_quant:
            codes = self.absmax_codes.view(FP8)
            return dequantize_scales(
                codes, self.absmax_scale, self.absmax_mean, self.config.scale_block_size
            )
        return self.absmax

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The dense weight ``[out, in]`` the codes stand for."""
        n = self.in_features * self.out_features
        flat = dequantize_nf4(
            self.packed, self.scales(), n, self.config.block_size, dtype or self.dtype
        )
        return flat.view(self.out_features, self.in_features)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight (a new tensor each time; the codes are the state)."""
        return self.dequantize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _DequantMatmul.apply(x, self)
        return y if self.bias is None else y + self.bias

    def weight_nbytes(self) -> int:
        """Bytes that hold the weight: the codes and the scales (not the bias)."""
        return sum(b.numel() * b.element_size() for b in self.buffers())

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, block_size={c.block_size}, "
            f"double_quant={c.double_quant}"
        )


# -- whole models ------------------------------------------------------------------------------


def quantize_model(
    model: nn.Module, config: NF4Config | None = None, skip: tuple[str, ...] = ("lm_head",)
) -> list[str]:
    """Replace every ``nn.Linear`` of ``model`` (in place) by an ``NF4Linear``; return
    the names replaced. Modules named ``skip`` (or ending in ``.skip``) stay dense: by
    default ``lm_head``, which GPT ties to the embedding table (embeddings, norms and
    biases are never quantized, as in QLoRA). Quantize before ``apply_lora``.
    """
    config = config or NF4Config()
    names = []
    for name, module in list(model.named_modules()):
        if name.endswith(("lora_A", "lora_B")):
            raise ValueError(
                "this model already carries LoRA adapters; quantize the base first, "
                "then apply_lora (as QLoRA does)"
            )
        if type(module) is nn.Linear and not any(name == s or name.endswith("." + s) for s in skip):
            names.append(name)
    for name in names:
        dense = model.get_submodule(name)
        model.set_submodule(name, NF4Linear.from_linear(dense, config).train(dense.training))
    return names


def dequantize_model(model: nn.Module) -> nn.Module:
    """Replace every ``NF4Linear`` (in place) by a dense ``nn.Linear`` of its weight."""
    for name, module in list(model.named_modules()):
        if isinstance(module, NF4Linear):
            dense = dense_linear(module.dequantize(), module.bias).train(module.training)
            model.set_submodule(name, dense)
    return model


def dense_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """A plain ``nn.Linear`` holding copies of ``weight [out, in]`` and ``bias``."""
    out_features, in_features = weight.shape
    linear = nn.Linear(
        in_features, out_features, bias is not None, device=weight.device, dtype=weight.dtype
    )
    with torch.no_grad():
        linear.weight.copy_(weight)
        if bias is not None:
            linear.bias.copy_(bias)
    return linear


def save_quantized(model, directory: str | Path, config: NF4Config | None = None) -> Path:
    """Write a quantized model: ``config.json``, ``model.safetensors`` (codes and scales)
    and ``quantization.json`` (which layers are NF4, and how). ``load_quantized`` reads it."""
    from dataclasses import asdict

    layers = {n: m for n, m in model.named_modules() if isinstance(m, NF4Linear)}
    if not layers:
        raise ValueError("the model has no NF4 layers; quantize_model it first")
    directory = model.save(directory)
    meta = {n: asdict(m.config) for n, m in layers.items()}
    (directory / QUANT_FILE).write_text(json.dumps({"nf4": meta}, indent=2) + "\n")
    return directory


def load_quantized(directory: str | Path, device: str | torch.device = "cpu"):
    """Read back a model written by ``save_quantized``, in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    from scratchllm.models.base import WEIGHTS_FILE, read_config

    directory = Path(directory)
    cls, model_config = read_config(directory)
    path = directory / QUANT_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: missing (is {directory} a quantized model? "
            "a plain one loads with scratchllm.models.load)"
        )
    try:
        layers = json.loads(path.read_text(encoding="utf-8"))["nf4"]
        configs = {name: NF4Config(**fields) for name, fields in layers.items()}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: not a quantization description ({e})") from None
    model = cls(model_config)
    for name, config in configs.items():
        try:
            dense = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"{path}: names {name!r}, which the model does not have") from None
        empty = NF4Linear(dense.in_features, dense.out_features, dense.bias is not None, config)
        model.set_submodule(name, empty)
    try:
        load_model(model, str(directory / WEIGHTS_FILE), strict=True, device=str(device))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise ValueError(
            f"{directory / WEIGHTS_FILE}: cannot read quantized weights ({e})"
        ) from None
    return model.to(device).eval()
