"""The scalar Value engine against float64 PyTorch: every op's value and gradient, composite
expressions, a 100,000-op chain, multi-use nodes and the error messages."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from scratchllm.autograd import Value

SETTINGS = settings(max_examples=40, deadline=None)
ANY = st.floats(-4, 4, allow_nan=False)
AWAY_FROM_0 = st.one_of(st.floats(-4, -0.1), st.floats(0.1, 4))
POSITIVE = st.floats(0.1, 4)


def close(a: float, b: float, tol: float = 1e-12) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def run_both(fn, *xs: float):
    """fn on Values and on float64 torch scalars: (our out, our grads, torch out, torch grads)."""
    vs = [Value(x) for x in xs]
    out = fn(*vs)
    out.backward()
    ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    tout = fn(*ts)
    tout.backward()
    tgrads = [0.0 if t.grad is None else t.grad.item() for t in ts]
    return out.data, [v.grad for v in vs], tout.item(), tgrads


def assert_matches_torch(fn, *xs: float, tol: float = 1e-12) -> None:
    ours, grads, theirs, tgrads = run_both(fn, *xs)
    assert close(ours, theirs, tol), (ours, theirs)
    for g, tg in zip(grads, tgrads):
        assert close(g, tg, tol), (grads, tgrads)


BINARY = {
    "a + b": (lambda a, b: a + b, ANY, ANY),
    "a - b": (lambda a, b: a - b, ANY, ANY),
    "a * b": (lambda a, b: a * b, ANY, ANY),
    "a / b": (lambda a, b: a / b, ANY, AWAY_FROM_0),
}


@pytest.mark.parametrize("name", list(BINARY))
@SETTINGS
@given(data=st.data())
def test_binary_ops_match_torch(name, data):
    fn, ea, eb = BINARY[name]
    assert_matches_torch(fn, data.draw(ea), data.draw(eb))


UNARY = {
    "x + 2.5": (lambda x: x + 2.5, ANY),
    "2.5 + x": (lambda x: 2.5 + x, ANY),
    "x - 1.5": (lambda x: x - 1.5, ANY),
    "1.5 - x": (lambda x: 1.5 - x, ANY),
    "x * -3": (lambda x: x * -3, ANY),
    "-3 * x": (lambda x: -3 * x, ANY),
    "x / 4": (lambda x: x / 4, ANY),
    "4 / x": (lambda x: 4 / x, AWAY_FROM_0),
    "x ** 2": (lambda x: x**2, ANY),
    "x ** 3": (lambda x: x**3, ANY),
    "x ** -2": (lambda x: x**-2, AWAY_FROM_0),
    "x ** 0.5": (lambda x: x**0.5, POSITIVE),
    "x ** -1.5": (lambda x: x**-1.5, POSITIVE),
    "2 ** x": (lambda x: 2**x, ANY),
    "-x": (lambda x: -x, ANY),
    "relu": (lambda x: x.relu(), AWAY_FROM_0),
    "tanh": (lambda x: x.tanh(), ANY),
    "exp": (lambda x: x.exp(), ANY),
    "log": (lambda x: x.log(), POSITIVE),
    "sigmoid": (lambda x: x.sigmoid(), ANY),
}


@pytest.mark.parametrize("name", list(UNARY))
@SETTINGS
@given(data=st.data())
def test_unary_ops_match_torch(name, data):
    fn, elements = UNARY[name]
    assert_matches_torch(fn, data.draw(elements))


def test_relu_gradient_at_zero_is_zero_like_torch():
    assert_matches_torch(lambda x: x.relu(), 0.0)


def micrograd_expression(a, b):
    """A composite with every op, several reuses and both operand orders."""
    c = a + b
    d = a * b + b**3
    c = c + c + 1
    c = c + 1 + c + (-a)
    d = d + d * 2 + (b + a).relu()
    d = d + 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g = g + 10.0 / f
    h = (g * 1e-3).tanh() + (a * 0.1).exp() + (b * b + 1).log() + (1 - a * 0.1) / 3
    return h


@SETTINGS
@given(a=st.floats(-3, 3), b=st.floats(-3, 3))
def test_composite_expression_matches_torch(a, b):
    # keep away from the relu kinks; e = c - d vanishing would make 10 / f blow up
    assume(abs(a + b) > 1e-3 and abs(b - a) > 1e-3)
    try:
        value = micrograd_expression(Value(a), Value(b)).data
    except ZeroDivisionError:  # e = c - d exactly 0: torch would give inf, nothing to compare
        assume(False)
    assume(abs(value) < 1e9)
    # Both engines sum a reused node's gradient contributions in their own order, and near
    # f = 0 the 10 / f term amplifies that rounding: 1e-12 failed once at a relative 2e-11.
    assert_matches_torch(micrograd_expression, a, b, tol=1e-9)


def test_node_used_several_times_gets_the_sum_of_its_gradients():
    a = Value(3.0)
    b = a * a * a  # three uses through two multiplications: d/da = 3a²
    b.backward()
    assert a.grad == 27.0
    x = Value(-2.0)
    y = x + x + x + x
    y.backward()
    assert x.grad == 4.0


def test_chain_of_100k_ops_backpropagates_without_recursion_error():
    x = Value(0.5)
    y = x
    for _ in range(50_000):
        y = y * 1.0 + 0.0  # two ops per step: 100,000 operations
    y.backward()
    assert x.grad == 1.0
    assert y.data == 0.5


def test_leaf_gradients_accumulate_but_intermediate_ones_do_not():
    a, b = Value(2.0), Value(-3.0)
    c = a * b
    c.backward()
    c.backward()
    # leaves accumulate like torch's .grad (2 * b), the intermediate c restarts at 1 each time
    assert a.grad == -6.0 and b.grad == 4.0 and c.grad == 1.0
    a.zero_grad()
    assert a.grad == 0.0


def test_repr_shows_data_and_grad():
    v = Value(1.5)
    assert repr(v) == "Value(data=1.5, grad=0)"


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"log\(-1.0\).*positive"):
        Value(-1.0).log()
    with pytest.raises(TypeError, match="constant"):
        Value(2.0) ** Value(3.0)
    with pytest.raises(ValueError, match="negative base"):
        Value(-2.0) ** 0.5
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        Value(1.0) / 0
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        1.0 / Value(0.0)
    with pytest.raises(ValueError, match="positive"):
        (-2) ** Value(1.0)
    with pytest.raises(OverflowError, match="exp"):
        Value(1000.0).exp()
    with pytest.raises(TypeError, match="Value"):
        Value(Value(1.0))
