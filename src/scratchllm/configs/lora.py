"""LoRA's and NF4's configuration dataclasses, with no torch import.

``LoRAConfig`` says which layers get a low-rank update and how it is scaled; it round-trips
through JSON and maps one to one onto peft's ``adapter_config.json`` (``to_peft`` /
``from_peft``). ``NF4Config`` says how the frozen base of QLoRA is held in 4 bits.
``scratchllm.models.lora`` and ``scratchllm.models.nf4`` apply them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# Every Linear of a GPT block: the QLoRA paper finds adapters on all of them are needed to
# match full fine-tuning (peft's own default for GPT-2 is c_attn alone).
GPT_TARGETS = ("c_attn", "c_proj", "c_fc")

# adapter_config.json fields whose non-default value asks for something we do not build.
_PEFT_UNSUPPORTED = {
    "use_dora": False,
    "lora_bias": False,
    "bias": "none",
    "modules_to_save": None,
    "layers_to_transform": None,
    "exclude_modules": None,
    "rank_pattern": {},
    "alpha_pattern": {},
    "trainable_token_indices": None,
    "target_parameters": None,
    "layer_replication": None,
    "alora_invocation_tokens": None,
    "use_qalora": False,
}


@dataclass
class LoRAConfig:
    """A low-rank update ``W x + (alpha / r) B A x`` on every targeted Linear.

    >>> c = LoRAConfig(r=4, alpha=8, targets="c_attn,c_fc")
    >>> c.targets, c.scaling
    (('c_attn', 'c_fc'), 2.0)
    >>> LoRAConfig.from_peft(c.to_peft()) == c
    True
    """

    r: int = 8  # rank of the update B @ A (A: r x in, B: out x r)
    alpha: float = 16.0  # the update is scaled by alpha / r (alpha / sqrt(r) with rslora)
    dropout: float = 0.0  # dropout on the adapter's input, training only (peft's lora_dropout)
    targets: tuple[str, ...] = GPT_TARGETS  # module-name suffixes, as peft's target_modules
    rslora: bool = False  # rank-stabilised scaling alpha / sqrt(r) (Kalajdzievski, 2023)

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):  # "c_attn,c_fc", as the CLI passes it
            self.targets = tuple(t.strip() for t in self.targets.split(",") if t.strip())
        self.targets = tuple(self.targets)
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r < 1:
            raise ValueError(f"LoRA rank r ({self.r!r}) must be a positive integer")
        if not (isinstance(self.alpha, int | float) and math.isfinite(self.alpha)) or (
            self.alpha <= 0
        ):
            raise ValueError(f"LoRA alpha ({self.alpha!r}) must be a positive number")
        if not 0.0 <= self.dropout < 1.0:  # also rejects NaN
            raise ValueError(f"LoRA dropout ({self.dropout!r}) must be in [0, 1)")
        if not self.targets or not all(isinstance(t, str) and t for t in self.targets):
            raise ValueError(
                f"LoRA targets ({self.targets!r}) must name at least one module, "
                f"e.g. {','.join(GPT_TARGETS)}"
            )

    @property
    def scaling(self) -> float:
        """The factor on ``B A``: ``alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA."""
        return self.alpha / (math.sqrt(self.r) if self.rslora else self.r)

    def to_peft(self) -> dict[str, Any]:
        """The fields of peft's ``adapter_config.json`` for this adapter.

        ``fan_in_fan_out`` is False because our layers are ``nn.Linear`` (weight
        ``[out, in]``); peft sets it to True by itself when it loads the adapter onto
        Hugging Face's GPT-2, whose ``Conv1D`` stores ``[in, out]`` (A and B keep their
        shapes either way).
        """
        return {
            "peft_type": "LORA",
            "task_type": None,
            "base_model_name_or_path": None,
            "r": self.r,
            "lora_alpha": self.alpha,
            "lora_dropout": self.dropout,
            "target_modules": list(self.targets),
            "use_rslora": self.rslora,
            "fan_in_fan_out": False,
            "init_lora_weights": True,
            "inference_mode": True,
            **_PEFT_UNSUPPORTED,
        }

    @classmethod
    def from_peft(cls, fields: dict[str, Any]) -> LoRAConfig:
        """Read peft's ``adapter_config.json`` fields; refuse the options we do not build."""
        if fields.get("peft_type", "LORA") != "LORA":
            raise ValueError(f"not a LoRA adapter (peft_type {fields.get('peft_type')!r})")
        for name, default in _PEFT_UNSUPPORTED.items():
            if fields.get(name, default) not in (default, None, {}, [], False):
                raise ValueError(
                    f"adapter option {name}={fields[name]!r} is not supported here "
                    f"(only plain LoRA on Linear layers: leave {name} at {default!r})"
                )
        targets = fields.get("target_modules")
        if isinstance(targets, str):
            raise ValueError(
                f"target_modules {targets!r} is a regular expression; list the module "
                "names instead (e.g. ['c_attn', 'c_fc'])"
            )
        try:
            return cls(
                r=fields["r"],
                alpha=fields["lora_alpha"],
                dropout=fields.get("lora_dropout", 0.0),
                targets=tuple(targets or ()),
                rslora=bool(fields.get("use_rslora", False)),
            )
        except KeyError as e:
            raise ValueError(f"adapter config lacks the field {e.args[0]!r}") from None


@dataclass
class NF4Config:
    """How QLoRA's frozen base is stored: 4-bit NormalFloat codes in blocks with scales.

    Each block of ``block_size`` weights keeps one absmax scale (fp32: 4 bytes per 64
    weights, 0.5 bit each). ``double_quant`` stores those scales in 8-bit floats in blocks
    of ``scale_block_size`` (one fp32 scale each, and one mean per tensor), as the QLoRA
    paper does: 0.127 bit of overhead per weight instead of 0.5.
    """

    block_size: int = 64  # weights sharing one absmax scale (the paper's 64)
    double_quant: bool = False  # quantize the scales too (FP8, blocks of scale_block_size)
    scale_block_size: int = 256  # scales sharing one second-level scale (the paper's 256)

    def __post_init__(self) -> None:
        b = self.block_size
        if not isinstance(b, int) or isinstance(b, bool) or b < 2 or b % 2:
            # two 4-bit codes share a byte, so a block must hold an even number of them
            raise ValueError(f"block_size ({b!r}) must be an even integer >= 2")
        s = self.scale_block_size
        if not isinstance(s, int) or isinstance(s, bool) or s < 1:
            raise ValueError(f"scale_block_size ({s!r}) must be a positive integer")
