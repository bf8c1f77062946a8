"""Neural-network building blocks on the from-scratch ``Tensor``: Module, Linear, Embedding,
LayerNorm and MLP, shaped and named like their ``torch.nn`` counterparts.

A :class:`Module` finds its parameters by looking at its attributes: every ``Tensor`` with
``requires_grad=True`` is a parameter, every ``Module`` (also inside a list, tuple or dict) is a
child. Parameter names are dotted paths, ``layers.0.weight``, as in PyTorch, so a state dict can
travel between the two libraries.

Example:
    >>> import numpy as np
    >>> from scratchllm.autograd import Tensor
    >>> mlp = MLP([2, 16, 1], rng=0)
    >>> [name for name, _ in mlp.named_parameters()]
    ['layers.0.weight', 'layers.0.bias', 'layers.1.weight', 'layers.1.bias']
    >>> mlp(Tensor(np.zeros((5, 2), dtype=np.float32))).shape
    (5, 1)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from scratchllm.autograd import functional as F
from scratchllm.autograd.tensor import Tensor

__all__ = [
    "Module",
    "Linear",
    "Embedding",
    "LayerNorm",
    "ReLU",
    "Sequential",
    "MLP",
    "from_torch",
    "to_numpy",
]

RNG = np.random.Generator | int | None


def _rng(rng: RNG) -> np.random.Generator:
    """A NumPy generator from a seed, a generator, or None (fresh entropy, like torch's default)."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def parameter(data: np.ndarray) -> Tensor:
    """A leaf tensor that requires a gradient: what a module learns."""
    return Tensor(data, requires_grad=True)


def to_numpy(x: Any) -> np.ndarray:
    """An array from a NumPy array, a ``Tensor`` or a torch tensor (duck-typed, no torch import)."""
    if isinstance(x, Tensor):
        return x.data
    if hasattr(x, "detach"):  # torch.Tensor, possibly requiring grad or on a device
        x = x.detach().cpu().numpy()
    return np.asarray(x)


class Module:
    """Base class: parameters found from attributes, train/eval mode, state dicts.

    Subclasses set their parameters and sub-modules as attributes in ``__init__`` and write
    ``forward``; calling the module calls ``forward``.
    """

    training: bool = True

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------ the module tree

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """Direct sub-modules, in attribute order; list items are named by position."""
        for name, value in vars(self).items():
            yield from _modules_in(name, value)

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """This module and all modules below it, depth first."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Tensor]]:
        """``(dotted name, tensor)`` for every parameter; a tensor shared by two modules (tied
        weights) is listed once, under its first name."""
        seen: set[int] = set()
        for mod_name, mod in self.named_modules(prefix):
            for name, value in vars(mod).items():
                for sub, t in _tensors_in(name, value):
                    if t.requires_grad and id(t) not in seen:
                        seen.add(id(t))
                        yield (f"{mod_name}.{sub}" if mod_name else sub), t

    def parameters(self) -> list[Tensor]:
        """All parameters, in a stable order (the order of ``named_parameters``)."""
        return [t for _, t in self.named_parameters()]

    def num_parameters(self) -> int:
        return sum(p.data.size for p in self.parameters())

    # ------------------------------------------------------------------ training helpers

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget accumulated gradients (backward adds into ``.grad``, as in PyTorch)."""
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.fill(0.0)

    def train(self, mode: bool = True) -> Module:
        """Set training mode here and below (dropout is active only in training)."""
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def to(self, dtype: Any) -> Module:
        """Cast every parameter to ``dtype`` in place of the old array (e.g. ``np.float64``)."""
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        return self

    # ------------------------------------------------------------------ state dicts

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameter name -> a copy of its array."""
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> None:
        """Copy arrays into the parameters, by name, keeping each parameter's dtype.

        ``state`` may hold NumPy arrays, ``Tensor``s or torch tensors. With ``strict`` every
        parameter must be present and no extra name allowed.
        """
        params = dict(self.named_parameters())
        if strict:
            missing = sorted(set(params) - set(state))
            extra = sorted(set(state) - set(params))
            if missing or extra:
                raise ValueError(
                    f"state dict does not match {type(self).__name__}: "
                    f"missing {missing}, unexpected {extra}"
                )
        for name, value in state.items():
            if name in params:
                _copy_into(params[name], to_numpy(value), name)


def _modules_in(name: str, value: Any) -> Iterator[tuple[str, Module]]:
    if isinstance(value, Module):
        yield name, value
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _modules_in(f"{name}.{i}", v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _modules_in(f"{name}.{k}", v)


def _tensors_in(name: str, value: Any) -> Iterator[tuple[str, Tensor]]:
    if isinstance(value, Tensor):
        yield name, value
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _tensors_in(f"{name}.{i}", v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _tensors_in(f"{name}.{k}", v)


def _copy_into(p: Tensor, array: np.ndarray, name: str) -> None:
    if array.shape != p.data.shape:
        raise ValueError(
            f"parameter {name!r} has shape {p.data.shape} but the given array has shape "
            f"{array.shape}"
        )
    p.data[...] = array  # in place: optimizers and tied modules keep pointing at the same array


def from_torch(module: Module, torch_module: Any) -> Module:
    """Copy a torch module's parameters into ``module`` by position, checking every shape.

    Names may differ (``torch.nn.Sequential`` calls its layers ``0``, ``2``, ...), so the two
    parameter lists are matched in order; both libraries list a layer's weight before its bias.
    Returns ``module``. For the other direction, ``torch_param.copy_(torch.from_numpy(p.data))``.
    """
    ours = list(module.named_parameters())
    theirs = list(torch_module.named_parameters())
    if len(ours) != len(theirs):
        raise ValueError(
            f"{type(module).__name__} has {len(ours)} parameters but the torch module has "
            f"{len(theirs)}: they are not the same architecture"
        )
    for (name, p), (tname, t) in zip(ours, theirs, strict=True):
        array = to_numpy(t)
        if array.shape != p.data.shape:
            raise ValueError(
                f"parameter {name!r} has shape {p.data.shape} but torch's {tname!r} has "
                f"shape {array.shape}"
            )
        p.data[...] = array
    return module


# ---------------------------------------------------------------------------- layers


class Linear(Module):
    """``y = x @ W.T + b`` with ``W`` of shape (out_features, in_features), as ``torch.nn.Linear``.

    Initialisation is torch's default: weight and bias uniform in ``[-k, k]``,
    ``k = 1/sqrt(in_features)`` (kaiming-uniform with ``a = sqrt(5)`` works out to this bound).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        rng: RNG = None,
        dtype: Any = np.float32,
    ) -> None:
        if in_features <= 0 or out_features <= 0:
            raise ValueError(
                f"Linear needs positive sizes, got in_features={in_features}, "
                f"out_features={out_features}"
            )
        g = _rng(rng)
        k = 1.0 / math.sqrt(in_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = parameter(g.uniform(-k, k, (out_features, in_features)).astype(dtype))
        self.bias = parameter(g.uniform(-k, k, out_features).astype(dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear({self.in_features}, {self.out_features}) got input of shape {x.shape}: "
                f"its last dimension must be {self.in_features}"
            )
        return F.linear(x, self.weight, self.bias)  # (..., in) @ (in, out) + (out,) -> (..., out)

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias is not None})"


