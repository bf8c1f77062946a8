"""The NumPy Tensor engine against float64 PyTorch (values and gradients) and against
central finite differences, for every op; plus the engine's bookkeeping and its errors."""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import numpy.testing as npt
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import scratchllm.autograd.functional as F
from scratchllm.autograd import Tensor, cat, enable_grad, no_grad, stack
from scratchllm.autograd.tensor import erf

TF = torch.nn.functional
SETTINGS = settings(max_examples=15, deadline=None)

# Values bounded away from kinks and poles, so finite differences are meaningful.
ANY = st.floats(-3, 3, allow_nan=False, width=64)
AWAY_FROM_0 = st.one_of(st.floats(-3, -0.2), st.floats(0.2, 3))
POSITIVE = st.floats(0.2, 3)
SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


def arrays(shape, elements=ANY):
    return hnp.arrays(np.float64, shape, elements=elements)


def numeric_grad(fn, arrays_, i, eps=1e-6):
    """Central differences of the scalar fn(*arrays_) with respect to arrays_[i]."""
    base = [a.copy() for a in arrays_]
    x = base[i]
    grad = np.zeros_like(x)
    for j in np.ndindex(x.shape):
        old = x[j]
        x[j] = old + eps
        hi = fn(*base)
        x[j] = old - eps
        lo = fn(*base)
        x[j] = old
        grad[j] = (hi - lo) / (2 * eps)
    return grad


def check(ours, theirs, *arrays_, fd=True, rtol=1e-9, atol=1e-11):
    """Run ``ours`` on Tensors and ``theirs`` on float64 torch tensors: same values, same
    gradients for a random upstream gradient, and (if ``fd``) gradients equal to finite
    differences of sum(ours(x) * G)."""
    xs = [Tensor(a.copy(), requires_grad=True) for a in arrays_]
    ts = [torch.tensor(a, requires_grad=True) for a in arrays_]
    out, tout = ours(*xs), theirs(*ts)
    ref = tout.detach().numpy()
    assert out.shape == ref.shape
    assert out.dtype == np.float64
    npt.assert_allclose(out.data, ref, rtol=rtol, atol=atol)
    G = np.random.default_rng(0).standard_normal(out.shape)
    out.backward(G)
    tout.backward(torch.tensor(G))
    for x, t in zip(xs, ts):
        tg = np.zeros_like(x.data) if t.grad is None else t.grad.numpy()
        og = np.zeros_like(x.data) if x.grad is None else x.grad
        assert og.shape == x.shape
        npt.assert_allclose(og, tg, rtol=1e-8, atol=1e-10)
    if fd:
        for i, x in enumerate(xs):
            num = numeric_grad(lambda *a: float((ours(*map(Tensor, a)).data * G).sum()), arrays_, i)
            og = np.zeros_like(x.data) if x.grad is None else x.grad
            npt.assert_allclose(og, num, rtol=1e-5, atol=1e-6)


def two_broadcastable(elements_a=ANY, elements_b=ANY):
    shapes = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3)
    return shapes.flatmap(
        lambda s: st.tuples(
            arrays(s.input_shapes[0], elements_a), arrays(s.input_shapes[1], elements_b)
        )
    )


# --------------------------------------------------------------------------- arithmetic

BINARY = {
    "add": (lambda a, b: a + b, ANY, ANY),
    "sub": (lambda a, b: a - b, ANY, ANY),
    "mul": (lambda a, b: a * b, ANY, ANY),
    "div": (lambda a, b: a / b, ANY, AWAY_FROM_0),
    "pow": (lambda a, b: a**b, POSITIVE, st.floats(-2, 2)),
}


@pytest.mark.parametrize("name", list(BINARY))
@SETTINGS
@given(data=st.data())
def test_binary_ops_broadcast_like_torch(name, data):
    fn, ea, eb = BINARY[name]
    a, b = data.draw(two_broadcastable(ea, eb))
    check(fn, fn, a, b)


