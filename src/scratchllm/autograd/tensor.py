"""A NumPy-backed tensor with reverse-mode automatic differentiation.

Every operation computes its result with NumPy and, when some input requires a gradient,
records a small closure that maps the gradient of the result to the gradients of its
inputs. ``backward()`` walks that graph once, in reverse topological order (found without
recursion, so graphs of any depth work), and adds the gradients of leaf tensors into their
``.grad``, accumulating across calls as PyTorch does.

Example:
    >>> import numpy as np
    >>> x = Tensor(np.array([[1.0, -2.0], [3.0, 4.0]]), requires_grad=True)
    >>> w = Tensor(np.array([0.5, 1.0]), requires_grad=True)
    >>> loss = (x * w).relu().sum()          # (2, 2) * (2,) broadcasts over rows
    >>> loss.backward()
    >>> x.grad                               # w where x * w > 0, else 0
    array([[0.5, 0. ],
           [0.5, 1. ]])
    >>> w.grad                               # x summed over the broadcast row axis
    array([4., 4.])

Conventions: ``Tensor(array)`` shares memory with ``array`` (like ``torch.from_numpy``) and
keeps its dtype (float32 stays float32, float64 stays float64; Python numbers and lists become
NumPy's default dtype). Python scalars in arithmetic take the tensor's dtype. Axis arguments
are called ``axis``/``keepdims`` as in NumPy; PyTorch's ``dim``/``keepdim`` are accepted too.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["Tensor", "no_grad", "enable_grad", "is_grad_enabled", "cat", "concatenate", "stack"]

Backward = Callable[[np.ndarray], tuple["np.ndarray | None", ...]]
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# --------------------------------------------------------------------------- erf


_ERF_TOP = 6.0  # erfc(6) = 2e-17: erf is 1 in double precision beyond this
_ERF_T_LOW = 1.0 / (1.0 + 0.5 * _ERF_TOP)
# Polynomial degree: 18 keeps float64 to ~2e-15; 10 gives ~2e-9, below float32's resolution.
_ERF_DEGREE = {np.dtype(np.float64): 18, np.dtype(np.float32): 10, np.dtype(np.float16): 10}


@functools.cache
def _erfc_log_poly(degree: int) -> np.ndarray:
    """Power-series coefficients (in u) of ``P`` in ``erfc(z) = t · exp(-z² + P(u))``.

    ``t = 1 / (1 + z/2)`` maps z in [0, 6] to t in [1/4, 1], and ``u`` rescales t to [-1, 1].
    Taking ``exp(-z²)`` out (the form of the classic ``erfcc`` approximation) leaves a smooth,
    slowly varying P, which Chebyshev interpolation at ``degree + 1`` points, computed here
    with the standard library's ``math.erfc``, captures to rounding. Built on first use.
    """
    from numpy.polynomial import chebyshev

    def p_of_u(u: np.ndarray) -> np.ndarray:
        t = _ERF_T_LOW + (u + 1) * (1 - _ERF_T_LOW) / 2
        z = 2 / t - 2
        return np.array([math.log(math.erfc(zz) / tt) + zz * zz for zz, tt in zip(z, t)])

    return chebyshev.cheb2poly(chebyshev.chebinterpolate(p_of_u, degree))


def erf(x: np.ndarray) -> np.ndarray:
    """The error function, elementwise, with NumPy only.

    Absolute error below 1e-14 for float64 input and 1e-8 otherwise; the result is float64.

    >>> erf(np.array([0.0, 0.5, -2.0])).round(6)
    array([ 0.      ,  0.5205  , -0.995322])
    """
    x = np.asarray(x)
    coef = _erfc_log_poly(_ERF_DEGREE.get(x.dtype, 18))
    a = np.minimum(np.abs(x), _ERF_TOP, dtype=np.float64)
    t = 1.0 / (1.0 + 0.5 * a)
    u = (t - (1 + _ERF_T_LOW) / 2) * (2 / (1 - _ERF_T_LOW))  # in [-1, 1]
    acc = np.full_like(u, coef[-1])
    for c in coef[-2::-1]:  # Horner
        acc *= u
        acc += c
    acc -= a * a
    np.exp(acc, out=acc)
    acc *= t  # erfc(|x|)
    np.subtract(1.0, acc, out=acc)
    return np.copysign(acc, x, out=acc)


# --------------------------------------------------------------------------- grad mode


class _GradMode:
    """Whether new operations record the graph (False inside ``no_grad()``)."""

    enabled = True


def is_grad_enabled() -> bool:
    """True unless inside a ``no_grad()`` block."""
    return _GradMode.enabled


class _SetGradMode:
    """Context manager / decorator that sets grad mode and restores the previous one."""

    _mode = True

    def __enter__(self) -> None:
        self._prev = _GradMode.enabled
        _GradMode.enabled = self._mode

    def __exit__(self, *exc: object) -> None:
        _GradMode.enabled = self._prev

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        import functools

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with type(self)():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_SetGradMode):  # noqa: N801 (named as in PyTorch)
    """Stop recording the graph: results of operations do not require grad.

    Used by optimizers (parameter updates are not part of the model) and for evaluation,
    where recording would only cost time and memory.

        >>> w = Tensor(np.ones(3), requires_grad=True)
        >>> with no_grad():
        ...     y = w * 2
        >>> y.requires_grad
        False
    """

    _mode = False


class enable_grad(_SetGradMode):  # noqa: N801
    """Record the graph again inside a ``no_grad()`` block."""

    _mode = True


# --------------------------------------------------------------------------- helpers


def _make(data: np.ndarray, parents: tuple[Tensor, ...], backward: Backward, op: str) -> Tensor:
    """Wrap an op's result; keep the graph edge only if an input needs a gradient."""
    out = Tensor.__new__(Tensor)
    out.data = data
    out.grad = None
    out._retain = False
    out._op = op
    if _GradMode.enabled:
        for p in parents:
            if p.requires_grad:
                out.requires_grad = True
                out._parents = parents
                out._backward = backward
                return out
    out.requires_grad = False
    out._parents = ()
    out._backward = None
    return out


