"""LoRA: fine-tune a frozen model through a low-rank update of chosen Linear layers.

Hu et al. (2021) observe that the change fine-tuning makes to a weight matrix has low
"intrinsic rank". So instead of training ``W [out, in]`` they freeze it and learn the
change as a product of two thin matrices::

    h = W x + (alpha / r) * B (A dropout(x))      A: [r, in], B: [out, r], r << min(in, out)

``A`` starts Kaiming-uniform (as ``nn.Linear`` does) and ``B`` at zero, so training
starts from the base model exactly. ``alpha / r`` keeps the update's size from changing
with the rank; rsLoRA (Kalajdzievski, 2023) uses ``alpha / sqrt(r)``, which keeps the
learning dynamics stable as ``r`` grows. Only ``A`` and ``B`` train: a 6 x 384 GPT with
``r = 8`` on every block's Linear layers trains 2.7 % of its parameters.

After training, ``W + (alpha / r) B A`` is an ordinary matrix: ``merge_and_unload``
folds it in and gives back a plain model with no extra cost at inference time.

This follows peft's ``LoraConfig`` / ``lora.Linear`` to the letter, so the two agree to
the last bit (``tests/models/test_lora_peft.py``): the same forward
(``base(x) + lora_B(lora_A(dropout(x))) * scaling``), the same targets (module-name
suffixes), the same initialisation, and adapters saved in peft's layout::

    adapter/
      adapter_config.json          peft's fields: r, lora_alpha, target_modules, ...
      adapter_model.safetensors    base_model.model.transformer.h.0.attn.c_attn.lora_A.weight ...

so ``peft.PeftModel.from_pretrained`` loads our adapters onto our GPT or onto Hugging
Face's GPT-2 (an exported one), and ``load_adapter`` loads peft's.

>>> import torch
>>> from scratchllm.models import GPT, GPTConfig
>>> model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50))
>>> model = apply_lora(model, LoRAConfig(r=4, alpha=8, targets=("c_attn", "c_fc")))
>>> model.num_parameters()          # 2 layers x (c_attn: 4*32 + 96*4, c_fc: 4*32 + 128*4)
2304
>>> type(model.transformer.h[0].attn.c_attn).__name__
'LoRALinear'
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from scratchllm.configs.lora import GPT_TARGETS, LoRAConfig, NF4Config
from scratchllm.models.nf4 import NF4Linear, dense_linear, dequantize_model, quantize_model

__all__ = [
    "ADAPTER_CONFIG_FILE",
    "ADAPTER_WEIGHTS_FILE",
    "GPT_TARGETS",
    "LoRAConfig",
    "LoRALinear",
    "NF4Config",
    "apply_lora",
    "base_storage",
    "load_adapter",
    "lora_layers",
    "lora_state_dict",
    "merge_adapters",
    "merge_and_unload",
    "read_adapter_config",
    "quantize_model",
    "save_adapter",
    "set_lora_state_dict",
    "unmerge_adapters",
]

ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."  # peft saves keys as seen from its wrapper


class LoRALinear(nn.Module):
    """A frozen ``base_layer`` (``nn.Linear`` or ``NF4Linear``) plus ``scaling * B A``.

    ``forward(x [..., in]) -> [..., out]``. ``weight`` is the matrix the layer applies,
    ``W + scaling * B A`` (computed; the parameters are ``base_layer.weight``,
    ``lora_A.weight`` and ``lora_B.weight``). ``merge()`` folds the update into the base
    weight, ``unmerge()`` restores the base weight bit for bit.
    """

    def __init__(self, base_layer: nn.Linear | NF4Linear, config: LoRAConfig) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.r, self.scaling = config.r, config.scaling
        w = base_layer.packed if isinstance(base_layer, NF4Linear) else base_layer.weight
        dtype = base_layer.dtype if isinstance(base_layer, NF4Linear) else w.dtype
        like = dict(device=w.device, dtype=dtype)
        self.lora_dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.lora_A = nn.Linear(self.in_features, config.r, bias=False, **like)
        self.lora_B = nn.Linear(config.r, self.out_features, bias=False, **like)
        self.merged = False
        self._unmerged_weight: torch.Tensor | None = None  # the base weight while merged
        self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        """A as ``nn.Linear`` initialises (Kaiming-uniform, a = sqrt(5)), B = 0: the
        update starts at exactly zero."""
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)  # (..., out)
        if self.merged:  # the update is inside the base weight already
            return y
        return y + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        """``scaling * B A``: ``[out, r] @ [r, in] -> [out, in]``."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    @property
    def weight(self) -> torch.Tensor:
        w = self.base_layer.weight
        return w if self.merged else w + self.delta_weight()

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    @torch.no_grad()
    def merge(self) -> None:
        """Fold ``scaling * B A`` into the base weight (kept aside for ``unmerge``)."""
        if self.merged:
            return
        if isinstance(self.base_layer, NF4Linear):
            raise ValueError(
                "cannot merge into a 4-bit base in place (it would be requantized); "
                "merge_and_unload(model) gives a dense model with the update folded in"
            )
        w = self.base_layer.weight
        self._unmerged_weight = w.detach().clone()
        w.add_(self.delta_weight())
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Put the base weight back as it was before ``merge`` (bit for bit)."""
        if not self.merged:
            return
        self.base_layer.weight.copy_(self._unmerged_weight)
        self._unmerged_weight = None
        self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, scaling={self.scaling:g}, merged={self.merged}"


# -- applying to a model ------------------------------------------------------------------------


def _matches(name: str, target: str) -> bool:
    """peft's rule: a target names a module by its full name or a dotted suffix of it."""
    return name == target or name.endswith("." + target)