SCALAR = {
    "t + 2.5": (lambda t: t + 2.5, ANY),
    "2.5 + t": (lambda t: 2.5 + t, ANY),
    "t - 1.5": (lambda t: t - 1.5, ANY),
    "1.5 - t": (lambda t: 1.5 - t, ANY),
    "t * -3": (lambda t: t * -3, ANY),
    "-3 * t": (lambda t: -3 * t, ANY),
    "t / 4": (lambda t: t / 4, ANY),
    "4 / t": (lambda t: 4 / t, AWAY_FROM_0),
    "t ** 2": (lambda t: t**2, ANY),
    "t ** 3": (lambda t: t**3, ANY),
    "t ** -1.5": (lambda t: t**-1.5, POSITIVE),
    "2 ** t": (lambda t: 2**t, ANY),
    "-t": (lambda t: -t, ANY),
}


@pytest.mark.parametrize("name", list(SCALAR))
@SETTINGS
@given(data=st.data())
def test_scalar_operands_on_both_sides(name, data):
    fn, elements = SCALAR[name]
    check(fn, fn, data.draw(arrays(data.draw(SHAPES), elements)))


def test_ndarray_operand_on_the_left_uses_tensor_ops():
    a = np.arange(3.0)
    t = Tensor(np.ones(3), requires_grad=True)
    out = a * t + a  # ndarray on the left must not turn into an object array
    assert isinstance(out, Tensor)
    out.sum().backward()
    npt.assert_array_equal(t.grad, a)


# --------------------------------------------------------------------------- matmul


@SETTINGS
@given(
    batch=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3),
    nkm=st.tuples(*[st.integers(1, 4)] * 3),
    seed=st.integers(0, 2**16),
)
def test_batched_matmul_broadcasts_batch_dims(batch, nkm, seed):
    n, k, m = nkm
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(batch.input_shapes[0] + (n, k))
    b = rng.standard_normal(batch.input_shapes[1] + (k, m))
    check(lambda x, y: x @ y, lambda x, y: x @ y, a, b)


@pytest.mark.parametrize(
    "sa, sb", [((3,), (3, 2)), ((2, 3), (3,)), ((3,), (3,)), ((2, 2, 3), (3,)), ((3,), (2, 3, 4))]
)
def test_matmul_with_1d_operands(sa, sb):
    rng = np.random.default_rng(1)
    check(lambda x, y: x @ y, lambda x, y: x @ y, rng.standard_normal(sa), rng.standard_normal(sb))


# --------------------------------------------------------------------------- reductions


def axis_and_keep(ndim):
    single = st.integers(-ndim, ndim - 1)
    several = st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True).map(tuple)
    return st.tuples(st.one_of(st.none(), single, several), st.booleans())


@pytest.mark.parametrize("name", ["sum", "mean"])
@SETTINGS
@given(data=st.data())
def test_sum_and_mean_over_axes(name, data):
    x = data.draw(arrays(data.draw(SHAPES)))
    axis, keep = data.draw(axis_and_keep(x.ndim))

    def theirs(t):
        f = getattr(t, name)
        return f() if axis is None and not keep else f(dim=axis, keepdim=keep)

    check(lambda t: getattr(t, name)(axis, keepdims=keep), theirs, x)


@pytest.mark.parametrize("name", ["max", "min"])
@SETTINGS
@given(data=st.data())
def test_max_and_min_without_ties(name, data):
    shape = data.draw(SHAPES)
    # distinct values 0.1 apart: the arg-extreme is unique and stays so under finite differences
    ints = data.draw(hnp.arrays(np.int64, shape, elements=st.integers(-60, 60), unique=True))
    x = ints / 10.0
    axis, keep = data.draw(axis_and_keep(x.ndim))
    tf = torch.amax if name == "max" else torch.amin

    def theirs(t):
        return tf(t, dim=() if axis is None else axis, keepdim=keep)

    check(lambda t: getattr(t, name)(axis, keepdims=keep), theirs, x)


