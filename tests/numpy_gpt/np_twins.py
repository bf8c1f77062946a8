"""Build a PyTorch GPT with a NumPy GPT's weights (and back), for the parity tests."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from scratchllm.configs import GPTConfig
from scratchllm.models import GPT
from scratchllm.numpy_gpt import NumpyGPT

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def tiny_config(**changes) -> GPTConfig:
    values = dict(n_layer=2, n_head=2, n_embd=16, block_size=12, vocab_size=23)
    values.update(changes)
    return GPTConfig(**values)


def numpy_model(config: GPTConfig, dtype: str = "float64", seed: int = 0) -> NumpyGPT:
    """A NumPy GPT whose weights are not the initial ones (biases and gains non-trivial)."""
    model = NumpyGPT(config, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    for name, p in model.params.items():
        if name.endswith(".bias") or "ln_" in name:
            p += rng.normal(0.0, 0.1, size=p.shape).astype(p.dtype)
        else:
            p += rng.normal(0.0, 0.05, size=p.shape).astype(p.dtype)  # sharper than init
    return model


def torch_twin(model: NumpyGPT) -> GPT:
    """The PyTorch GPT with ``model``'s weights, in its dtype."""
    twin = GPT(model.config).to(DTYPES[model.dtype.name])
    named = dict(twin.named_parameters())
    assert list(named) == list(model.params), "parameter names or order differ"
    with torch.no_grad():
        for name, p in model.params.items():
            named[name].copy_(torch.from_numpy(p))
    return twin


def numpy_twin(model: GPT) -> NumpyGPT:
    params = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    return NumpyGPT(model.config, params)


def torch_loss_and_grads(
    twin: GPT,
    idx: np.ndarray,
    targets: np.ndarray,
    loss_mask: np.ndarray | None = None,
    attention_mask: np.ndarray | None = None,
):
    """``(logits, loss, grads)`` of the PyTorch GPT, the loss in the model's own dtype.

    ``lm_loss`` casts logits to float32 before the cross-entropy (fine for bf16 training,
    but it rounds a float64 model's loss), so the float64 comparison computes the same
    mean cross-entropy here without the cast.
    """
    twin.zero_grad(set_to_none=True)
    am = None if attention_mask is None else torch.from_numpy(attention_mask)
    logits, _ = twin(torch.from_numpy(idx), attention_mask=am)
    keep = torch.from_numpy(targets) != -1
    if loss_mask is not None:
        keep &= torch.from_numpy(loss_mask).bool()
    if attention_mask is not None:
        keep &= am.bool()
    t = torch.from_numpy(targets).masked_fill(~keep, -1)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), t.reshape(-1), ignore_index=-1)
    loss.backward()
    grads = {n: p.grad.numpy().copy() for n, p in twin.named_parameters()}
    return logits.detach().numpy(), loss.item(), grads


def batch(config: GPTConfig, B: int = 3, T: int | None = None, seed: int = 0):
    rng = np.random.default_rng(seed)
    T = config.block_size if T is None else T
    ids = rng.integers(0, config.vocab_size, size=(B, T + 1))
    return ids[:, :-1], ids[:, 1:]