def _linear_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear | NF4Linear)]


def _resolve_targets(model: nn.Module, targets: tuple[str, ...]) -> list[str]:
    """The names of the modules ``targets`` select, checked (see ``apply_lora``)."""
    modules = dict(model.named_modules())
    linears = _linear_names(model)
    if any(isinstance(m, LoRALinear) for m in modules.values()):
        raise ValueError("the model already carries LoRA adapters; merge_and_unload it first")
    valid = sorted({n.rpartition(".")[2] for n in linears})
    chosen: list[str] = []
    for target in targets:
        hits = [n for n in modules if n and _matches(n, target)]
        if not hits:
            raise ValueError(
                f"unknown LoRA target {target!r}: no module's name ends with it; "
                f"this model's Linear layers are {valid}"
            )
        for name in hits:
            module = modules[name]
            if not isinstance(module, nn.Linear | NF4Linear):
                raise ValueError(
                    f"LoRA target {target!r} selects {name}, a {type(module).__name__}, "
                    f"not a Linear layer; this model's Linear layers are {valid}"
                )
            if name not in chosen:
                chosen.append(name)
    tied = {id(p) for m in modules.values() if isinstance(m, nn.Embedding) for p in m.parameters()}
    for name in chosen:
        weight = getattr(modules[name], "weight", None)
        if isinstance(modules[name], nn.Linear) and id(weight) in tied:
            raise ValueError(
                f"LoRA target {name} shares its matrix with an embedding (tied weights): "
                "merging would change the embedding too; leave it out of the targets"
            )
    return chosen


def apply_lora(model: nn.Module, config: LoRAConfig) -> nn.Module:
    """Freeze every parameter of ``model`` and wrap each targeted Linear in a
    ``LoRALinear`` (in place); returns the model, whose only trainable parameters are
    now the adapters'. Works on any module whose targets are ``nn.Linear`` or
    ``NF4Linear`` (every GPT variant, MoE experts included; the MLP and RNN language
    models' Linear layers).

    A target is a module-name suffix, as peft's ``target_modules``: ``c_proj`` selects
    both ``attn.c_proj`` and ``mlp.c_proj`` of every block, ``attn.c_proj`` only the
    first. A target that selects nothing, or something that is not a Linear, is an
    error listing the valid names; so is a Linear tied to an embedding (GPT's
    ``lm_head`` with ``tie_weights``).
    """
    names = _resolve_targets(model, config.targets)
    for p in model.parameters():
        p.requires_grad_(False)
    for name in names:
        base = model.get_submodule(name)
        model.set_submodule(name, LoRALinear(base, config).train(base.training))
    model.lora_config = config  # what save_adapter writes
    return model


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The model's ``LoRALinear`` modules by name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def _lora_config(model: nn.Module) -> LoRAConfig:
    config = getattr(model, "lora_config", None)
    if config is None or not lora_layers(model):
        raise ValueError("the model carries no LoRA adapters (apply_lora or load_adapter first)")
    return config


def merge_adapters(model: nn.Module) -> nn.Module:
    """Fold every adapter into its base weight, keeping the adapters (``unmerge_adapters``
    undoes it exactly)."""
    for layer in lora_layers(model).values():
        layer.merge()
    return model


def unmerge_adapters(model: nn.Module) -> nn.Module:
    """Undo ``merge_adapters``: every base weight back bit for bit."""
    for layer in lora_layers(model).values():
        layer.unmerge()
    return model


@torch.no_grad()
def merge_and_unload(model: nn.Module) -> nn.Module:
    """Replace each ``LoRALinear`` by a plain ``nn.Linear`` holding ``W + scaling * B A``
    (a 4-bit base is dequantized first, and every other NF4 layer too) and make every
    parameter trainable again: the plain model ``scratchllm.models.load`` would give.
    ``merge_and_unload(model).save(dir)`` writes a checkpoint any command reads.
    """
    _lora_config(model)
    for name, layer in lora_layers(model).items():
        layer.unmerge()
        weight = layer.base_layer.weight + layer.delta_weight()
        model.set_submodule(name, dense_linear(weight, layer.base_layer.bias).train(layer.training))
    dequantize_model(model)
    for p in model.parameters():
        p.requires_grad_(True)
    del model.lora_config
    return model