def test_max_splits_gradient_evenly_on_ties_like_torch_amax():
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    check(lambda t: t.max(axis=1), lambda t: torch.amax(t, dim=1), x, fd=False)
    check(lambda t: t.max(), lambda t: torch.amax(t), x, fd=False)
    t = Tensor(x, requires_grad=True)
    t.max(axis=1).sum().backward()
    npt.assert_allclose(t.grad, [[0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])


def test_torch_style_dim_keepdim_names_are_accepted():
    x = np.arange(6.0).reshape(2, 3)
    t = Tensor(x)
    npt.assert_array_equal(t.sum(dim=1, keepdim=True).data, x.sum(axis=1, keepdims=True))
    npt.assert_array_equal(t.softmax(dim=0).data, torch.tensor(x).softmax(dim=0).numpy())


# --------------------------------------------------------------------------- shape ops


@SETTINGS
@given(data=st.data())
def test_reshape_transpose_permute(data):
    x = data.draw(arrays(data.draw(SHAPES)))
    n = x.ndim
    a0, a1 = data.draw(st.integers(-n, n - 1)), data.draw(st.integers(-n, n - 1))
    perm = tuple(data.draw(st.permutations(range(n))))
    check(lambda t: t.reshape(-1), lambda t: t.reshape(-1), x)
    check(lambda t: t.reshape(1, *x.shape[::-1]), lambda t: t.reshape(1, *x.shape[::-1]), x)
    check(lambda t: t.transpose(a0, a1), lambda t: t.transpose(a0, a1), x)
    check(lambda t: t.permute(*perm), lambda t: t.permute(*perm), x)
    check(lambda t: t.flatten(), lambda t: t.flatten(), x)
    check(lambda t: t.unsqueeze(0).squeeze(0), lambda t: t.unsqueeze(0).squeeze(0), x)


def test_T_and_expand_and_squeeze():
    rng = np.random.default_rng(2)
    check(lambda t: t.T, lambda t: t.T, rng.standard_normal((2, 3)))
    check(lambda t: t.expand(2, 3, 4), lambda t: t.expand(2, 3, 4), rng.standard_normal((3, 1)))
    check(lambda t: t.squeeze(), lambda t: t.squeeze(), rng.standard_normal((1, 3, 1)))
    check(lambda t: t.squeeze(-1), lambda t: t.squeeze(-1), rng.standard_normal((1, 3, 1)))


# --------------------------------------------------------------------------- indexing


BASIC_INDEXES = [
    (slice(1, None),),
    (Ellipsis, 0),
    (slice(None), slice(None, None, 2)),
    (1, slice(0, 2), None),
    (-1,),
]


@pytest.mark.parametrize("idx", BASIC_INDEXES, ids=str)
def test_basic_indexing(idx):
    x = np.random.default_rng(3).standard_normal((3, 4, 2))
    check(lambda t: t[idx], lambda t: t[idx], x)


def test_advanced_indexing_sums_repeated_indices():
    x = np.random.default_rng(4).standard_normal((5, 3))
    rows = np.array([0, 2, 2, 4, 0, 0])
    check(lambda t: t[rows], lambda t: t[torch.tensor(rows)], x)
    cols = np.array([1, 1, 0, 2, 1, 1])
    check(lambda t: t[rows, cols], lambda t: t[torch.tensor(rows), torch.tensor(cols)], x)
    check(lambda t: t[:, [2, 2, 0]], lambda t: t[:, [2, 2, 0]], x)
    t = Tensor(x, requires_grad=True)
    t[rows].sum().backward()
    npt.assert_array_equal(t.grad[:, 0], [3, 0, 2, 0, 1])


def test_boolean_mask_indexing():
    x = np.random.default_rng(5).standard_normal((4, 3))
    mask = x > 0.1
    check(lambda t: t[mask], lambda t: t[torch.tensor(mask)], x)
    check(lambda t: t[Tensor(mask[:, 0])], lambda t: t[torch.tensor(mask[:, 0])], x)


@SETTINGS
@given(data=st.data())
def test_gather_matches_torch(data):
    shape = data.draw(SHAPES)
    x = data.draw(arrays(shape))
    dim = data.draw(st.integers(0, x.ndim - 1))
    ishape = tuple(
        data.draw(st.integers(1, 4)) if i == dim else data.draw(st.integers(1, n))
        for i, n in enumerate(shape)
    )
    index = data.draw(hnp.arrays(np.int64, ishape, elements=st.integers(0, shape[dim] - 1)))
    check(lambda t: t.gather(dim, index), lambda t: t.gather(dim, torch.tensor(index)), x)


def test_cat_and_stack():
    rng = np.random.default_rng(6)
    a, b, c = rng.standard_normal((2, 3)), rng.standard_normal((2, 1)), rng.standard_normal((2, 4))
    check(lambda *t: cat(t, axis=1), lambda *t: torch.cat(t, dim=1), a, b, c)
    check(lambda *t: F.cat(t, dim=-1), lambda *t: torch.cat(t, dim=-1), a, b, c)
    d = rng.standard_normal((2, 3))
    for ax in (0, 1, 2, -1):
        check(lambda *t, ax=ax: stack(t, axis=ax), lambda *t, ax=ax: torch.stack(t, dim=ax), a, d)


# --------------------------------------------------------------------------- elementwise

UNARY = {
    "exp": (lambda t: t.exp(), lambda t: t.exp(), ANY),
    "log": (lambda t: t.log(), lambda t: t.log(), POSITIVE),
    "sqrt": (lambda t: t.sqrt(), lambda t: t.sqrt(), POSITIVE),
    "abs": (lambda t: t.abs(), lambda t: t.abs(), AWAY_FROM_0),
    "relu": (lambda t: t.relu(), lambda t: t.relu(), AWAY_FROM_0),
    "tanh": (lambda t: t.tanh(), lambda t: t.tanh(), ANY),
    "sigmoid": (lambda t: t.sigmoid(), lambda t: t.sigmoid(), ANY),
    "gelu": (lambda t: t.gelu(), lambda t: TF.gelu(t), ANY),
    "gelu_tanh": (lambda t: t.gelu("tanh"), lambda t: TF.gelu(t, approximate="tanh"), ANY),
    "F.relu": (F.relu, TF.relu, AWAY_FROM_0),
    "F.gelu": (F.gelu, TF.gelu, ANY),
    "F.tanh": (F.tanh, torch.tanh, ANY),
    "F.sigmoid": (F.sigmoid, torch.sigmoid, ANY),
}


@pytest.mark.parametrize("name", list(UNARY))
@SETTINGS
@given(data=st.data())
def test_elementwise(name, data):
    ours, theirs, elements = UNARY[name]
    check(ours, theirs, data.draw(arrays(data.draw(SHAPES), elements)))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@SETTINGS
@given(data=st.data())
def test_softmax_and_log_softmax(name, data):
    x = data.draw(arrays(data.draw(SHAPES), st.floats(-10, 10)))
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    check(lambda t: getattr(t, name)(axis), lambda t: getattr(t, name)(dim=axis), x)
    check(lambda t: getattr(F, name)(t, axis), lambda t: getattr(TF, name)(t, dim=axis), x)


def test_softmax_and_log_softmax_are_stable_for_huge_logits():
    x = np.array([[1000.0, 0.0, -1000.0], [1e4, 1e4, 1e4]])
    check(lambda t: t.softmax(-1), lambda t: t.softmax(-1), x, fd=False)
    check(lambda t: t.log_softmax(-1), lambda t: t.log_softmax(-1), x, fd=False)


def test_relu_gradient_at_zero_is_zero_like_torch():
    check(lambda t: t.relu(), lambda t: t.relu(), np.array([-1.0, 0.0, 2.0]), fd=False)


def test_erf_matches_math_erf():
    xs = np.concatenate([np.linspace(-7, 7, 20001), [0.0, -0.0, 1e-300, 6.0, 30.0, -np.inf]])
    ref = np.array([math.erf(v) for v in xs])
    npt.assert_allclose(erf(xs), ref, rtol=0, atol=1e-14)
    assert np.isnan(erf(np.array([np.nan])))[0]
    x32 = xs[np.isfinite(xs)].astype(np.float32)
    ref32 = np.array([math.erf(v) for v in x32.astype(np.float64)])
    npt.assert_allclose(erf(x32), ref32, rtol=0, atol=1e-8)


def test_float32_stays_float32():
    x = Tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    w = Tensor(np.ones((3, 4), dtype=np.float32), requires_grad=True)
    y = ((x @ w) * 0.5 + 1).gelu().softmax(-1)
    loss = F.cross_entropy(y, np.array([0, 3]))
    assert y.dtype == np.float32 and loss.dtype == np.float32
    loss.backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32


# --------------------------------------------------------------------------- functional


@SETTINGS
@given(
    n=st.integers(1, 5),
    c=st.integers(1, 5),
    extra=st.lists(st.integers(1, 3), max_size=2),
    seed=st.integers(0, 2**16),
    reduction=st.sampled_from(["mean", "sum", "none"]),
)
def test_cross_entropy_matches_torch(n, c, extra, seed, reduction):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, c, *extra)) * 3
    targets = rng.integers(0, c, size=(n, *extra))
    targets[rng.random(targets.shape) < 0.3] = -100  # some ignored positions
    if reduction == "mean" and (targets == -100).all():
        targets.flat[0] = 0  # mean over nothing is NaN in both; tested separately
    tt = torch.tensor(targets)
    check(
        lambda t: F.cross_entropy(t, targets, reduction=reduction),
        lambda t: TF.cross_entropy(t, tt, reduction=reduction),
        logits,
    )


