"""AdamW with decoupled weight decay on the weight matrices only.

Weight decay pulls weights toward zero each step (``w -= lr * wd * w``, separately from
the gradient: Loshchilov & Hutter's "decoupled" decay). It is a prior on the matrices
that mix features; applied elsewhere it does harm:

- **biases** and **norm gains/offsets** (every 1-D parameter) set scales and offsets;
  pulling a LayerNorm gain toward 0 shrinks the whole activation.
- **embeddings** (token and position tables, every ``nn.Embedding`` weight) are lookup
  tables: a rare token's row gets few gradient updates but is decayed every step, so
  decay would erase what was learned about rare tokens. A tied ``lm_head`` shares the
  token table and is therefore not decayed either.

So the rule is: decay a parameter iff it has 2 or more dimensions and does not belong to
an ``nn.Embedding``. ``decay_groups`` returns the two lists by name, for inspection.

``configure_optimizer`` returns our ``AdamW``: ``torch.optim.AdamW`` whose step, for float32
CPU parameters, is one call of a C++ kernel per group (``adamw_kernel.cpp``) with the bits
of PyTorch's fused kernel, which is called once per parameter.
"""

from __future__ import annotations

import ctypes
import inspect
from pathlib import Path

import torch
from torch import nn

from scratchllm.configs.train import TrainConfig
from scratchllm.models import train_kernel
from scratchllm.models.cpp_library import Library


def decay_groups(model: nn.Module) -> tuple[list[str], list[str]]:
    """``(decayed, not_decayed)`` parameter names of ``model`` (trainable ones only).

    A parameter shared between modules (tied weights) is listed once, by its first name.
    """
    embedding_ids = {
        id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding | nn.EmbeddingBag)
    }
    decay, no_decay = [], []
    for name, p in model.named_parameters():  # named_parameters skips shared duplicates
        if not p.requires_grad:
            continue
        if p.dim() >= 2 and id(p) not in embedding_ids:
            decay.append(name)
        else:
            no_decay.append(name)
    return decay, no_decay