def base_storage(model: nn.Module) -> tuple[int, int]:
    """``(bytes, parameters)`` of the frozen base: everything the model stores but the
    adapters, each shared tensor once, an NF4 weight counted as its ``out * in``
    parameters at its stored size (codes and scales). Bytes / parameters is the figure
    QLoRA quotes: 4 for fp32, about 0.56 for NF4, 0.52 with double quantization."""
    skip = {id(p) for m in lora_layers(model).values() for p in (m.lora_A.weight, m.lora_B.weight)}
    n_bytes = n_params = 0
    for m in model.modules():
        if isinstance(m, NF4Linear):
            n_params += m.in_features * m.out_features
            n_bytes += m.weight_nbytes()
            skip.update(id(b) for b in m.buffers())
    for t in model.state_dict(keep_vars=True).values():
        if id(t) in skip:
            continue
        skip.add(id(t))
        n_params += t.numel()
        n_bytes += t.numel() * t.element_size()
    return n_bytes, n_params


# -- saving and loading adapters (peft's layout) ------------------------------------------------


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' tensors under peft's key names,
    ``base_model.model.<module>.lora_A.weight`` and ``...lora_B.weight``."""
    out = {}
    for name, layer in lora_layers(model).items():
        out[f"{PEFT_PREFIX}{name}.lora_A.weight"] = layer.lora_A.weight.detach()
        out[f"{PEFT_PREFIX}{name}.lora_B.weight"] = layer.lora_B.weight.detach()
    return out


def _check_adapter(
    expected: dict[str, tuple[int, ...]], tensors: dict[str, torch.Tensor], source: str
) -> None:
    """Every adapter key present with the shape its base layer needs, and nothing else."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{source} does not fit this model: missing {missing[:4]}, unexpected "
            f"{unexpected[:4]} (was it made for another model or other targets?)"
        )
    for key, shape in expected.items():
        if tuple(tensors[key].shape) != shape:
            raise ValueError(
                f"{source}: {key} has shape {tuple(tensors[key].shape)} but this base needs "
                f"{shape}: the adapter was made for a base of another size"
            )


@torch.no_grad()
def set_lora_state_dict(
    model: nn.Module, tensors: dict[str, torch.Tensor], source: str = "adapter"
) -> nn.Module:
    """Copy adapter tensors (peft's key names) into ``model``'s adapters, checking that
    every adapter gets one of the right shape and that nothing is left over."""
    own = lora_state_dict(model)
    _check_adapter({k: tuple(v.shape) for k, v in own.items()}, tensors, source)
    for key, mine in own.items():
        mine.copy_(tensors[key])
    return model


def save_adapter(model: nn.Module, directory: str | Path) -> Path:
    """Write the adapters alone, as peft does: ``adapter_config.json`` and
    ``adapter_model.safetensors`` in ``directory``."""
    from safetensors.torch import save_file

    config = _lora_config(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in lora_state_dict(model).items()}
    tmp = directory / (ADAPTER_WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.replace(directory / ADAPTER_WEIGHTS_FILE)
    tmp = directory / (ADAPTER_CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(config.to_peft(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(directory / ADAPTER_CONFIG_FILE)
    return directory


def read_adapter_config(directory: str | Path) -> LoRAConfig:
    """The ``LoRAConfig`` of an adapter directory (ours or peft's)."""
    path = Path(directory) / ADAPTER_CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (is {directory} a LoRA adapter directory?)")
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    if not isinstance(fields, dict):
        raise ValueError(f"{path}: not an adapter config (a JSON object is expected)")
    try:
        return LoRAConfig.from_peft(fields)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def load_adapter(model: nn.Module, directory: str | Path) -> nn.Module:
    """Apply the adapter saved in ``directory`` (by ``save_adapter`` or peft's
    ``save_pretrained``) to its base ``model``, in place; returns the model. A base of
    another shape, or without the adapter's target layers, is a clear error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config = read_adapter_config(directory)
    path = Path(directory) / ADAPTER_WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing adapter weights")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: cannot read adapter weights ({e})") from None
    # Check everything before touching the model, so a bad adapter leaves it as it was.
    try:
        names = _resolve_targets(model, config.targets)
    except ValueError as e:
        raise ValueError(f"{directory}: {e}") from None
    expected = {}
    for name in names:
        layer = model.get_submodule(name)
        expected[f"{PEFT_PREFIX}{name}.lora_A.weight"] = (config.r, layer.in_features)
        expected[f"{PEFT_PREFIX}{name}.lora_B.weight"] = (layer.out_features, config.r)
    _check_adapter(expected, tensors, str(path))
    return set_lora_state_dict(apply_lora(model, config), tensors, str(path))
