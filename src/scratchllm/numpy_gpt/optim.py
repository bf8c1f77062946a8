"""AdamW and gradient clipping: the PyTorch Trainer's update, in NumPy.

**Which parameters decay** (``training/optimizer.py``'s rule): weight decay pulls the
matrices that mix features toward 0; it would harm biases and norm gains (every 1-D
parameter) and the embedding tables (``wte``, ``wpe``: a rare token's row would be
decayed every step but updated rarely). A tied ``lm_head`` is ``wte``, so it does not
decay either.

**Clipping.** When the global norm of all gradients, ``||g|| = sqrt(sum of every
squared entry)``, exceeds ``max_norm``, every gradient is scaled by
``max_norm / (||g|| + 1e-6)`` (``torch.nn.utils.clip_grad_norm_``).

**AdamW** (Loshchilov & Hutter), step ``t`` (from 1), as ``torch.optim.AdamW`` computes it::

    p <- p * (1 - lr * wd)                            decoupled weight decay
    m <- b1 m + (1 - b1) g                            first moment (a running mean)
    v <- b2 v + (1 - b2) g^2                          second moment
    p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

**One buffer per group.** As llm.c does, the optimizer packs each group's parameters into
one contiguous array and makes the model's parameters views into it, so the update is a
handful of vector operations over all parameters instead of a dozen per tensor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from scratchllm.numpy_gpt.model import NumpyGPT
from scratchllm.numpy_gpt.parallel import for_rows


def decay_groups(model: NumpyGPT) -> tuple[list[str], list[str]]:
    """``(decayed, not_decayed)`` parameter names, in ``named_parameters`` order."""
    embeddings = ("transformer.wte.weight", "transformer.wpe.weight")
    decay, no_decay = [], []
    for name, p in model.params.items():
        (decay if p.ndim >= 2 and name not in embeddings else no_decay).append(name)
    return decay, no_decay


def global_norm(grads: Mapping[str, np.ndarray] | list[np.ndarray]) -> float:
    """``sqrt(sum of every squared gradient entry)``."""
    arrays = grads.values() if isinstance(grads, Mapping) else grads
    return math.sqrt(sum(float(np.dot(g.ravel(), g.ravel())) for g in arrays))


class AdamW:
    """AdamW over ``model``'s parameters with two groups: decayed and not.

    ``step(grads, lr)`` clips (if ``grad_clip``), updates the parameters in place and
    returns the gradient norm before clipping (None without clipping).
    """

    def __init__(
        self,
        model: NumpyGPT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.99),
        eps: float = 1e-8,
        weight_decay: float = 0.1,
        grad_clip: float | None = 1.0,
    ) -> None:
        self.model = model
        self.lr, self.betas, self.eps = lr, betas, eps
        self.weight_decay, self.grad_clip = weight_decay, grad_clip
        self.t = 0  # updates taken
        decay, no_decay = decay_groups(model)
        self.groups = [g for g in ((decay, weight_decay), (no_decay, 0.0)) if g[0]]
        self.names = [n for names, _ in self.groups for n in names]  # PyTorch's param ids
        self.flat, self.m, self.v, self.grad = [], [], [], []
        for names, _ in self.groups:
            flat = np.concatenate([model.params[n].ravel() for n in names])
            at = 0
            for n in names:  # the model's parameters become views of the group's buffer
                shape, size = model.params[n].shape, model.params[n].size
                model.params[n] = flat[at : at + size].reshape(shape)
                at += size
            self.flat.append(flat)
            self.m.append(np.zeros_like(flat))
            self.v.append(np.zeros_like(flat))
            self.grad.append(np.empty_like(flat))
        model._refresh()

    def step(self, grads: Mapping[str, np.ndarray], lr: float | None = None) -> float | None:
        lr = self.lr if lr is None else lr
        for (names, _), g in zip(self.groups, self.grad):
            np.concatenate([grads[n].ravel() for n in names], out=g)
        norm = None
        if self.grad_clip:
            norm = global_norm(self.grad)
            coef = self.grad_clip / (norm + 1e-6)
            if coef < 1.0:
                for g in self.grad:
                    g *= coef
        self.t += 1
        b1, b2 = self.betas
        step_size = lr / (1.0 - b1**self.t)
        bc2_sqrt = math.sqrt(1.0 - b2**self.t)
        for (_, wd), p, m, v, g in zip(self.groups, self.flat, self.m, self.v, self.grad):

            def update(r: slice, wd=wd, p=p, m=m, v=v, g=g) -> None:
                if wd:
                    p[r] *= 1.0 - lr * wd
                m[r] *= b1  # m = b1 m + (1 - b1) g
                m[r] += (1.0 - b1) * g[r]
                g[r] *= g[r]  # the gradient buffer is refilled next step: use it as scratch
                g[r] *= 1.0 - b2
                v[r] *= b2
                v[r] += g[r]  # v = b2 v + (1 - b2) g^2
                denom = np.sqrt(v[r], out=g[r])
                denom *= 1.0 / bc2_sqrt
                denom += self.eps
                np.divide(m[r], denom, out=denom)
                denom *= step_size
                p[r] -= denom

            for_rows(update, p.size, 1)  # every entry on its own: in parallel
        return norm

    # -- state, in the layout of torch.optim.AdamW's state_dict ---------------------------------

    def state_tensors(self) -> dict[str, np.ndarray]:
        """``optim.{i}.exp_avg``, ``.exp_avg_sq`` and ``.step`` per parameter ``i`` (the
        names PyTorch's checkpoints use)."""
        out: dict[str, np.ndarray] = {}
        for i, (m, v) in enumerate(zip(self._views(self.m), self._views(self.v))):
            out[f"optim.{i}.exp_avg"] = np.ascontiguousarray(m)
            out[f"optim.{i}.exp_avg_sq"] = np.ascontiguousarray(v)
            out[f"optim.{i}.step"] = np.array(float(self.t), dtype=np.float32)
        return out

    def param_groups(self) -> list[dict]:
        """The hyperparameters, as PyTorch's ``state_dict()["param_groups"]`` lists them."""
        groups, at = [], 0
        for names, wd in self.groups:
            groups.append(
                {
                    "lr": self.lr,
                    "betas": list(self.betas),
                    "eps": self.eps,
                    "weight_decay": wd,
                    "params": list(range(at, at + len(names))),
                }
            )
            at += len(names)
        return groups

    def load_state(self, tensors: Mapping[str, np.ndarray], where: str = "the checkpoint") -> None:
        """Restore the moments and step from ``state_tensors``' layout (either engine's)."""
        steps = set()
        for i, (name, m, v) in enumerate(zip(self.names, self._views(self.m), self._views(self.v))):
            try:
                saved_m = tensors[f"optim.{i}.exp_avg"]
                saved_v = tensors[f"optim.{i}.exp_avg_sq"]
                steps.add(float(np.asarray(tensors[f"optim.{i}.step"])))
            except KeyError as e:
                raise ValueError(f"{where}: no optimizer state for {name} ({e})") from None
            if saved_m.shape != m.shape or saved_v.shape != v.shape:
                raise ValueError(
                    f"{where}: optimizer state of {name} has shape {saved_m.shape}, the "
                    f"parameter {m.shape}; resume with the model the run was started with"
                )
            m[...] = saved_m
            v[...] = saved_v
        if len(steps) > 1:
            raise ValueError(f"{where}: parameters were updated different numbers of times")
        self.t = int(steps.pop()) if steps else 0

    def _views(self, buffers: list[np.ndarray]):
        for (names, _), buf in zip(self.groups, buffers):
            at = 0
            for n in names:
                shape, size = self.model.params[n].shape, self.model.params[n].size
                yield buf[at : at + size].reshape(shape)
                at += size