def _lift(x: Any, like: Tensor) -> Tensor:
    """Turn a Python number or array into a constant tensor; numbers take ``like``'s dtype."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (int, float)) and like.data.dtype.kind == "f":
        return Tensor(np.asarray(x, dtype=like.data.dtype))
    return Tensor(np.asarray(x))


# Exact Python number types take the fast path in arithmetic: NumPy treats them as "weak"
# scalars (float32 + 0.5 stays float32), and no constant tensor needs to be built.
_PY_SCALARS = (int, float)


def _pass(g: np.ndarray) -> tuple[np.ndarray]:
    return (g,)


def _negate(g: np.ndarray) -> tuple[np.ndarray]:
    return (-g,)


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum ``g`` over the axes that broadcasting added or stretched, giving ``shape``.

    Example: a bias of shape (3,) added to (2, 3) receives ``g.sum(axis=0)``; a (2, 1)
    operand receives ``g.sum(axis=1, keepdims=True)``.
    """
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    if lead:
        g = g.sum(axis=tuple(range(lead)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if stretched:
        g = g.sum(axis=stretched, keepdims=True)
    return g


def _broadcast_error(op: str, a: Tensor, b: Tensor) -> ValueError:
    return ValueError(
        f"{op}: shapes {a.shape} and {b.shape} cannot be broadcast together "
        "(trailing dimensions must be equal or 1)"
    )


def _axes(axis: int | Sequence[int] | None, ndim: int, op: str) -> tuple[int, ...] | None:
    """Normalise an axis argument to a sorted tuple of non-negative axes (None = all)."""
    if axis is None:
        return None
    if ndim == 0:
        return ()  # a 0-d tensor has nothing to reduce over (torch accepts dim 0 / -1 here)
    seq = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in seq:
        if not -ndim <= a < ndim:
            raise ValueError(
                f"{op}: axis {a} is out of range for a tensor with {ndim} dimensions "
                f"(valid: {-ndim} to {ndim - 1})"
            )
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: axis {axis} repeats a dimension")
    return tuple(sorted(out))


def _axis(axis: int, ndim: int, op: str) -> int:
    """Normalise a single axis argument to a non-negative int."""
    if ndim == 0:
        raise ValueError(f"{op}: needs a tensor with at least 1 dimension, got a 0-d tensor")
    return _axes(axis, ndim, op)[0]  # type: ignore[index]


def _pick(axis: Any, dim: Any) -> Any:
    """Accept PyTorch's ``dim=`` as a synonym of ``axis=``."""
    return dim if dim is not None else axis


# --------------------------------------------------------------------------- the tensor


class Tensor:
    """An n-dimensional array that records operations for reverse-mode differentiation.

    Args:
        data: a NumPy array (shared, dtype kept), or anything ``np.asarray`` accepts.
        requires_grad: whether ``backward()`` should fill ``.grad`` for this tensor.
            Only floating-point tensors can require gradients.
    """

    __slots__ = ("data", "grad", "requires_grad", "_parents", "_backward", "_op", "_retain")
    # Make `ndarray (op) Tensor` call our reflected operators instead of NumPy broadcasting
    # over an object array.
    __array_ufunc__ = None

    data: np.ndarray
    grad: np.ndarray | None
    requires_grad: bool

    def __init__(self, data: Any, requires_grad: bool = False) -> None:
        if isinstance(data, Tensor):
            data = data.data
        arr = data if isinstance(data, np.ndarray) else np.asarray(data)
        if requires_grad and arr.dtype.kind != "f":
            raise TypeError(
                f"only floating-point tensors can require gradients, got dtype {arr.dtype}; "
                "convert first, e.g. Tensor(x.astype(np.float32), requires_grad=True)"
            )
        self.data = arr
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._parents: tuple[Tensor, ...] = ()
        self._backward: Backward | None = None
        self._op = ""
        self._retain = False

    # ----------------------------------------------------------------- basic properties

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def is_leaf(self) -> bool:
        """True for tensors made by the user rather than by an op (they keep ``.grad``)."""
        return self._backward is None

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.data.shape[0]

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", prefix="Tensor(")
        extra = f", op={self._op}" if self._op else ""
        rg = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({body}, dtype={self.data.dtype}{rg}{extra})"

    def item(self) -> float | int | bool:
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(
                f"item(): tensor of shape {self.shape} has {self.data.size} elements, not 1"
            )
        return self.data.item()

    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied)."""
        return self.data

    def tolist(self) -> Any:
        return self.data.tolist()

    def detach(self) -> Tensor:
        """A tensor sharing this one's data but cut off from the graph."""
        return Tensor(self.data)

    def zero_grad(self) -> None:
        """Forget the accumulated gradient (sets ``.grad`` to None, as torch optimizers do)."""
        self.grad = None

    def retain_grad(self) -> Tensor:
        """Keep ``.grad`` on this non-leaf tensor during ``backward()`` (leaves always do)."""
        self._retain = True
        return self

    def requires_grad_(self, flag: bool = True) -> Tensor:
        if flag and self.data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got {self.dtype}")
        self.requires_grad = bool(flag)
        return self

    # ----------------------------------------------------------------- backward

    def backward(self, grad: Any = None) -> None:
        """Add d(self)/d(leaf) · grad into ``leaf.grad`` for every leaf that requires grad.

        Args:
            grad: the gradient of some final scalar with respect to this tensor, same shape.
                May be omitted when this tensor has one element (it is then 1).
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward(): this tensor does not require grad; create the inputs with "
                "requires_grad=True (and not inside no_grad())"
            )
        if grad is None:
            if self.data.size != 1:
                raise ValueError(
                    f"backward() on a tensor of shape {self.shape} needs a gradient argument; "
                    "call .sum() first or pass grad=..."
                )
            g = np.ones_like(self.data)
        else:
            g = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.data.dtype)
            if g.shape != self.shape:
                raise ValueError(
                    f"backward(): grad has shape {g.shape} but the tensor has shape {self.shape}"
                )

        grads: dict[int, np.ndarray] = {id(self): g}
        for node in reversed(_topological_order(self)):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._backward is None or node._retain:
                if node.grad is None:
                    # Own a writable copy: g may be a broadcast view or shared with a sibling.
                    node.grad = np.array(g, dtype=node.data.dtype, copy=True)
                else:
                    node.grad += g
            if node._backward is None:
                continue
            for p, pg in zip(node._parents, node._backward(g)):
                if pg is None or not p.requires_grad:
                    continue
                k = id(p)
                prev = grads.get(k)
                # A node used several times receives the sum of its gradients. `prev` may
                # alias another node's gradient, so add out of place.
                grads[k] = pg if prev is None else prev + pg

    # ----------------------------------------------------------------- arithmetic

    def __add__(self, other: Any) -> Tensor:
        if type(other) in _PY_SCALARS:
            return _make(self.data + other, (self,), _pass, "add")
        a, b = self, _lift(other, self)
        try:
            data = a.data + b.data
        except ValueError:
            raise _broadcast_error("add", a, b) from None

        def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
            return (
                _unbroadcast(g, a.data.shape) if a.requires_grad else None,
                _unbroadcast(g, b.data.shape) if b.requires_grad else None,
            )

        return _make(data, (a, b), backward, "add")

    def __radd__(self, other: Any) -> Tensor:
        if type(other) in _PY_SCALARS:
            return _make(other + self.data, (self,), _pass, "add")
        return _lift(other, self).__add__(self)

    def __sub__(self, other: Any) -> Tensor:
        if type(other) in _PY_SCALARS:
            return _make(self.data - other, (self,), _pass, "sub")
        a, b = self, _lift(other, self)
        try:
            data = a.data - b.data
        except ValueError:
            raise _broadcast_error("sub", a, b) from None

        def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
            return (
                _unbroadcast(g, a.data.shape) if a.requires_grad else None,
                -_unbroadcast(g, b.data.shape) if b.requires_grad else None,
            )

        return _make(data, (a, b), backward, "sub")

    def __rsub__(self, other: Any) -> Tensor:
        if type(other) in _PY_SCALARS:
            return _make(other - self.data, (self,), _negate, "sub")
        return _lift(other, self).__sub__(self)

    def __mul__(self, other: Any) -> Tensor:
        if type(other) in _PY_SCALARS:
            c = other
            return _make(self.data * c, (self,), lambda g: (g * c,), "mul")
        a, b = self, _lift(other, self)
        try:
            data = a.data * b.data
        except ValueError:
            raise _broadcast_error("mul", a, b) from None

        def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
            return (
                _unbroadcast(g * b.data, a.data.shape) if a.requires_grad else None,
                _unbroadcast(g * a.data, b.data.shape) if b.requires_grad else None,
            )

        return _make(data, (a, b), backward, "mul")

    def __rmul__(self, other: Any) -> Tensor:
        if type(other) in _PY_SCALARS:
            return self.__mul__(other)
        return _lift(other, self).__mul__(self)

    def __truediv__(self, other: Any) -> Tensor:
        if type(other) in _PY_SCALARS:
            c = other
            return _make(self.data / c, (self,), lambda g: (g / c,), "div")
        a, b = self, _lift(other, self)
        try:
            data = a.data / b.data
        except ValueError:
            raise _broadcast_error("div", a, b) from None

        def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
            ga = g / b.data
            return (
                _unbroadcast(ga, a.data.shape) if a.requires_grad else None,
                # d(a/b)/db = -a/b² = -(a/b)/b
                _unbroadcast(-ga * data, b.data.shape) if b.requires_grad else None,
            )

        return _make(data, (a, b), backward, "div")

    def __rtruediv__(self, other: Any) -> Tensor:
        if type(other) in _PY_SCALARS:
            x = self.data
            data = other / x
            return _make(data, (self,), lambda g: (-g * data / x,), "div")
        return _lift(other, self).__truediv__(self)

    def __pow__(self, other: Any) -> Tensor:
        a = self
        if isinstance(other, (int, float)):
            p = other
            data = a.data**p

            def backward_const(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
                if p == 0:  # x ** 0 is constant (avoid 0 · 0 ** -1 = NaN at x = 0)
                    return (np.zeros_like(g),)
                if p == 2:  # the common square, without a second power
                    return (g * 2 * a.data,)
                return (g * p * a.data ** (p - 1),)

            return _make(data, (a,), backward_const, "pow")
        b = _lift(other, self)
        try:
            data = a.data**b.data
        except ValueError:
            raise _broadcast_error("pow", a, b) from None

        def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
            ga = gb = None
            if a.requires_grad:
                ga = _unbroadcast(g * b.data * a.data ** (b.data - 1), a.data.shape)
            if b.requires_grad:
                # d(a**b)/db = a**b · log(a); defined for a > 0 (NaN elsewhere, as in torch)
                with np.errstate(divide="ignore", invalid="ignore"):
                    gb = _unbroadcast(g * data * np.log(a.data), b.data.shape)
            return ga, gb

        return _make(data, (a, b), backward, "pow")

    def __rpow__(self, other: Any) -> Tensor:
        return _lift(other, self).__pow__(self)

    def __neg__(self) -> Tensor:
        return _make(-self.data, (self,), lambda g: (-g,), "neg")

    def __pos__(self) -> Tensor:
        return self

    def __bool__(self) -> bool:
        return bool(self.data)  # raises for several elements, as NumPy and torch do

    # Comparisons give boolean tensors that carry no gradient (masks for where/masked_fill).
    # == and != are left as identity, so tensors stay hashable (optimizers key state on them).
    def __lt__(self, other: Any) -> Tensor:
        return Tensor(self.data < _lift(other, self).data)

    def __le__(self, other: Any) -> Tensor:
        return Tensor(self.data <= _lift(other, self).data)

    def __gt__(self, other: Any) -> Tensor:
        return Tensor(self.data > _lift(other, self).data)

    def __ge__(self, other: Any) -> Tensor:
        return Tensor(self.data >= _lift(other, self).data)

    # ----------------------------------------------------------------- matmul

    def __matmul__(self, other: Any) -> Tensor:
        a, b = self, _lift(other, self)
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(
                f"matmul: both operands need at least 1 dimension, got shapes {a.shape} and "
                f"{b.shape}; use * for scaling"
            )
        k_a = a.shape[-1]
        k_b = b.shape[-2] if b.ndim > 1 else b.shape[0]
        if k_a != k_b:
            raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align: {k_a} != {k_b}")
        try:
            data = a.data @ b.data
        except ValueError:
            raise ValueError(
                f"matmul: batch dimensions of shapes {a.shape} and {b.shape} cannot be "
                "broadcast together"
            ) from None

        def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
            # Promote 1-D operands to matrices as matmul does, so one rule covers all cases.
            A = a.data[None, :] if a.data.ndim == 1 else a.data  # (..., n, k)
            B = b.data[:, None] if b.data.ndim == 1 else b.data  # (..., k, m)
            G = g
            if b.data.ndim == 1:
                G = np.expand_dims(G, -1)
            if a.data.ndim == 1:
                G = np.expand_dims(G, -2)  # G: (..., n, m)
            ga = gb = None
            if a.requires_grad:
                ga = _unbroadcast(G @ np.swapaxes(B, -1, -2), A.shape).reshape(a.data.shape)
            if b.requires_grad:
                gb = _unbroadcast(np.swapaxes(A, -1, -2) @ G, B.shape).reshape(b.data.shape)
            return ga, gb

        return _make(data, (a, b), backward, "matmul")

    def __rmatmul__(self, other: Any) -> Tensor:
        return _lift(other, self).__matmul__(self)

    def matmul(self, other: Any) -> Tensor:
        return self.__matmul__(other)

    # ----------------------------------------------------------------- reductions

    def sum(
        self,
        axis: int | Sequence[int] | None = None,
        keepdims: bool = False,
        *,
        dim: int | Sequence[int] | None = None,
        keepdim: bool | None = None,
    ) -> Tensor:
        """Sum over ``axis`` (all axes when None)."""
        axes = _axes(_pick(axis, dim), self.ndim, "sum")
        keep = keepdims if keepdim is None else keepdim
        data = self.data.sum(axis=axes, keepdims=keep)
        shape = self.data.shape

        def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
            if not keep and axes is not None:
                g = np.expand_dims(g, axes)
            return (np.broadcast_to(g, shape),)

        return _make(np.asarray(data), (self,), backward, "sum")

    def mean(
        self,
        axis: int | Sequence[int] | None = None,
        keepdims: bool = False,
        *,
        dim: int | Sequence[int] | None = None,
        keepdim: bool | None = None,
    ) -> Tensor:
        """Mean over ``axis`` (all axes when None)."""
        axes = _axes(_pick(axis, dim), self.ndim, "mean")
        keep = keepdims if keepdim is None else keepdim
        n = self.data.size if axes is None else math.prod(self.data.shape[i] for i in axes)
        data = self.data.mean(axis=axes, keepdims=keep)
        shape = self.data.shape
        scale = 1.0 / n if n else math.nan

        def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
            if not keep and axes is not None:
                g = np.expand_dims(g, axes)
            return (np.broadcast_to(g * scale, shape),)

        return _make(np.asarray(data), (self,), backward, "mean")

    def max(
        self,
        axis: int | Sequence[int] | None = None,
        keepdims: bool = False,
        *,
        dim: int | Sequence[int] | None = None,
        keepdim: bool | None = None,
    ) -> Tensor:
        """Largest value over ``axis`` (all axes when None), as ``torch.amax``.

        The gradient goes to the maximal element; when several elements tie for the maximum
        it is split evenly among them (``torch.amax`` semantics; ``torch.max(dim)`` would
        instead pick one index).
        """
        return self._extreme(_pick(axis, dim), keepdims if keepdim is None else keepdim, "max")

    def min(
        self,
        axis: int | Sequence[int] | None = None,
        keepdims: bool = False,
        *,
        dim: int | Sequence[int] | None = None,
        keepdim: bool | None = None,
    ) -> Tensor:
        """Smallest value over ``axis``, as ``torch.amin`` (ties share the gradient evenly)."""
        return self._extreme(_pick(axis, dim), keepdims if keepdim is None else keepdim, "min")

    amax = max
    amin = min

    def _extreme(self, axis: Any, keep: bool, op: str) -> Tensor:
        axes = _axes(axis, self.ndim, op)
        if self.data.size == 0:
            raise ValueError(f"{op}: cannot reduce an empty tensor of shape {self.shape}")
        reduce = np.max if op == "max" else np.min
        kept = reduce(self.data, axis=axes, keepdims=True)
        data = kept if keep else (kept.reshape(()) if axes is None else np.squeeze(kept, axes))
        x = self.data

        def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
            if not keep:
                g = g.reshape(kept.shape)
            hit = x == kept
            count = hit.sum(axis=axes, keepdims=True)
            return (hit * (g / count),)

        return _make(np.asarray(data), (self,), backward, op)

    # ----------------------------------------------------------------- shape ops

    def reshape(self, *shape: int | Sequence[int]) -> Tensor:
        """Same data, new shape (one entry may be -1). ``t.reshape(2, 3)`` or ``((2, 3))``."""
        new = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        try:
            data = self.data.reshape(new)
        except ValueError:
            raise ValueError(
                f"reshape: cannot reshape a tensor of shape {self.shape} "
                f"({self.data.size} elements) into {tuple(new)}"
            ) from None
        old = self.data.shape
        return _make(data, (self,), lambda g: (g.reshape(old),), "reshape")

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        """Merge dimensions ``start_dim..end_dim`` into one (as ``torch.flatten``)."""
        if self.ndim == 0:
            return self.reshape(1)
        s = _axis(start_dim, self.ndim, "flatten")
        e = _axis(end_dim, self.ndim, "flatten")
        shape = self.shape
        return self.reshape(shape[:s] + (-1,) + shape[e + 1 :])

    def unsqueeze(self, axis: int) -> Tensor:
        """Insert a dimension of size 1 at ``axis``."""
        a = axis if axis >= 0 else axis + self.ndim + 1
        return self.reshape(self.shape[:a] + (1,) + self.shape[a:])

    def squeeze(self, axis: int | Sequence[int] | None = None) -> Tensor:
        """Drop dimensions of size 1 (only ``axis`` when given)."""
        axes = _axes(axis, self.ndim, "squeeze")
        if axes is None:
            axes = tuple(i for i, n in enumerate(self.shape) if n == 1)
        for i in axes:
            if self.shape[i] != 1:
                raise ValueError(
                    f"squeeze: axis {i} of shape {self.shape} has size {self.shape[i]}, not 1"
                )
        return self.reshape(tuple(n for i, n in enumerate(self.shape) if i not in axes))

    def transpose(self, axis0: int = -2, axis1: int = -1) -> Tensor:
        """Swap two axes (the last two by default)."""
        if self.ndim < 2 and (axis0, axis1) == (-2, -1):
            return self
        a0 = _axis(axis0, self.ndim, "transpose")
        a1 = _axis(axis1, self.ndim, "transpose")
        return _make(
            np.swapaxes(self.data, a0, a1),
            (self,),
            lambda g: (np.swapaxes(g, a0, a1),),
            "transpose",
        )

    def permute(self, *dims: int | Sequence[int]) -> Tensor:
        """Reorder axes: ``t.permute(2, 0, 1)`` makes old axis 2 the new axis 0."""
        order = tuple(dims[0]) if len(dims) == 1 and not isinstance(dims[0], int) else dims
        n = self.ndim
        if (
            len(order) != n
            or any(not -n <= d < n for d in order)
            or sorted(int(d) % n for d in order) != list(range(n))
        ):
            raise ValueError(
                f"permute: {tuple(order)} is not a permutation of the {self.ndim} axes of a "
                f"tensor of shape {self.shape}"
            )
        perm = tuple(int(d) % self.ndim for d in order)
        inverse = tuple(np.argsort(perm))
        return _make(
            np.transpose(self.data, perm),
            (self,),
            lambda g: (np.transpose(g, inverse),),
            "permute",
        )

    @property
    def T(self) -> Tensor:  # noqa: N802
        """All axes reversed (the matrix transpose for 2-D tensors)."""
        return self.permute(tuple(range(self.ndim - 1, -1, -1)))

    def expand(self, *shape: int | Sequence[int]) -> Tensor:
        """Broadcast to ``shape`` (the gradient sums back over the broadcast axes)."""
        new = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
        old_padded = (1,) * (len(new) - self.ndim) + self.shape
        new = tuple(o if n == -1 else n for n, o in zip(new, old_padded))
        try:
            data = np.broadcast_to(self.data, new)
        except ValueError:
            raise ValueError(f"expand: cannot broadcast shape {self.shape} to {new}") from None
        old = self.data.shape
        return _make(data, (self,), lambda g: (_unbroadcast(g, old),), "expand")

    def __getitem__(self, index: Any) -> Tensor:
        """Basic slicing and NumPy advanced (integer / boolean array) indexing.

        Repeated indices receive the sum of their gradients (``np.add.at``).
        """
        idx = _plain_index(index)
        data = self.data[idx]
        shape, dtype = self.data.shape, self.data.dtype
        basic = _is_basic(idx)

        def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
            out = np.zeros(shape, dtype=dtype)
            if basic:
                out[idx] = g  # a basic index addresses each element at most once
            else:
                np.add.at(out, idx, g)
            return (out,)

        return _make(np.asarray(data), (self,), backward, "index")

    def gather(self, dim: int, index: Any) -> Tensor:
        """``out[i][j][k] = self[index[i][j][k]][j][k]`` for ``dim=0`` (as ``torch.gather``).

        ``index`` has as many dimensions as ``self``; away from ``dim`` it may be smaller.
        Example: picking each row's target logit, ``logits.gather(1, targets[:, None])``.
        """
        ax = _axis(dim, self.ndim, "gather")
        ind = np.asarray(index.data if isinstance(index, Tensor) else index)
        if ind.dtype.kind not in "iu":
            raise TypeError(f"gather: index must be an integer array, got dtype {ind.dtype}")
        if ind.ndim != self.ndim or any(
            i != ax and ind.shape[i] > self.shape[i] for i in range(self.ndim)
        ):
            raise ValueError(
                f"gather: index of shape {ind.shape} does not fit input of shape {self.shape} "
                f"along dim {ax} (same number of dimensions, no larger away from dim)"
            )
        n = self.shape[ax]
        if ind.size and (ind.min() < -n or ind.max() >= n):
            raise IndexError(f"gather: index out of range for dim {ax} of size {n}")
        full = list(np.ogrid[tuple(slice(s) for s in ind.shape)])
        full[ax] = ind
        idx = tuple(full)
        shape, dtype = self.data.shape, self.data.dtype

        def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
            out = np.zeros(shape, dtype=dtype)
            np.add.at(out, idx, g)
            return (out,)

        return _make(self.data[idx], (self,), backward, "gather")

    # ----------------------------------------------------------------- elementwise

    def exp(self) -> Tensor:
        data = np.exp(self.data)
        return _make(data, (self,), lambda g: (g * data,), "exp")

    def log(self) -> Tensor:
        """Natural logarithm (-inf at 0 and NaN below, as in torch)."""
        x = self.data
        with np.errstate(divide="ignore", invalid="ignore"):
            data = np.log(x)
        return _make(data, (self,), lambda g: (g / x,), "log")

    def sqrt(self) -> Tensor:
        data = np.sqrt(self.data)
        return _make(data, (self,), lambda g: (g * 0.5 / data,), "sqrt")

    def abs(self) -> Tensor:
        x = self.data
        return _make(np.abs(x), (self,), lambda g: (g * np.sign(x),), "abs")

    def relu(self) -> Tensor:
        x = self.data
        # The gradient at exactly 0 is 0, as in torch.
        return _make(np.maximum(x, 0), (self,), lambda g: (g * (x > 0),), "relu")

    def tanh(self) -> Tensor:
        data = np.tanh(self.data)
        return _make(data, (self,), lambda g: (g * (1 - data * data),), "tanh")

    def sigmoid(self) -> Tensor:
        x = self.data
        # 1/(1+e^-x) overflows e^-x for very negative x; 0.5·(1+tanh(x/2)) is the same
        # function and stable everywhere.
        data = 0.5 * (1 + np.tanh(0.5 * x))
        return _make(data, (self,), lambda g: (g * data * (1 - data),), "sigmoid")

    def gelu(self, approximate: str = "none") -> Tensor:
        """Gaussian error linear unit: ``x · Φ(x)``.

        Args:
            approximate: ``"none"`` for the exact form with the error function, ``"tanh"`` for
                the tanh approximation used by GPT-2 (same names as ``torch.nn.functional.gelu``).
        """
        x = self.data
        if approximate == "tanh":
            inner = _SQRT_2_OVER_PI * (x + 0.044715 * (x * x * x))
            t = np.tanh(inner)
            data = 0.5 * x * (1 + t)

            def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
                d_inner = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
                return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * d_inner),)

        elif approximate == "none":
            cdf = (0.5 * (1 + erf(x * _INV_SQRT_2))).astype(x.dtype, copy=False)
            data = x * cdf

            def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
                pdf = _INV_SQRT_2PI * np.exp(-0.5 * x * x)
                return (g * (cdf + x * pdf),)

        else:
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        return _make(data.astype(x.dtype, copy=False), (self,), backward, "gelu")

    def softmax(self, axis: int = -1, *, dim: int | None = None) -> Tensor:
        """``exp(x) / sum(exp(x))`` along ``axis``, computed after subtracting the max."""
        ax = _axis(_pick(axis, dim), self.ndim, "softmax")
        data = self.data - self.data.max(axis=ax, keepdims=True)
        np.exp(data, out=data)  # in place: one buffer for the whole forward
        data /= data.sum(axis=ax, keepdims=True)

        def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
            # Jacobian-vector product of softmax: s ⊙ (g − <g, s>)
            gs = g * data
            dot = gs.sum(axis=ax, keepdims=True)
            np.subtract(gs, data * dot, out=gs)
            return (gs,)

        return _make(data, (self,), backward, "softmax")

    def log_softmax(self, axis: int = -1, *, dim: int | None = None) -> Tensor:
        """``x − logsumexp(x)`` along ``axis``; stable for large logits."""
        ax = _axis(_pick(axis, dim), self.ndim, "log_softmax")
        data = self.data - self.data.max(axis=ax, keepdims=True)
        data -= np.log(np.exp(data).sum(axis=ax, keepdims=True))

        def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
            sm = np.exp(data)
            sm *= g.sum(axis=ax, keepdims=True)
            np.subtract(g, sm, out=sm)
            return (sm,)

        return _make(data, (self,), backward, "log_softmax")


# --------------------------------------------------------------------------- graph walk


def _topological_order(root: Tensor) -> list[Tensor]:
    """Nodes that require grad, each after all of its inputs; iterative depth-first search."""
    order: list[Tensor] = []
    seen: set[int] = set()
    stack: list[tuple[Tensor, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for p in node._parents:
            if p.requires_grad and id(p) not in seen:
                stack.append((p, False))
    return order


# --------------------------------------------------------------------------- indexing helpers


def _plain_index(index: Any) -> Any:
    """Replace Tensors inside an index by their arrays."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    if isinstance(index, list):
        return np.asarray(index)
    return index


def _is_basic(index: Any) -> bool:
    """True when an index is made only of ints, slices, None and Ellipsis (no arrays)."""
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, np.integer, slice)) or i is None or i is Ellipsis for i in items)


