"""Optimizers for the from-scratch engines: SGD (momentum, Nesterov), Adam and AdamW.

They work on any object with ``.data`` and ``.grad`` NumPy arrays (a ``Tensor`` parameter, or a
plain holder in a test), and follow ``torch.optim`` exactly: the same hyperparameter names, the
same defaults, the same update order, the same bias correction. Given identical parameters and
gradients, 20 steps here and 20 steps of ``torch.optim`` agree to float64 rounding.

Updates are written in place into the parameter's array with preallocated scratch buffers, so a
step allocates nothing once the state exists (the ``foreach`` idea of PyTorch, one array at a time).

Example:
    >>> import numpy as np
    >>> class P:  # anything with .data and .grad
    ...     def __init__(self, x):
    ...         self.data, self.grad = np.array(x), None
    >>> p = P([1.0, -2.0])
    >>> opt = SGD([p], lr=0.1, momentum=0.9)
    >>> p.grad = np.array([1.0, 1.0]); opt.step()
    >>> p.data
    array([ 0.9, -2.1])
    >>> p.grad = np.array([1.0, 1.0]); opt.step()  # buffer = 0.9 * 1 + 1 = 1.9
    >>> p.data
    array([ 0.71, -2.29])
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np


class Parameter(Protocol):
    """What an optimizer needs from a parameter: its values and their gradient."""

    data: np.ndarray
    grad: np.ndarray | None


ParamsArg = Iterable[Parameter] | Iterable[dict[str, Any]]


class Optimizer:
    """Base class: parameter groups, ``zero_grad`` and per-parameter state, as in ``torch.optim``.

    ``params`` is either an iterable of parameters or a list of dicts (parameter groups), each with
    a ``"params"`` key and optional per-group hyperparameters that override ``defaults``; e.g.
    ``[{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]``. Change a group's ``"lr"``
    between steps to schedule the learning rate.
    """

    def __init__(self, params: ParamsArg, defaults: dict[str, Any]) -> None:
        self.defaults = dict(defaults)
        self.param_groups: list[dict[str, Any]] = []
        # State is keyed by id(param): parameters need not be hashable (NumPy-backed objects often
        # define __eq__ elementwise), and we keep the objects alive through param_groups.
        self.state: dict[int, dict[str, Any]] = {}
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list; pass model.parameters()")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add a group of parameters, filling unset hyperparameters from the defaults."""
        if not isinstance(group, dict) or "params" not in group:
            raise ValueError(f"a parameter group must be a dict with a 'params' key, got {group!r}")
        params = group["params"]
        params = [params] if hasattr(params, "data") else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if not isinstance(getattr(p, "data", None), np.ndarray):
                raise ValueError(
                    f"optimizer parameters need a NumPy .data array, got {type(p).__name__}; "
                    "pass Tensor parameters (e.g. model.parameters())"
                )
            if id(p) in seen:
                raise ValueError("some parameters appear in more than one parameter group")
            seen.add(id(p))
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise ValueError(
                f"unknown hyperparameter(s) {sorted(unknown)} for {type(self).__name__}; "
                f"known: {sorted(self.defaults)}"
            )
        full = {**self.defaults, **group, "params": params}
        self._check_hyperparameters(full)
        self.param_groups.append(full)

    def _check_hyperparameters(self, group: dict[str, Any]) -> None:
        if group["lr"] < 0:
            raise ValueError(f"invalid learning rate lr={group['lr']}: must be >= 0")
        if group.get("weight_decay", 0.0) < 0:
            raise ValueError(f"invalid weight_decay={group['weight_decay']}: must be >= 0")

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: set them to None (torch's default) or fill them with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.fill(0.0)

    def step(self) -> None:
        """Update every parameter that has a gradient; parameters whose grad is None are skipped."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.shape != p.data.shape:
                    raise ValueError(
                        f"gradient shape {p.grad.shape} does not match parameter shape "
                        f"{p.data.shape}; was the gradient un-broadcast?"
                    )
                self._update(p, group, self.state.setdefault(id(p), {}))

    def _update(self, p: Parameter, group: dict[str, Any], state: dict[str, Any]) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Hyperparameters and state as plain values and arrays, parameters named by position."""
        flat = [p for g in self.param_groups for p in g["params"]]
        index = {id(p): i for i, p in enumerate(flat)}
        groups = [
            {
                **{k: v for k, v in g.items() if k != "params"},
                "params": [index[id(p)] for p in g["params"]],
            }
            for g in self.param_groups
        ]
        state = {
            index[pid]: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
            for pid, s in self.state.items()
        }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (same parameters, same order)."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
            len(g["params"]) != len(mine["params"])
            for g, mine in zip(groups, self.param_groups, strict=True)
        ):
            raise ValueError("state_dict has a different group layout than this optimizer")
        params = [p for g in self.param_groups for p in g["params"]]
        for g, mine in zip(groups, self.param_groups, strict=True):
            mine.update({k: v for k, v in g.items() if k != "params"})
        self.state = {
            id(params[int(i)]): {
                k: (
                    np.array(v, dtype=params[int(i)].data.dtype) if isinstance(v, np.ndarray) else v
                )
                for k, v in s.items()
            }
            for i, s in state_dict["state"].items()
        }


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov and L2 decay.

    Per parameter, with ``g`` the gradient (torch.optim.SGD's algorithm)::

        g = g + weight_decay * p                        # L2 penalty folded into the gradient
        b = g (first step)  or  momentum * b + (1 - dampening) * g
        g = g + momentum * b (nesterov)  or  b
        p = p - lr * g
    """

    def __init__(
        self,
        params: ParamsArg,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        maximize: bool = False,
    ) -> None:
        if momentum < 0:
            raise ValueError(f"invalid momentum={momentum}: must be >= 0")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                f"nesterov=True needs momentum > 0 and dampening = 0 "
                f"(got momentum={momentum}, dampening={dampening})"
            )
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _update(self, p: Parameter, group: dict[str, Any], state: dict[str, Any]) -> None:
        lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
        g = p.grad
        if group["maximize"]:
            g = -g
        if wd != 0:
            g = g + wd * p.data
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                # The first step copies the gradient (no dampening), as torch does.
                buf = state["momentum_buffer"] = np.array(g, dtype=p.data.dtype, copy=True)
            else:
                buf *= momentum
                buf += (1.0 - group["dampening"]) * g
            g = g + momentum * buf if group["nesterov"] else buf
        p.data -= lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction; ``weight_decay`` is coupled L2, as in torch.

    Per parameter, at step ``t`` (torch.optim.Adam's algorithm)::

        g = g + weight_decay * p                 # coupled: the decay goes through the moments
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    With ``amsgrad=True`` the running maximum of ``v`` replaces ``v`` in the denominator.
    """

    _decoupled = False

    def __init__(
        self,
        params: ParamsArg,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        maximize: bool = False,
    ) -> None:
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"invalid beta at index {i}: {beta} (must be in [0, 1))")
        if eps < 0:
            raise ValueError(f"invalid eps={eps}: must be >= 0")
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _update(self, p: Parameter, group: dict[str, Any], state: dict[str, Any]) -> None:
        lr, (beta1, beta2), eps, wd = (
            group["lr"],
            group["betas"],
            group["eps"],
            group["weight_decay"],
        )
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p.data)
            state["exp_avg_sq"] = np.zeros_like(p.data)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(p.data)
            state["scratch"] = np.empty_like(p.data)  # reused every step: no allocations
        m, v, tmp = state["exp_avg"], state["exp_avg_sq"], state["scratch"]
        g = -p.grad if group["maximize"] else p.grad
        if wd != 0:
            if self._decoupled:
                p.data *= 1.0 - lr * wd  # AdamW: shrink the weights, outside the moments
            else:
                g = g + wd * p.data  # Adam: L2 through the gradient

        state["step"] += 1
        t = state["step"]
        bias1 = 1.0 - beta1**t
        bias2_sqrt = math.sqrt(1.0 - beta2**t)

        # m = beta1 * m + (1 - beta1) * g     (torch writes it as m.lerp_(g, 1 - beta1))
        m *= beta1
        np.multiply(g, 1.0 - beta1, out=tmp)
        m += tmp
        # v = beta2 * v + (1 - beta2) * g^2
        v *= beta2
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - beta2
        v += tmp
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        # denom = sqrt(v) / sqrt(1 - beta2^t) + eps;  p -= lr / (1 - beta1^t) * m / denom
        np.sqrt(v, out=tmp)
        tmp /= bias2_sqrt
        tmp += eps
        np.divide(m, tmp, out=tmp)
        tmp *= lr / bias1
        p.data -= tmp

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        for s in sd["state"].values():
            s.pop("scratch", None)  # a work buffer, not state
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for s in self.state.values():
            s["scratch"] = np.empty_like(s["exp_avg"])


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), as torch.optim.AdamW.

    The only difference from :class:`Adam`: before the moment update the weights shrink,
    ``p = p * (1 - lr * weight_decay)``, and the gradient stays untouched. The default
    ``weight_decay`` is 1e-2, as in torch.
    """

    _decoupled = True

    def __init__(
        self,
        params: ParamsArg,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)
