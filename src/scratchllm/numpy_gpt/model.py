"""The GPT, in NumPy: the pieces of this package wired together, forward and backward.

::

    idx [B, T] ─ wte ─(+ wpe | + sinusoids)─ dropout ─ n_layer x block ─ ln_f ─ lm_head
                                                                             └─ logits [B, T, V]

The parameters live in one dict named exactly as the PyTorch GPT's ``named_parameters``
(``transformer.wte.weight``, ``transformer.h.0.attn.c_attn.weight``, ...; PyTorch's
``[out, in]`` weight layout), so a checkpoint moves between the engines as it is and a
test can compare every gradient by name. With tied weights ``lm_head`` *is*
``transformer.wte.weight`` and its gradient is the sum of both uses.

>>> from scratchllm.configs import GPTConfig
>>> model = NumpyGPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=11))
>>> idx = np.zeros((1, 5), dtype=np.int64)
>>> logits, loss, grads = model.forward_backward(idx, idx)
>>> logits.shape, grads["transformer.wte.weight"].shape
((1, 5, 11), (11, 16))
>>> bool(loss < np.log(11))  # the tied table already favours the repeated token
True
"""

from __future__ import annotations

import math

import numpy as np

from scratchllm.configs import GPTConfig
from scratchllm.numpy_gpt.block import block, block_backward, cached_block, sub
from scratchllm.numpy_gpt.dropout import dropout, dropout_backward
from scratchllm.numpy_gpt.embedding import scatter_add_rows
from scratchllm.numpy_gpt.kv_cache import KVCache
from scratchllm.numpy_gpt.masks import attention_bias, look_ahead_mask, padding_mask
from scratchllm.numpy_gpt.output import cross_entropy, output_layer, output_layer_backward
from scratchllm.numpy_gpt.positions import sinusoidal_positions

SUPPORTED = {"pos": ("learned", "sinusoidal"), "norm": ("layernorm",), "ffn": ("mlp",)}
DTYPES = ("float32", "float64")


def check_supported(config: GPTConfig) -> None:
    """Raise a ValueError naming the first option the NumPy GPT does not implement."""
    for name, choices in SUPPORTED.items():
        value = getattr(config, name)
        if value not in choices:
            raise ValueError(
                f"the NumPy GPT does not implement {name}={value!r} (it has {name} "
                f"{' or '.join(map(repr, choices))}); use the PyTorch engine for this model"
            )


def parameter_names(config: GPTConfig) -> list[str]:
    """Every trainable parameter's name, in the PyTorch GPT's ``named_parameters`` order
    (which is also the order of its optimizer state)."""
    per_block = ["ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias"]
    per_block += ["attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias"]
    per_block += ["mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"]
    if not config.bias:
        per_block = [n for n in per_block if not n.endswith(".bias")]
    names = ["transformer.wte.weight"]
    names += [f"transformer.h.{i}.{n}" for i in range(config.n_layer) for n in per_block]
    names += ["transformer.ln_f.weight"] + (["transformer.ln_f.bias"] if config.bias else [])
    if config.pos == "learned":
        names.append("transformer.wpe.weight")
    if not config.tie_weights:
        names.append("lm_head.weight")
    return names


def parameter_shapes(config: GPTConfig) -> dict[str, tuple[int, ...]]:
    c = config
    C, V, hidden = c.n_embd, c.vocab_size, c.ffn_hidden or 4 * c.n_embd
    local = {
        "ln_1.weight": (C,), "ln_1.bias": (C,), "ln_2.weight": (C,), "ln_2.bias": (C,),
        "attn.c_attn.weight": (3 * C, C), "attn.c_attn.bias": (3 * C,),
        "attn.c_proj.weight": (C, C), "attn.c_proj.bias": (C,),
        "mlp.c_fc.weight": (hidden, C), "mlp.c_fc.bias": (hidden,),
        "mlp.c_proj.weight": (C, hidden), "mlp.c_proj.bias": (C,),
    }  # fmt: skip
    shapes = {}
    for name in parameter_names(c):
        if name.startswith("transformer.h."):
            shapes[name] = local[name.split(".", 3)[3]]
        elif name in ("transformer.wte.weight", "lm_head.weight"):
            shapes[name] = (V, C)
        elif name == "transformer.wpe.weight":
            shapes[name] = (c.block_size, C)
        else:  # ln_f
            shapes[name] = (C,)
    return shapes