def test_cross_entropy_1d_custom_ignore_index_and_stability():
    check(
        lambda t: F.cross_entropy(t, np.array(2)),
        lambda t: TF.cross_entropy(t, torch.tensor(2)),
        np.array([0.5, -1.0, 2.0]),
    )
    targets = np.array([1, 7, 0])
    check(
        lambda t: F.cross_entropy(t, targets, ignore_index=7),
        lambda t: TF.cross_entropy(t, torch.tensor(targets), ignore_index=7),
        np.array([[1000.0, -1000.0], [3.0, 4.0], [-500.0, 500.0]]),
        fd=False,
    )
    all_ignored = F.cross_entropy(Tensor(np.zeros((2, 3))), np.array([-100, -100]))
    assert np.isnan(all_ignored.item())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(reduction):
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    check(
        lambda x, y: F.mse_loss(x, y, reduction=reduction),
        lambda x, y: TF.mse_loss(x, y, reduction=reduction),
        a,
        b,
    )
    # a constant target given as an array
    check(
        lambda x: F.mse_loss(x, b, reduction=reduction),
        lambda x: TF.mse_loss(x, torch.tensor(b), reduction=reduction),
        a,
    )


@SETTINGS
@given(
    lead=st.lists(st.integers(1, 3), max_size=2),
    norm=st.lists(st.integers(2, 4), min_size=1, max_size=2),
    affine=st.sampled_from(["both", "weight", "none"]),
    seed=st.integers(0, 2**16),
)
def test_layer_norm_matches_torch(lead, norm, affine, seed):
    rng = np.random.default_rng(seed)
    ns = tuple(norm)
    arrays_ = [rng.standard_normal((*lead, *ns)) * 2 + 1]
    if affine in ("both", "weight"):
        arrays_.append(rng.standard_normal(ns))
    if affine == "both":
        arrays_.append(rng.standard_normal(ns))

    check(
        lambda x, *wb: F.layer_norm(x, ns, *wb, eps=1e-5),
        lambda x, *wb: TF.layer_norm(x, ns, *wb, eps=1e-5),
        *arrays_,
        rtol=1e-8,
    )