# --------------------------------------------------------------------------- joining


def cat(tensors: Sequence[Tensor], axis: int = 0, *, dim: int | None = None) -> Tensor:
    """Join tensors along an existing axis (as ``torch.cat``)."""
    ts = list(tensors)
    if not ts:
        raise ValueError("cat: needs at least one tensor")
    ts = [t if isinstance(t, Tensor) else Tensor(t) for t in ts]
    ax = _axis(_pick(axis, dim), ts[0].ndim, "cat")
    first = ts[0].shape
    for t in ts[1:]:
        if t.ndim != len(first) or any(
            i != ax and a != b for i, (a, b) in enumerate(zip(first, t.shape))
        ):
            raise ValueError(f"cat: shapes {first} and {t.shape} must match except along axis {ax}")
    data = np.concatenate([t.data for t in ts], axis=ax)
    bounds = np.cumsum([t.shape[ax] for t in ts])[:-1]

    def backward(g: np.ndarray) -> tuple[np.ndarray | None, ...]:
        return tuple(np.split(g, bounds, axis=ax))

    return _make(data, tuple(ts), backward, "cat")


concatenate = cat


def stack(tensors: Sequence[Tensor], axis: int = 0, *, dim: int | None = None) -> Tensor:
    """Join same-shape tensors along a new axis (as ``torch.stack``)."""
    ts = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    if not ts:
        raise ValueError("stack: needs at least one tensor")
    for t in ts[1:]:
        if t.shape != ts[0].shape:
            raise ValueError(f"stack: shapes {ts[0].shape} and {t.shape} must be equal")
    a = _pick(axis, dim)
    ax = a if a >= 0 else a + ts[0].ndim + 1
    if not 0 <= ax <= ts[0].ndim:
        raise ValueError(f"stack: axis {a} is out of range for {ts[0].ndim + 1} dimensions")
    return cat([t.unsqueeze(ax) for t in ts], axis=ax)