def configure_optimizer(
    model: nn.Module, cfg: TrainConfig, device_type: str = "cpu"
) -> torch.optim.AdamW:
    """``AdamW`` (a ``torch.optim.AdamW``) over ``model``'s trainable parameters, decay on
    matrices only.

    Uses the fused kernel where this torch build supports it for ``device_type``, else the
    ``foreach`` multi-tensor path; on a CPU, float32 groups take ``AdamW``'s own kernel,
    which gives the fused one's bits. All compute the same update as the textbook loop.
    The fused kernels (PyTorch's and ours) write the parameters without bumping their
    version counters (torch 2.13), so a step hook bumps them: the decode
    kernel's packed weights (``models.decode_kernel``) are checked by those counters, and a
    run that generates between updates (RL rollouts, in-run evaluations) would otherwise
    decode with the matrices of its first generation.
    """
    params = dict(model.named_parameters())
    decay, no_decay = decay_groups(model)
    groups = [
        {"params": [params[n] for n in decay], "weight_decay": cfg.weight_decay},
        {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError(
            f"{type(model).__name__} has no trainable parameters; a counting model "
            "is fitted, not optimized"
        )
    kwargs = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    if _fused_ok(device_type):
        kwargs["fused"] = True
    else:
        kwargs["foreach"] = True
    optimizer = AdamW(groups, **kwargs)
    optimizer.register_step_post_hook(_bump_versions)
    return optimizer


def _bump_versions(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
    """Mark every parameter as changed in place (no data is touched)."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            torch.autograd.graph.increment_version(p)


def _fused_ok(device_type: str) -> bool:
    """Whether ``AdamW(fused=True)`` runs on this device type in this torch build."""
    if "fused" not in inspect.signature(torch.optim.AdamW).parameters:
        return False
    if device_type == "cuda":
        return True
    try:  # CPU (and MPS in newer builds) gained fused kernels over time: probe once, tiny.
        p = nn.Parameter(torch.zeros(1, device=device_type))
        p.grad = torch.zeros(1, device=device_type)
        torch.optim.AdamW([p], fused=True).step()
    except (RuntimeError, TypeError):
        return False
    return True


# -- AdamW's update in one C++ call per group ----------------------------------------------

_p, _i, _d = ctypes.c_void_p, ctypes.c_int32, ctypes.c_double


def _declare(lib: ctypes.CDLL) -> None:
    lib.adamw_update.argtypes = [_p] * 6 + [_i] + [_d] * 5 + [_i]
    lib.adamw_update.restype = None


kernel = Library(
    Path(__file__).with_name("adamw_kernel.cpp"),
    "C++ AdamW update",
    "AdamW runs PyTorch's kernel",
    _declare,
    flags=("-ffp-contract=off", "-fno-math-errno"),  # each operation rounds as PyTorch's do
)


def _unhooked(step):
    """``step`` without the hooks ``Optimizer`` wraps around a class's ``step`` (our ``step``
    runs them once, around whichever update it makes)."""
    return step.__wrapped__ if getattr(step, "hooked", False) else step


class AdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` whose update of a group of contiguous float32 CPU tensors is one
    call of ``adamw_kernel.cpp``, all parameters at once, where PyTorch's fused kernel runs
    once per parameter (on a small GPT's 52: 0.5 ms against 0.85). The state and its
    ``state_dict`` are the fused kernel's (a float32 ``step`` per parameter, ``exp_avg``,
    ``exp_avg_sq``), and so are the bits of its updates: all of them on whole vectors of 16
    floats, and the moments everywhere; an array's last ``numel % 16`` weights, which
    PyTorch's scalar tail rounds as its compiler chose, within an ulp a step
    (``tests/training/test_adamw_kernel.py``). Everything else runs PyTorch's own step:
    ``amsgrad``, ``maximize``, ``capturable``, ``differentiable``, a tensor ``lr``, a
    ``GradScaler``'s scale, sparse, complex or non-contiguous tensors, other devices and
    dtypes, ``train_kernel.enabled`` off, or no C++ compiler.
    """

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201 (torch's signature)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        lib = kernel.load() if train_kernel.enabled else None
        work = self._collect() if lib is not None else None
        if work is None:
            _unhooked(torch.optim.AdamW.step)(self)
            return loss
        threads = torch.get_num_threads()
        for group, tensors in work:
            n = len(tensors[0])
            arrays = [(ctypes.c_void_p * n)(*(t.data_ptr() for t in ts)) for ts in tensors]
            sizes = (ctypes.c_int64 * n)(*(p.numel() for p in tensors[0]))
            beta1, beta2 = group["betas"]
            with train_kernel.profiled("adamw_update"):
                lib.adamw_update(
                    *arrays, sizes, n, group["lr"], beta1, beta2, group["weight_decay"],
                    group["eps"], threads,
                )  # fmt: skip
        return loss

    def _collect(self) -> list[tuple[dict, list[list[torch.Tensor]]]] | None:
        """Each group with parameters to update and its tensors (params, grads, exp_avgs,
        exp_avg_sqs, steps), the missing state made as PyTorch's fused path makes it; None
        where the kernel does not take them all (then PyTorch's step runs)."""
        scale, found_inf = getattr(self, "grad_scale", None), getattr(self, "found_inf", None)
        if scale is not None or found_inf is not None:
            return None  # a GradScaler's: PyTorch's fused step unscales, or skips the step
        work = []
        for group in self.param_groups:
            if (
                group["amsgrad"] or group["maximize"] or group["capturable"]
                or group["differentiable"] or not group.get("decoupled_weight_decay", True)
                or not isinstance(group["lr"], float)
            ):  # fmt: skip
                return None
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if any(g.is_sparse for g in grads):
                return None  # PyTorch's step says Adam takes no sparse gradient
            states = []
            for p in params:
                state = self.state[p]
                if not state:
                    if not (p.is_cpu and p.dtype is torch.float32):
                        return None  # (before making a state PyTorch's path would make otherwise)
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                states.append(state)
            exp_avgs = [s["exp_avg"] for s in states]
            exp_avg_sqs = [s["exp_avg_sq"] for s in states]
            steps = [s["step"] for s in states]
            for t in (*params, *grads, *exp_avgs, *exp_avg_sqs, *steps):
                if not (t.dtype is torch.float32 and t.is_cpu and t.is_contiguous()):
                    return None
            work.append((group, [params, grads, exp_avgs, exp_avg_sqs, steps]))
        return work