def test_embedding_sums_gradients_of_repeated_ids():
    weight = np.random.default_rng(8).standard_normal((6, 3))
    ids = np.array([[0, 5, 5], [2, 0, 5]])
    check(
        lambda w: F.embedding(ids, w),
        lambda w: TF.embedding(torch.tensor(ids), w),
        weight,
    )
    w = Tensor(weight, requires_grad=True)
    F.embedding(Tensor(ids), w).sum().backward()
    npt.assert_array_equal(w.grad[:, 0], [2, 0, 1, 0, 0, 3])


def test_linear_matches_torch():
    rng = np.random.default_rng(9)
    x, w, b = rng.standard_normal((2, 5, 3)), rng.standard_normal((4, 3)), rng.standard_normal(4)
    check(F.linear, TF.linear, x, w, b)


def test_where_and_masked_fill_broadcast():
    rng = np.random.default_rng(10)
    cond = rng.random((3, 4)) > 0.5
    tc = torch.tensor(cond)
    a, b = rng.standard_normal((3, 1)), rng.standard_normal(4)
    check(lambda x, y: F.where(cond, x, y), lambda x, y: torch.where(tc, x, y), a, b)
    check(lambda x: F.where(cond, x, 0.0), lambda x: torch.where(tc, x, 0.0), a)
    check(lambda y: F.where(cond, 2.0, y), lambda y: torch.where(tc, 2.0, y), b)
    scores = rng.standard_normal((2, 4, 4))
    causal = np.triu(np.ones((4, 4), dtype=bool), k=1)
    check(
        lambda s: F.masked_fill(s, causal, -1e9).softmax(-1),
        lambda s: s.masked_fill(torch.tensor(causal), -1e9).softmax(-1),
        scores,
    )
    check(
        lambda s: F.masked_fill(s, causal, -np.inf).softmax(-1),
        lambda s: s.masked_fill(torch.tensor(causal), -torch.inf).softmax(-1),
        scores,
        fd=False,
    )


