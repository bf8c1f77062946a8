"""From-scratch automatic differentiation: a scalar ``Value`` and a NumPy ``Tensor``.

>>> from scratchllm.autograd import Value, Tensor
>>> x = Value(3.0)
>>> y = x * x + 2 * x
>>> y.backward()
>>> x.grad
8.0

The functional ops (cross_entropy, layer_norm, embedding, dropout, where, masked_fill,
mse_loss, ...) live in ``scratchllm.autograd.functional``; modules and optimizers in the
``nn`` and ``optim`` submodules.
"""

from scratchllm.autograd.tensor import Tensor, cat, enable_grad, is_grad_enabled, no_grad, stack
from scratchllm.autograd.value import Value

__all__ = ["Value", "Tensor", "no_grad", "enable_grad", "is_grad_enabled", "cat", "stack"]