def init_parameters(config: GPTConfig, seed: int = 0, dtype=np.float32) -> dict[str, np.ndarray]:
    """GPT-2's initialisation: weights ~ N(0, 0.02), biases 0, norm gains 1, and the two
    projections into the residual stream (``c_proj``) ~ N(0, 0.02 / sqrt(2 n_layer)) so
    the stream's variance does not grow with depth."""
    rng = np.random.default_rng(seed)
    residual_std = 0.02 / math.sqrt(2 * config.n_layer)
    params = {}
    for name, shape in parameter_shapes(config).items():
        if name.endswith(".bias"):
            p = np.zeros(shape)
        elif "ln_" in name:
            p = np.ones(shape)
        else:
            std = residual_std if name.endswith("c_proj.weight") else 0.02
            p = rng.normal(0.0, std, size=shape)
        params[name] = p.astype(dtype)
    return params


class NumpyGPT:
    """A GPT with NumPy arrays for parameters; see the module docstring.

    ``NumpyGPT(config, seed=0, dtype="float32")`` initialises fresh weights;
    ``NumpyGPT(config, params=...)`` takes given ones (named as ``parameter_names``).
    ``train()`` / ``eval()`` switch dropout on and off; ``rng`` draws its masks.
    """

    family = "gpt"

    def __init__(
        self,
        config: GPTConfig,
        params: dict[str, np.ndarray] | None = None,
        *,
        seed: int = 0,
        dtype: str | np.dtype = "float32",
    ) -> None:
        check_supported(config)
        self.config = config
        if params is None:
            if np.dtype(dtype).name not in DTYPES:
                raise ValueError(f"dtype {np.dtype(dtype).name!r} must be one of {DTYPES}")
            params = init_parameters(config, seed, np.dtype(dtype))
        self.params = _checked(config, params)
        self.dtype = self.params["transformer.wte.weight"].dtype
        self.training = False
        self.rng = np.random.default_rng(seed)  # dropout masks
        self._biases: dict[int, np.ndarray] = {}  # causal attention bias per length
        self._pos_table = (
            sinusoidal_positions(config.block_size, config.n_embd).astype(self.dtype)
            if config.pos == "sinusoidal"
            else None
        )
        self._refresh()

    def _refresh(self) -> None:
        """Rebuild the per-block views of ``params`` (after parameters were replaced)."""
        self._blocks = [sub(self.params, f"transformer.h.{i}.") for i in range(self.config.n_layer)]

    # -- the language-model shape ------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def context_length(self) -> int:
        return self.config.block_size

    @property
    def head_weight(self) -> np.ndarray:
        """``lm_head``'s matrix (``wte`` itself with tied weights)."""
        key = "transformer.wte.weight" if self.config.tie_weights else "lm_head.weight"
        return self.params[key]

    def num_parameters(self) -> int:
        return sum(p.size for p in self.params.values())

    def train(self, mode: bool = True) -> NumpyGPT:
        self.training = mode
        return self

    def eval(self) -> NumpyGPT:
        return self.train(False)

    def astype(self, dtype: str | np.dtype) -> NumpyGPT:
        """A copy with every parameter in ``dtype`` (``float32`` or ``float64``)."""
        if np.dtype(dtype).name not in DTYPES:
            raise ValueError(f"dtype {np.dtype(dtype).name!r} must be one of {DTYPES}")
        params = {k: v.astype(dtype) for k, v in self.params.items()}
        return NumpyGPT(self.config, params)

    def load_state(self, params: dict[str, np.ndarray]) -> None:
        """Copy ``params`` into this model's arrays, in place (views stay valid)."""
        for name, value in _checked(self.config, params).items():
            np.copyto(self.params[name], value)

    # -- forward and backward ------------------------------------------------------------------

    def __call__(
        self,
        idx: np.ndarray,
        targets: np.ndarray | None = None,
        loss_mask: np.ndarray | None = None,
        *,
        attention_mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, float | None]:
        """``(logits [B, T, V], mean loss or None)``, as the PyTorch GPT's ``forward``
        (``attention_mask [B, T]``, False = padding, on either side)."""
        idx, attention_mask, loss_mask = self._check_inputs(idx, targets, loss_mask, attention_mask)
        logits, _ = self._forward(idx, attention_mask, keep=False)
        if targets is None:
            return logits, None
        loss, _ = cross_entropy(logits, np.asarray(targets), loss_mask)
        return logits, loss

    def forward_backward(
        self,
        idx: np.ndarray,
        targets: np.ndarray,
        loss_mask: np.ndarray | None = None,
        *,
        attention_mask: np.ndarray | None = None,
        label_smoothing: float = 0.0,
    ) -> tuple[np.ndarray, float, dict[str, np.ndarray]]:
        """``(logits, loss, grads)``: one forward keeping what the backward needs, then the
        backward. ``grads`` maps every parameter name to ``dloss/dparam``."""
        if targets is None:
            raise ValueError("forward_backward needs targets: there is no loss to differentiate")
        idx, attention_mask, loss_mask = self._check_inputs(idx, targets, loss_mask, attention_mask)
        logits, caches = self._forward(idx, attention_mask, keep=True)
        loss, dlogits = cross_entropy(
            logits, np.asarray(targets), loss_mask, label_smoothing, grad=True
        )
        return logits, loss, self._backward(dlogits.astype(self.dtype, copy=False), caches)

    def _check_inputs(self, idx, targets, loss_mask, attention_mask):
        idx = np.asarray(idx)
        if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(
                f"idx must be [B, T] integer token ids, got shape {idx.shape} {idx.dtype}"
            )
        B, T = idx.shape
        if self.config.block_size < T:
            raise ValueError(
                f"sequence length {T} is longer than block_size ({self.config.block_size}); "
                f"crop the input to the last {self.config.block_size} tokens"
            )
        if idx.size and (idx.min() < 0 or idx.max() >= self.config.vocab_size):
            raise ValueError(
                f"token ids must be in [0, {self.config.vocab_size}); got {int(idx.min())}.."
                f"{int(idx.max())}"
            )
        if targets is not None and np.asarray(targets).shape != (B, T):
            raise ValueError(f"targets shape {np.asarray(targets).shape} must be (B, T) = {(B, T)}")
        if attention_mask is not None:
            attention_mask = np.asarray(attention_mask).astype(bool)
            if attention_mask.shape != (B, T):
                raise ValueError(
                    f"attention_mask shape {attention_mask.shape} must be (B, T) = {(B, T)}"
                )
            if loss_mask is not None:
                loss_mask = attention_mask & np.asarray(loss_mask, dtype=bool)
            else:
                loss_mask = attention_mask
        return idx, attention_mask, loss_mask

    def _causal_bias(self, T: int) -> np.ndarray:
        if T not in self._biases:
            self._biases[T] = attention_bias(look_ahead_mask(T), self.dtype)  # (T, T)
        return self._biases[T]

    def _position_rows(self, positions: slice | np.ndarray) -> np.ndarray | None:
        if self.config.pos == "learned":
            return self.params["transformer.wpe.weight"][positions]  # (T, C) or (B, T, C)
        return self._pos_table[positions]

    def _forward(self, idx: np.ndarray, attention_mask: np.ndarray | None, keep: bool):
        c = self.config
        B, T = idx.shape
        if attention_mask is None:
            positions: slice | np.ndarray = slice(0, T)
            bias = self._causal_bias(T)
        else:
            mask, positions = padding_mask(attention_mask)
            bias = attention_bias(mask, self.dtype)  # (B, 1, T, T)
        p_drop = c.dropout if self.training else 0.0
        x = self.params["transformer.wte.weight"][idx]  # (B, T, C), a new array
        x += self._position_rows(positions)
        keep_emb = None
        if p_drop > 0:
            x, keep_emb = dropout(x, p_drop, self.rng)
        caches = []
        for p in self._blocks:
            x, cache = block(x, p, c, bias, p_drop, self.rng)
            if keep:
                caches.append(cache)
        p = self.params
        logits, out_cache = output_layer(
            x, p["transformer.ln_f.weight"], p.get("transformer.ln_f.bias"),
            c.layer_norm_epsilon, self.head_weight,
        )  # fmt: skip
        return logits, (idx, positions, keep_emb, caches, out_cache)

    def _backward(self, dlogits: np.ndarray, caches) -> dict[str, np.ndarray]:
        c = self.config
        idx, positions, keep_emb, block_caches, out_cache = caches
        grads: dict[str, np.ndarray] = {}
        dx, grads["transformer.ln_f.weight"], d_ln_b, d_head = output_layer_backward(
            dlogits, out_cache
        )
        if d_ln_b is not None:
            grads["transformer.ln_f.bias"] = d_ln_b
        for i in reversed(range(c.n_layer)):
            dx, g = block_backward(dx, block_caches[i])
            grads.update({f"transformer.h.{i}.{k}": v for k, v in g.items()})
        if keep_emb is not None:
            dx = dropout_backward(dx, keep_emb)
        d_wte = scatter_add_rows(idx, dx, c.vocab_size)
        if c.tie_weights:
            d_wte += d_head  # the token table is read twice: at the input and as lm_head
        else:
            grads["lm_head.weight"] = d_head
        grads["transformer.wte.weight"] = d_wte
        if c.pos == "learned":
            if isinstance(positions, slice):  # every row at 0..T-1
                d_wpe = np.zeros_like(self.params["transformer.wpe.weight"])
                d_wpe[positions] = dx.sum(axis=0)
            else:
                d_wpe = scatter_add_rows(positions, dx, c.block_size)
            grads["transformer.wpe.weight"] = d_wpe
        return {name: grads[name] for name in self.params}  # named_parameters order

    # -- incremental decoding ------------------------------------------------------------------

    def new_state(self, batch_size: int, max_length: int) -> KVCache:
        """An empty KV cache for ``batch_size`` rows of up to ``max_length`` slots."""
        c = self.config
        return KVCache.allocate(c.n_layer, batch_size, c.n_head, max_length, c.head_dim, self.dtype)

    def forward_step(
        self, idx: np.ndarray, state: KVCache, pad_mask: np.ndarray | None = None
    ) -> np.ndarray:
        """Append ``idx [B, T_new]`` to ``state``; return their logits ``[B, T_new, V]``.

        The prompt once (prefill), then one token at a time; the logits equal the full
        forward's. ``pad_mask [B, T_new]`` (False = left padding) keeps padding out of
        attention and positions. Raises ValueError when the cache or block_size overflows.
        """
        idx = np.asarray(idx)
        if idx.ndim != 2:
            raise ValueError(f"idx must be [B, T_new] token ids, got shape {idx.shape}")
        B, T = idx.shape
        if state.batch_size != B:
            raise ValueError(f"idx has {B} rows but the state was made for {state.batch_size}")
        c = self.config
        start, positions, mask = state.advance(T, pad_mask, c.block_size)
        bias = None if mask is None else attention_bias(mask, self.dtype)
        x = self.params["transformer.wte.weight"][idx]
        x += self._position_rows(positions)
        for i, p in enumerate(self._blocks):
            keys, values = state.buffer[i, 0], state.buffer[i, 1]
            x = cached_block(x, p, c, keys, values, start, bias)
        p = self.params
        logits, _ = output_layer(
            x, p["transformer.ln_f.weight"], p.get("transformer.ln_f.bias"),
            c.layer_norm_epsilon, self.head_weight,
        )  # fmt: skip
        return logits


def _checked(config: GPTConfig, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``params`` in ``parameter_names`` order, after checking names, shapes and dtypes."""
    shapes = parameter_shapes(config)
    missing = [n for n in shapes if n not in params]
    unexpected = [n for n in params if n not in shapes]
    if missing or unexpected:
        raise ValueError(
            f"parameters do not match the config (missing {missing[:5]}, "
            f"unexpected {unexpected[:5]})"
        )
    out, dtypes = {}, set()
    for name, shape in shapes.items():
        value = np.asarray(params[name])
        if value.shape != shape:
            raise ValueError(f"{name} has shape {value.shape}, the config needs {shape}")
        dtypes.add(value.dtype.name)
        out[name] = value
    if len(dtypes) != 1 or next(iter(dtypes)) not in DTYPES:
        raise ValueError(f"parameters must all be float32 or all float64, got {sorted(dtypes)}")
    return out