def test_dropout_masks_scales_and_is_reproducible():
    x = np.random.default_rng(11).standard_normal((200, 50))
    t = Tensor(x, requires_grad=True)
    out = F.dropout(t, p=0.3, rng=np.random.default_rng(0))
    kept = out.data != 0
    assert abs(kept.mean() - 0.7) < 0.02  # 10,000 draws: std of the mean is 0.005
    npt.assert_allclose(out.data[kept], x[kept] / 0.7)
    same = F.dropout(Tensor(x), p=0.3, rng=np.random.default_rng(0))
    npt.assert_array_equal(same.data, out.data)
    G = np.random.default_rng(1).standard_normal(x.shape)
    out.backward(G)
    npt.assert_allclose(t.grad, np.where(kept, G / 0.7, 0.0))
    # evaluation mode and p=0 are the identity; p=1 zeroes everything
    assert F.dropout(t, p=0.3, training=False) is t
    assert F.dropout(t, p=0.0) is t
    assert not F.dropout(t, p=1.0, rng=0).data.any()


# --------------------------------------------------------------------------- engine


def test_multi_use_node_receives_the_sum_of_gradients():
    x = np.array([0.5, -1.0, 2.0])
    check(lambda t: t * t + t.exp() * t - t, lambda t: t * t + t.exp() * t - t, x)
    t = Tensor(x, requires_grad=True)
    y = t * 3
    (y + y + y).sum().backward()  # y used three times
    npt.assert_array_equal(t.grad, [9.0, 9.0, 9.0])