class Embedding(Module):
    """A lookup table: row ``i`` of ``weight`` (num_embeddings, embedding_dim) is token i's vector.

    Initialised from N(0, 1), as ``torch.nn.Embedding``.
    """

    def __init__(
        self, num_embeddings: int, embedding_dim: int, rng: RNG = None, dtype: Any = np.float32
    ) -> None:
        if num_embeddings <= 0 or embedding_dim <= 0:
            raise ValueError(
                f"Embedding needs positive sizes, got num_embeddings={num_embeddings}, "
                f"embedding_dim={embedding_dim}"
            )
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = parameter(
            _rng(rng).standard_normal((num_embeddings, embedding_dim)).astype(dtype)
        )

    def forward(self, idx: Any) -> Tensor:
        return F.embedding(idx, self.weight)  # (...) ids -> (..., embedding_dim)

    def __repr__(self) -> str:
        return f"Embedding({self.num_embeddings}, {self.embedding_dim})"


class LayerNorm(Module):
    """Normalise the last dimension to zero mean and unit variance, then scale and shift.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` with the biased variance, weight
    initialised to ones and bias to zeros, as ``torch.nn.LayerNorm(normalized_shape)``.
    """

    def __init__(
        self, normalized_shape: int, eps: float = 1e-5, bias: bool = True, dtype: Any = np.float32
    ) -> None:
        if normalized_shape <= 0:
            raise ValueError(f"LayerNorm needs a positive size, got {normalized_shape}")
        self.normalized_shape, self.eps = normalized_shape, eps
        self.weight = parameter(np.ones(normalized_shape, dtype=dtype))
        self.bias = parameter(np.zeros(normalized_shape, dtype=dtype)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.normalized_shape:
            raise ValueError(
                f"LayerNorm({self.normalized_shape}) got input of shape {x.shape}: its last "
                f"dimension must be {self.normalized_shape}"
            )
        # One fused op with a hand-derived backward, rather than a graph of mean/sub/div.
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def __repr__(self) -> str:
        return f"LayerNorm({self.normalized_shape}, eps={self.eps})"


class ReLU(Module):
    """``max(x, 0)`` as a module, for use inside :class:`Sequential`."""

    def forward(self, x: Tensor) -> Tensor:
        return x.relu()

    def __repr__(self) -> str:
        return "ReLU()"


class Sequential(Module):
    """Apply modules one after the other."""

    def __init__(self, *layers: Module) -> None:
        self.layers = list(layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def __repr__(self) -> str:
        inner = ", ".join(repr(m) for m in self.layers)
        return f"Sequential({inner})"


class MLP(Module):
    """A multilayer perceptron: Linear layers of the given sizes with ReLU between them.

    ``MLP([2, 64, 64, 1])`` is ``Linear(2, 64) -> ReLU -> Linear(64, 64) -> ReLU -> Linear(64, 1)``
    (no activation after the last layer). Its parameters line up one to one with
    ``torch.nn.Sequential`` of the same layers, so :func:`from_torch` copies between them.
    """

    def __init__(
        self, sizes: Sequence[int], bias: bool = True, rng: RNG = None, dtype: Any = np.float32
    ) -> None:
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"MLP needs at least an input and an output size, got sizes={sizes}")
        g = _rng(rng)
        self.sizes = sizes
        self.layers = [
            Linear(n_in, n_out, bias=bias, rng=g, dtype=dtype)
            for n_in, n_out in zip(sizes[:-1], sizes[1:])
        ]

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = x.relu()
        return x

    def __repr__(self) -> str:
        return f"MLP({self.sizes})"
