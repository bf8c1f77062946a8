"""A scalar with reverse-mode automatic differentiation (the micrograd idea).

Each operation returns a new ``Value`` that remembers its inputs and a small function
that pushes the output's gradient to them (the chain rule, one local derivative at a time).
``backward()`` orders the graph so that every node comes after everything it depends on,
then runs those functions from the output back to the leaves.

    >>> a = Value(2.0)
    >>> b = Value(-3.0)
    >>> c = a * b + a ** 2       # a is used twice: its gradient is the sum of both paths
    >>> c.backward()
    >>> c.data, a.grad, b.grad   # dc/da = b + 2a, dc/db = a
    (-2.0, 1.0, 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["Value"]

Number = int | float


class Value:
    """A float that records how it was computed, so it can be differentiated.

    Attributes:
        data: the number.
        grad: d(output)/d(self) after ``output.backward()``; accumulates across calls.
    """

    __slots__ = ("data", "grad", "_parents", "_backward", "_op")

    def __init__(self, data: Number, _parents: tuple[Value, ...] = (), _op: str = "") -> None:
        if isinstance(data, Value):
            raise TypeError("Value(Value(...)): pass the number, e.g. Value(v.data)")
        self.data = float(data)
        self.grad = 0.0
        self._parents = _parents
        self._backward: Callable[[], None] | None = None
        self._op = _op

    def __repr__(self) -> str:
        return f"Value(data={self.data:.6g}, grad={self.grad:.6g})"

    # ------------------------------------------------------------------ arithmetic

    def __add__(self, other: Value | Number) -> Value:
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other), "+")

        def backward() -> None:
            self.grad += out.grad
            other.grad += out.grad

        out._backward = backward
        return out

    def __mul__(self, other: Value | Number) -> Value:
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def backward() -> None:
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad

        out._backward = backward
        return out

    def __pow__(self, exponent: Number) -> Value:
        if isinstance(exponent, Value):
            raise TypeError(
                "Value ** Value is not supported: the exponent must be a constant int or float "
                "(for a variable exponent write (b * a.log()).exp())"
            )
        if self.data == 0 and exponent < 0:
            raise ZeroDivisionError(f"0.0 ** {exponent}: zero to a negative power")
        if self.data < 0 and not float(exponent).is_integer():
            raise ValueError(
                f"{self.data} ** {exponent}: a negative base needs an integer exponent"
            )
        out = Value(self.data**exponent, (self,), f"**{exponent}")

        def backward() -> None:
            self.grad += exponent * self.data ** (exponent - 1) * out.grad

        out._backward = backward
        return out

    def __rpow__(self, base: Number) -> Value:
        """``base ** v`` for a constant positive base: d/dv = base**v · ln(base)."""
        if base <= 0:
            raise ValueError(f"{base} ** Value: the constant base must be positive")
        out = Value(base**self.data, (self,), "rpow")

        def backward() -> None:
            self.grad += out.data * math.log(base) * out.grad

        out._backward = backward
        return out

    def __neg__(self) -> Value:
        return self * -1

    def __radd__(self, other: Number) -> Value:
        return self + other

    def __sub__(self, other: Value | Number) -> Value:
        return self + (-other)

    def __rsub__(self, other: Number) -> Value:
        return other + (-self)

    def __rmul__(self, other: Number) -> Value:
        return self * other

    def __truediv__(self, other: Value | Number) -> Value:
        if (other.data if isinstance(other, Value) else other) == 0:
            raise ZeroDivisionError(f"{self.data} / 0: division by zero")
        return self * other**-1

    def __rtruediv__(self, other: Number) -> Value:
        if self.data == 0:
            raise ZeroDivisionError(f"{other} / Value(0.0): division by zero")
        return other * self**-1

    # ------------------------------------------------------------------ functions

    def relu(self) -> Value:
        out = Value(self.data if self.data > 0 else 0.0, (self,), "relu")

        def backward() -> None:
            # The derivative at exactly 0 is taken as 0, as in PyTorch.
            self.grad += (self.data > 0) * out.grad

        out._backward = backward
        return out

    def tanh(self) -> Value:
        t = math.tanh(self.data)
        out = Value(t, (self,), "tanh")

        def backward() -> None:
            self.grad += (1 - t * t) * out.grad

        out._backward = backward
        return out

    def exp(self) -> Value:
        try:
            e = math.exp(self.data)
        except OverflowError:
            raise OverflowError(f"exp({self.data}) overflows a float") from None
        out = Value(e, (self,), "exp")

        def backward() -> None:
            self.grad += e * out.grad

        out._backward = backward
        return out

    def log(self) -> Value:
        if self.data <= 0:
            raise ValueError(f"log({self.data}): the input must be positive")
        out = Value(math.log(self.data), (self,), "log")

        def backward() -> None:
            self.grad += out.grad / self.data

        out._backward = backward
        return out

    def sigmoid(self) -> Value:
        s = 0.5 * (1 + math.tanh(0.5 * self.data))  # stable for large |x|
        out = Value(s, (self,), "sigmoid")

        def backward() -> None:
            self.grad += s * (1 - s) * out.grad

        out._backward = backward
        return out

    # ------------------------------------------------------------------ backward

    def backward(self) -> None:
        """Set d(self)/d(node) into ``node.grad`` for every node this value depends on.

        Gradients accumulate: call ``zero_grad`` on the leaves (or set ``.grad = 0``)
        between steps. The graph is ordered without recursion, so chains of any length work.
        """
        order: list[Value] = []
        seen: set[int] = set()
        stack: list[tuple[Value, bool]] = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)  # all of node's inputs are already in `order`
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((p, False) for p in node._parents if id(p) not in seen)

        # Intermediate nodes start from zero on every call (their gradient is for this
        # output only); leaves keep accumulating, as PyTorch's .grad does.
        for node in order:
            if node._parents:
                node.grad = 0.0
        self.grad += 1.0
        for node in reversed(order):
            if node._backward is not None:
                node._backward()

    def zero_grad(self) -> None:
        self.grad = 0.0
