"""The model families' configuration dataclasses, with no torch import.

Each model family (``scratchllm.models``) is built from one of these; a checkpoint's
``config.json`` holds one as JSON. They live apart from the modules so that anything that
only needs to read, check or show a configuration (the CLI's ``--help``, the NumPy GPT,
a config file) does so without importing PyTorch, as litgpt's ``config.py`` does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# The names each choice may take; the modules map them to their implementations.
POSITIONS = ("learned", "sinusoidal", "rope")
NORMS = ("layernorm", "rmsnorm")
ACTIVATIONS = ("gelu", "gelu_tanh", "relu")  # GPT's feed-forward activations
FFNS = ("mlp", "moe")
MLP_ACTIVATIONS = ("tanh", "relu")  # the neural n-gram's hidden activation
CELLS = ("rnn", "gru", "lstm")


@dataclass
class GPTConfig:
    block_size: int = 256  # the longest context the model sees (positions 0..block_size-1)
    vocab_size: int = 65  # tokens the model reads and predicts
    n_layer: int = 6  # transformer blocks
    n_head: int = 6  # attention heads per block; n_embd must split evenly among them
    n_embd: int = 384  # width of the residual stream
    ffn_hidden: int | None = None  # MLP width; None means 4 * n_embd (GPT-2's n_inner)
    dropout: float = 0.0  # on embeddings, attention weights and residual branches (training)
    bias: bool = True  # biases in Linear layers and LayerNorms (GPT-2: True)
    pos: str = "learned"  # "learned" (GPT-2), "sinusoidal" (fixed) or "rope" (rotary)
    rope_base: float = 10000.0  # rope only: the slowest rotation is base^-1 per position
    norm: str = "layernorm"  # "layernorm" (GPT-2) or "rmsnorm"
    layer_norm_epsilon: float = 1e-5  # added to the variance in every norm
    act: str = "gelu"  # "gelu" (exact), "gelu_tanh" (GPT-2's approximation) or "relu"
    ffn: str = "mlp"  # "mlp" (dense) or "moe" (mixture of experts)
    n_expert: int = 4  # moe only: experts per block
    moe_top_k: int = 1  # moe only: experts each token is routed to (1 = Switch)
    moe_aux_loss_coef: float = 0.01  # moe only: weight of the load-balancing loss
    tie_weights: bool = True  # lm_head shares its matrix with wte (GPT-2: True)

    def __post_init__(self) -> None:
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} ({getattr(self, name)!r}) must be a positive integer")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.ffn_hidden is not None and self.ffn_hidden < 1:
            raise ValueError(
                f"ffn_hidden ({self.ffn_hidden}) must be positive, or None for 4*n_embd"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout ({self.dropout}) must be in [0, 1)")
        for name, choices in (
            ("pos", POSITIONS),
            ("norm", NORMS),
            ("act", ACTIVATIONS),
            ("ffn", FFNS),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"unknown {name} {getattr(self, name)!r}; choose one of {list(choices)}"
                )
        if self.pos == "rope" and self.head_dim % 2:
            raise ValueError(
                f"rope needs an even head size, but n_embd ({self.n_embd}) / n_head "
                f"({self.n_head}) = {self.head_dim}"
            )
        if self.rope_base <= 0:
            raise ValueError(f"rope_base ({self.rope_base}) must be positive")
        if self.layer_norm_epsilon <= 0:
            raise ValueError(f"layer_norm_epsilon ({self.layer_norm_epsilon}) must be positive")
        if self.ffn == "moe":
            if self.n_expert < 1:
                raise ValueError(f"n_expert ({self.n_expert}) must be at least 1")
            if not 1 <= self.moe_top_k <= self.n_expert:
                raise ValueError(
                    f"moe_top_k ({self.moe_top_k}) must be between 1 and n_expert ({self.n_expert})"
                )
            if self.moe_aux_loss_coef < 0:
                raise ValueError(f"moe_aux_loss_coef ({self.moe_aux_loss_coef}) must be >= 0")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


@dataclass
class MLPConfig:
    n: int = 4  # tokens per n-gram: the model sees the n - 1 tokens before the one it predicts
    vocab_size: int = 65  # tokens the model reads and predicts
    n_embd: int = 32  # embedding width of one token
    n_hidden: int = 256  # width of the hidden layer
    act: str = "tanh"  # hidden activation: "tanh" (Bengio 2003) or "relu"
    dropout: float = 0.0  # on the concatenated embeddings and the hidden layer (training)
    direct: bool = False  # add Bengio's direct connections from embeddings to logits

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 2:
            raise ValueError(
                f"n ({self.n!r}) must be an integer >= 2 (2 = bigram: one token of context); "
                "a unigram has no context to embed, use NGram(n=1)"
            )
        for name in ("vocab_size", "n_embd", "n_hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} ({value!r}) must be a positive integer")
        if self.act not in MLP_ACTIVATIONS:
            raise ValueError(f"unknown act {self.act!r}; choose one of {list(MLP_ACTIVATIONS)}")
        if not 0.0 <= self.dropout < 1.0:  # also rejects NaN
            raise ValueError(f"dropout ({self.dropout!r}) must be in [0, 1)")


@dataclass
class RNNConfig:
    cell: str = "lstm"  # "rnn" (vanilla tanh), "gru" or "lstm"
    vocab_size: int = 65  # tokens the model reads and predicts
    block_size: int = 128  # the training window; reported as context_length (module doc)
    n_layer: int = 2  # recurrent layers stacked
    n_embd: int = 64  # token embedding width (the first layer's input)
    n_hidden: int = 256  # hidden state width of every layer
    dropout: float = 0.0  # on embeddings, between layers and before the head (training)
    bias: bool = True  # the b_ih / b_hh biases of every layer (torch's bias=)
    fast: bool = False  # run forward through torch's RNN kernels (same weights, same numbers)

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; choose one of {list(CELLS)}")
        for name in ("vocab_size", "block_size", "n_layer", "n_embd", "n_hidden"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} ({value!r}) must be a positive integer")
        if not 0.0 <= self.dropout < 1.0:  # also rejects NaN
            raise ValueError(f"dropout ({self.dropout!r}) must be in [0, 1)")


@dataclass
class NGramConfig:
    n: int = 3  # tokens per n-gram: 1 = unigram, 2 = bigram, 3 = trigram, ...
    vocab_size: int = 256  # number of token ids, V
    smoothing: float = 1.0  # add-k: pseudo-count added to every (context, token) pair

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"n ({self.n!r}) must be an integer >= 1 (2 = bigram, 3 = trigram)")
        if not isinstance(self.vocab_size, int) or self.vocab_size < 1:
            raise ValueError(f"vocab_size ({self.vocab_size!r}) must be an integer >= 1")
        if not self.smoothing >= 0:  # also rejects NaN
            raise ValueError(
                f"smoothing ({self.smoothing!r}) must be >= 0 (add-k: 1 = Laplace, 0 = none)"
            )


# family name (as in config.json) -> its config dataclass
CONFIGS: dict[str, type] = {
    "gpt": GPTConfig,
    "mlp": MLPConfig,
    "rnn": RNNConfig,
    "ngram": NGramConfig,
}

# The names a person may give a model by: a family, or a cell of the rnn family ("gru" is
# the rnn family with cell="gru": one module serves the three cells).
MODEL_NAMES = ("gpt", "mlp", *CELLS, "ngram")


def resolve_family(name: str) -> tuple[str, dict[str, Any]]:
    """``(family, the config values the name fixes)`` for a model name.

    >>> resolve_family("gpt"), resolve_family("gru")
    (('gpt', {}), ('rnn', {'cell': 'gru'}))
    """
    if name in CONFIGS and name != "rnn":
        return name, {}
    if name in CELLS:
        return "rnn", {"cell": name}
    raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}")


def config_class(name: str) -> type:
    """The config dataclass of a model name (``"lstm"`` -> ``RNNConfig``)."""
    return CONFIGS[resolve_family(name)[0]]


def config_defaults(name: str) -> dict[str, Any]:
    """Every field of the name's config that a person may set -> its default. The fields
    the name fixes (an rnn cell) and ``vocab_size`` (the tokenizer decides it) are left out.

    >>> config_defaults("mlp")["n_hidden"], "cell" in config_defaults("lstm")
    (256, False)
    """
    fixed = {"vocab_size", *resolve_family(name)[1]}
    fields = dataclasses.fields(config_class(name))
    return {f.name: f.default for f in fields if f.name not in fixed}


def make_config(name: str, **values: Any) -> Any:
    """The config of a model name from ``values`` (the name's fixed values added).

    A field the family does not have is a ``ValueError`` naming the family's fields.

    >>> make_config("gru", vocab_size=5, n_hidden=8).cell
    'gru'
    """
    family, fixed = resolve_family(name)
    cls = CONFIGS[family]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        settable = sorted(config_defaults(name)) + ["vocab_size"]
        raise ValueError(
            f"{name} has no setting {', '.join(map(repr, unknown))}; its settings are: "
            f"{', '.join(sorted(settable))}"
        )
    return cls(**{**values, **fixed})