def test_grad_accumulates_across_backward_calls_and_zero_grad_resets():
    w = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (w * w).sum().backward()
    (w * w).sum().backward()
    npt.assert_array_equal(w.grad, [4.0, 8.0])  # 2 * 2w
    w.zero_grad()
    assert w.grad is None
    (w * 3).sum().backward()
    npt.assert_array_equal(w.grad, [3.0, 3.0])


def test_shared_upstream_gradient_is_not_aliased_between_leaves():
    a = Tensor(np.zeros(3), requires_grad=True)
    b = Tensor(np.zeros(3), requires_grad=True)
    (a + b).sum().backward()
    a.grad += 1  # an optimizer writing in place must not change b.grad
    npt.assert_array_equal(b.grad, [1.0, 1.0, 1.0])
    assert a.grad.flags.writeable and b.grad.flags.writeable


def test_deep_chain_backpropagates_without_recursion():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = x
    for _ in range(30_000):  # far beyond Python's recursion limit (1,000)
        y = y + 1.0
    y.sum().backward()
    npt.assert_array_equal(x.grad, [1.0, 1.0])


def test_no_grad_detach_and_retain_grad():
    w = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        y = w * 2
        with enable_grad():
            z = w * 2
    assert not y.requires_grad and z.requires_grad
    assert (w * 2).requires_grad

    @no_grad()
    def frozen(t):
        return t * 2

    assert not frozen(w).requires_grad
    d = (w * 2).detach()
    assert not d.requires_grad and d.is_leaf
    h = (w * 2).retain_grad()
    (h * h).sum().backward()
    npt.assert_array_equal(h.grad, [4.0, 4.0, 4.0])
    npt.assert_array_equal(w.grad, [8.0, 8.0, 8.0])


def test_item_shape_ndim_and_constants_get_no_grad():
    t = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    c = Tensor(np.ones(3))
    (t * c).sum().backward()
    assert c.grad is None and t.grad is not None
    assert t.shape == (2, 3) and t.ndim == 2 and t.numel() == 6 and len(t) == 2
    assert t.sum().item() == 15.0 and isinstance(t.sum().item(), float)


def test_ndarray_matmul_on_the_left_and_method_forms():
    rng = np.random.default_rng(12)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    w = Tensor(b, requires_grad=True)
    out = a @ w  # ndarray @ Tensor goes through Tensor.__rmatmul__
    assert isinstance(out, Tensor)
    out.backward(np.ones((2, 4)))
    npt.assert_allclose(w.grad, a.T @ np.ones((2, 4)))
    npt.assert_allclose(Tensor(a).matmul(b).data, a @ b)


def test_repr_requires_grad_and_conversions():
    t = Tensor(np.array([1.0, 2.0])).requires_grad_()
    assert t.requires_grad and t.is_leaf
    y = t * 2
    assert "requires_grad=True" in repr(y) and "op=mul" in repr(y) and not y.is_leaf
    assert y.tolist() == [2.0, 4.0] and y.numpy() is y.data
    with raises(ValueError, "item()", "(2,)", "2 elements"):
        y.item()
    with raises(TypeError, "floating-point"):
        Tensor(np.arange(2)).requires_grad_()


def test_comparisons_give_masks_and_pow_zero_has_zero_gradient():
    t = Tensor(np.array([-1.0, 0.0, 2.0]), requires_grad=True)
    npt.assert_array_equal((t > 0).data, [False, False, True])
    npt.assert_array_equal((t <= 0).data, [True, True, False])
    assert not (t > 0).requires_grad
    npt.assert_array_equal(F.where(t >= 0, t, 0.0).data, [0.0, 0.0, 2.0])
    (t**0).sum().backward()
    npt.assert_array_equal(t.grad, [0.0, 0.0, 0.0])  # torch gives 0 too, not NaN at x = 0
    assert bool(Tensor(np.array([1.0])))
    with pytest.raises(ValueError):
        bool(t)
    assert t in {t} and len({t, t * 1}) == 2  # identity hashing, as optimizer state needs


# --------------------------------------------------------------------------- errors


def raises(exc, *fragments):
    class _Ctx:
        def __enter__(self):
            self.cm = pytest.raises(exc)
            self.info = self.cm.__enter__()

        def __exit__(self, *a):
            handled = self.cm.__exit__(*a)
            msg = str(self.info.value)
            for f in fragments:
                assert f in msg, f"{f!r} not in {msg!r}"
            return handled

    return _Ctx()


def test_error_messages_name_shapes_and_op():
    a, b = Tensor(np.ones((2, 3))), Tensor(np.ones((4, 5)))
    with raises(ValueError, "matmul", "(2, 3)", "(4, 5)", "3 != 4"):
        a @ b
    with raises(ValueError, "add", "(2, 3)", "(4, 5)"):
        a + b
    with raises(ValueError, "mul", "(2, 3)", "(4,)"):
        a * np.ones(4)
    with raises(ValueError, "matmul", "batch", "(2, 2, 3)", "(3, 3, 4)"):
        Tensor(np.ones((2, 2, 3))) @ Tensor(np.ones((3, 3, 4)))
    with raises(ValueError, "reshape", "(2, 3)", "(4, 2)"):
        a.reshape(4, 2)
    with raises(ValueError, "sum", "axis 2", "2 dimensions"):
        a.sum(axis=2)
    with raises(ValueError, "permute"):
        a.permute(0, 0)
    with raises(ValueError, "permute", "(0, 5)"):
        a.permute(0, 5)
    with raises(ValueError, "cat", "(2, 3)", "(4, 5)"):
        cat([a, b])


def test_backward_errors():
    t = Tensor(np.ones((3, 4)), requires_grad=True)
    y = t * 2
    with raises(ValueError, "backward() on a tensor of shape (3, 4) needs a gradient argument"):
        y.backward()
    with raises(ValueError, "grad has shape (4,)", "(3, 4)"):
        y.backward(np.ones(4))
    with raises(RuntimeError, "does not require grad"):
        Tensor(np.ones(2)).sum().backward()
    with raises(TypeError, "floating-point", "int64"):
        Tensor(np.arange(3), requires_grad=True)


def test_functional_errors():
    logits = Tensor(np.zeros((4, 3)))
    with raises(ValueError, "cross_entropy", "(4, 3)", "(4,)", "(2, 2)"):
        F.cross_entropy(logits, np.zeros((2, 2), dtype=np.int64))
    with raises(IndexError, "target 3", "3 classes"):
        F.cross_entropy(logits, np.array([0, 1, 3, 2]))
    with raises(TypeError, "integer"):
        F.cross_entropy(logits, np.zeros(4))
    with raises(ValueError, "reduction"):
        F.cross_entropy(logits, np.zeros(4, dtype=np.int64), reduction="avg")
    with raises(ValueError, "mse_loss", "(4, 1)", "(4,)"):
        F.mse_loss(Tensor(np.zeros((4, 1))), np.zeros(4))
    with raises(ValueError, "layer_norm", "(5,)", "(4, 3)"):
        F.layer_norm(logits, 5)
    with raises(ValueError, "layer_norm", "weight", "(2,)"):
        F.layer_norm(logits, 3, Tensor(np.ones(2)))
    with raises(IndexError, "id 6", "6 rows"):
        F.embedding(np.array([0, 6]), Tensor(np.zeros((6, 2))))
    with raises(ValueError, "dropout", "1.5"):
        F.dropout(logits, p=1.5)
    with raises(ValueError, "masked_fill", "(3, 4)"):
        F.masked_fill(logits, np.ones((3, 4), dtype=bool), 0.0)
    with raises(ValueError, "gelu", "'fast'"):
        logits.gelu("fast")
    with raises(IndexError, "gather"):
        logits.gather(1, np.array([[3], [0], [0], [0]]))
