"""scratchllm.autograd.optim against torch.optim, and scratchllm.autograd.nn against torch.nn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scratchllm.autograd import optim

SHAPES = [(3, 4), (4,), (), (2, 3, 2)]


class Holder:
    """The least an optimizer needs: .data and .grad arrays."""

    def __init__(self, data: np.ndarray) -> None:
        self.data = data
        self.grad: np.ndarray | None = None


def _twins(seed: int = 0, dtype=np.float64) -> tuple[list[Holder], list[torch.nn.Parameter]]:
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    ours = [Holder(a.copy()) for a in arrays]
    theirs = [torch.nn.Parameter(torch.tensor(a.copy())) for a in arrays]
    return ours, theirs


def _run_both(ours_opt, torch_opt, ours, theirs, steps=20, seed=1, skip_every=0, on_step=None):
    """Feed both optimizers the same random gradients and compare parameters after every step."""
    rng = np.random.default_rng(seed)
    for step in range(steps):
        if on_step is not None:
            on_step(step)
        for i, (p, q) in enumerate(zip(ours, theirs)):
            # Now and then a parameter gets no gradient: both libraries must skip it.
            if skip_every and i == 1 and step % skip_every == skip_every - 1:
                p.grad, q.grad = None, None
                continue
            g = rng.standard_normal(p.data.shape) * rng.uniform(0.1, 3.0)
            p.grad = g.copy()
            q.grad = torch.tensor(g.copy())
        ours_opt.step()
        torch_opt.step()
        for p, q in zip(ours, theirs):
            np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-9, atol=1e-12)


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.8, nesterov=True),
    dict(lr=0.02, momentum=0.9, weight_decay=0.1),
    dict(lr=0.02, momentum=0.5, nesterov=True, weight_decay=0.01, maximize=True),
]
ADAM_CASES = [
    dict(),
    dict(lr=0.01, betas=(0.8, 0.99)),
    dict(lr=0.003, weight_decay=0.1),
    dict(lr=0.01, eps=1e-3, amsgrad=True),
    dict(lr=0.01, betas=(0.0, 0.5), weight_decay=0.05, maximize=True),
]
ADAMW_CASES = [
    dict(),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.01, amsgrad=True, betas=(0.5, 0.9)),
]


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("SGD", k) for k in SGD_CASES]
    + [("Adam", k) for k in ADAM_CASES]
    + [("AdamW", k) for k in ADAMW_CASES],
)
def test_matches_torch_optim_for_20_steps(name, kwargs):
    ours, theirs = _twins()
    ours_opt = getattr(optim, name)(ours, **kwargs)
    torch_opt = getattr(torch.optim, name)(theirs, **kwargs, foreach=False)
    _run_both(ours_opt, torch_opt, ours, theirs, steps=20, skip_every=4)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_param_groups_and_lr_schedule_match_torch(name):
    ours, theirs = _twins(seed=3)
    extra = {"momentum": 0.9} if name == "SGD" else {}
    ours_opt = getattr(optim, name)(
        [{"params": ours[:2]}, {"params": ours[2:], "weight_decay": 0.0, "lr": 0.02}],
        lr=0.05,
        weight_decay=0.1,
        **extra,
    )
    torch_opt = getattr(torch.optim, name)(
        [{"params": theirs[:2]}, {"params": theirs[2:], "weight_decay": 0.0, "lr": 0.02}],
        lr=0.05,
        weight_decay=0.1,
        **extra,
    )

    def cosine(step: int) -> None:  # change lr between steps, torch-style, in both
        for o, t in zip(ours_opt.param_groups, torch_opt.param_groups):
            o["lr"] = t["lr"] = 0.05 * 0.5 * (1 + np.cos(np.pi * step / 20))

    _run_both(ours_opt, torch_opt, ours, theirs, steps=20, on_step=cosine)
    assert ours_opt.param_groups[1]["weight_decay"] == 0.0


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_state_dict_resumes_exactly(name):
    kwargs = {"lr": 0.05, "momentum": 0.9} if name == "SGD" else {"lr": 0.05}
    rng = np.random.default_rng(7)
    grads = [[rng.standard_normal(s) for s in SHAPES] for _ in range(10)]

    def run(params, opt, gs):
        for step_grads in gs:
            for p, g in zip(params, step_grads):
                p.grad = g.copy()
            opt.step()

    straight, _ = _twins()
    run(straight, getattr(optim, name)(straight, **kwargs), grads)

    first, _ = _twins()
    opt1 = getattr(optim, name)(first, **kwargs)
    run(first, opt1, grads[:5])
    saved = opt1.state_dict()
    second = [Holder(p.data.copy()) for p in first]
    opt2 = getattr(optim, name)(second, lr=123.0)  # the loaded state restores lr too
    opt2.load_state_dict(saved)
    run(second, opt2, grads[5:])
    for a, b in zip(straight, second):
        np.testing.assert_array_equal(a.data, b.data)


def test_zero_grad_sets_none_or_zeros():
    ours, _ = _twins()
    for p in ours:
        p.grad = np.ones_like(p.data)
    opt = optim.SGD(ours, lr=0.1)
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in ours)
    opt.zero_grad()
    assert all(p.grad is None for p in ours)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_float32_parameters_stay_float32_and_in_place(name):
    ours, _ = _twins(dtype=np.float32)
    arrays = [p.data for p in ours]
    before = [a.copy() for a in arrays]
    opt = getattr(optim, name)(ours, lr=0.1, **({"momentum": 0.9} if name == "SGD" else {}))
    for _ in range(2):
        for p in ours:
            p.grad = np.ones_like(p.data)
        opt.step()
    for p, a, b in zip(ours, arrays, before):
        assert p.data.dtype == np.float32
        assert p.data is a  # updated in place: views held elsewhere (tied weights) stay valid
        assert np.all(p.data < b)  # a positive gradient moved every entry down


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda ps: optim.SGD(ps, lr=-1.0), "lr=-1.0"),
        (lambda ps: optim.SGD(ps, lr=0.1, nesterov=True), "nesterov"),
        (lambda ps: optim.SGD(ps, lr=0.1, momentum=-0.5), "momentum=-0.5"),
        (lambda ps: optim.Adam(ps, betas=(1.0, 0.999)), "beta at index 0"),
        (lambda ps: optim.Adam(ps, eps=-1.0), "eps=-1.0"),
        (lambda ps: optim.AdamW(ps, weight_decay=-0.1), "weight_decay=-0.1"),
        (lambda ps: optim.Adam([]), "empty parameter list"),
        (lambda ps: optim.Adam([{"params": ps, "momentum": 0.9}]), "momentum"),
        (lambda ps: optim.Adam([ps[0], ps[0]]), "more than one"),
        (lambda ps: optim.Adam([np.zeros(3)]), "ndarray"),
    ],
)
def test_bad_hyperparameters_are_named(make, message):
    ours, _ = _twins()
    with pytest.raises(ValueError, match=message):
        make(ours)


def test_gradient_with_wrong_shape_is_reported():
    p = Holder(np.zeros((2, 3)))
    p.grad = np.zeros((3,))
    opt = optim.Adam([p])
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        opt.step()


# ---------------------------------------------------------------------------- nn


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from scratchllm.autograd import Tensor, nn  # noqa: E402


def _grads_match(ours: nn.Module, theirs: torch.nn.Module, atol: float = 1e-10) -> None:
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        assert p.grad is not None, name
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-9, atol=atol, err_msg=name)


@settings(max_examples=15, deadline=None)
@given(
    n_in=st.integers(1, 9),
    n_out=st.integers(1, 9),
    lead=st.lists(st.integers(1, 4), min_size=0, max_size=2),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_linear_matches_torch(n_in, n_out, lead, bias, seed):
    ours = nn.Linear(n_in, n_out, bias=bias, rng=seed, dtype=np.float64)
    theirs = torch.nn.Linear(n_in, n_out, bias=bias, dtype=torch.float64)
    with torch.no_grad():
        theirs.weight.copy_(torch.from_numpy(ours.weight.data))
        if bias:
            theirs.bias.copy_(torch.from_numpy(ours.bias.data))
    x = np.random.default_rng(seed).standard_normal((*lead, n_in))
    xo = Tensor(x.copy(), requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    yo, yt = ours(xo), theirs(xt)
    np.testing.assert_allclose(yo.data, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    w = np.random.default_rng(seed + 1).standard_normal(yo.shape)  # a random upstream gradient
    (yo * Tensor(w)).sum().backward()
    (yt * torch.from_numpy(w)).sum().backward()
    np.testing.assert_allclose(xo.grad, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    _grads_match(ours, theirs)


def test_linear_init_is_torch_default_uniform():
    layer = nn.Linear(400, 300, rng=0)
    bound = 1 / np.sqrt(400)
    w = layer.weight.data
    assert w.shape == (300, 400) and layer.bias.data.shape == (300,)
    assert w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(layer.bias.data).max() <= bound
    # U(-k, k) has standard deviation k/sqrt(3); 120,000 draws pin it to well under 1 %.
    assert abs(w.std() / (bound / np.sqrt(3)) - 1) < 0.01
    assert abs(w.mean()) < 0.01 * bound
    # Seeds make it reproducible; different seeds differ.
    np.testing.assert_array_equal(
        nn.Linear(4, 3, rng=5).weight.data, nn.Linear(4, 3, rng=5).weight.data
    )
    assert not np.array_equal(
        nn.Linear(4, 3, rng=5).weight.data, nn.Linear(4, 3, rng=6).weight.data
    )


def test_embedding_matches_torch_with_repeated_ids():
    ours = nn.Embedding(7, 5, rng=0, dtype=np.float64)
    theirs = torch.nn.Embedding(7, 5, dtype=torch.float64)
    nn.from_torch(ours, theirs)  # torch -> ours
    np.testing.assert_array_equal(ours.weight.data, theirs.weight.detach().numpy())
    ids = np.array([[0, 3, 3], [6, 0, 3]])
    yo, yt = ours(ids), theirs(torch.from_numpy(ids))
    np.testing.assert_array_equal(yo.data, yt.detach().numpy())
    w = np.random.default_rng(1).standard_normal(yo.shape)
    (yo * Tensor(w)).sum().backward()
    (yt * torch.from_numpy(w)).sum().backward()
    _grads_match(ours, theirs)
    assert ours.weight.grad[1].sum() == 0  # an unused row gets no gradient
    with pytest.raises(IndexError, match="out of range"):
        ours(np.array([7]))
    with pytest.raises(TypeError, match="integer"):
        ours(np.array([1.0]))


@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm_matches_torch(bias):
    rng = np.random.default_rng(2)
    ours = nn.LayerNorm(6, bias=bias, dtype=np.float64)
    theirs = torch.nn.LayerNorm(6, bias=bias, dtype=torch.float64)
    # Move away from the ones/zeros init so the scale and shift are really tested.
    ours.weight.data[...] = rng.standard_normal(6)
    if bias:
        ours.bias.data[...] = rng.standard_normal(6)
    with torch.no_grad():
        for q, (_, p) in zip(theirs.parameters(), ours.named_parameters(), strict=True):
            q.copy_(torch.from_numpy(p.data))
    x = rng.standard_normal((3, 4, 6)) * 3 + 1
    xo, xt = Tensor(x.copy(), requires_grad=True), torch.tensor(x, requires_grad=True)
    yo, yt = ours(xo), theirs(xt)
    np.testing.assert_allclose(yo.data, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    w = rng.standard_normal(yo.shape)
    (yo * Tensor(w)).sum().backward()
    (yt * torch.from_numpy(w)).sum().backward()
    np.testing.assert_allclose(xo.grad, xt.grad.numpy(), rtol=1e-9, atol=1e-11)
    _grads_match(ours, theirs)


def _torch_mlp(sizes, dtype=torch.float64):
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(a, b, dtype=dtype), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def test_mlp_matches_torch_sequential_and_trains_identically():
    sizes = [3, 8, 8, 2]
    ours = nn.MLP(sizes, rng=0, dtype=np.float64)
    theirs = _torch_mlp(sizes)
    nn.from_torch(ours, theirs)
    opt_o = optim.Adam(ours.parameters(), lr=0.01)
    opt_t = torch.optim.Adam(theirs.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    for _ in range(10):
        x, y = rng.standard_normal((16, 3)), rng.standard_normal((16, 2))
        lo = ((ours(Tensor(x)) - Tensor(y)) ** 2).mean()
        lt = ((theirs(torch.from_numpy(x)) - torch.from_numpy(y)) ** 2).mean()
        np.testing.assert_allclose(lo.data, lt.item(), rtol=1e-10)
        ours.zero_grad()
        opt_t.zero_grad()
        lo.backward()
        lt.backward()
        _grads_match(ours, theirs)
        opt_o.step()
        opt_t.step()
    for p, q in zip(ours.parameters(), theirs.parameters()):
        np.testing.assert_allclose(p.data, q.detach().numpy(), rtol=1e-9, atol=1e-12)


class _Tied(nn.Module):
    def __init__(self):
        self.emb = nn.Embedding(5, 4, rng=0)
        self.blocks = [nn.Linear(4, 4, rng=1), {"norm": nn.LayerNorm(4)}]
        self.head = nn.Linear(4, 5, bias=False, rng=2)
        self.head.weight = self.emb.weight  # weight tying, as GPT-2 does
        self.scale = Tensor(np.ones(1, dtype=np.float32), requires_grad=True)
        self.buffer = Tensor(np.zeros(3))  # no grad: not a parameter

    def forward(self, ids):
        return self.head(self.blocks[1]["norm"](self.blocks[0](self.emb(ids)))) * self.scale


def test_module_walks_lists_dicts_and_lists_tied_weights_once():
    m = _Tied()
    names = [n for n, _ in m.named_parameters()]
    # A module's own parameters come before its children's, as in torch.
    assert names == [
        "scale",
        "emb.weight",
        "blocks.0.weight",
        "blocks.0.bias",
        "blocks.1.norm.weight",
        "blocks.1.norm.bias",
    ]
    assert m.num_parameters() == 20 + 16 + 4 + 4 + 4 + 1
    assert [n for n, _ in m.named_modules()] == ["", "emb", "blocks.0", "blocks.1.norm", "head"]
    # The tied weight gets both uses' gradients.
    m(np.array([[1, 2]])).sum().backward()
    assert m.emb.weight.grad[3].any()  # reached only through the head
    m.eval()
    assert not any(mod.training for mod in m.modules())
    m.train()
    assert all(mod.training for mod in m.modules())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_state_dict_round_trip_and_errors():
    a, b = nn.MLP([2, 4, 1], rng=0), nn.MLP([2, 4, 1], rng=1)
    held = b.parameters()[0].data  # load must write in place
    b.load_state_dict(a.state_dict())
    for p, q in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    assert b.parameters()[0].data is held
    sd = a.state_dict()
    sd["layers.0.weight"][...] = 99  # a copy: changing it leaves the model alone
    assert not (a.layers[0].weight.data == 99).any()
    with pytest.raises(ValueError, match=r"missing \['layers.1.bias'\].*unexpected \['extra'\]"):
        b.load_state_dict({**{k: v for k, v in sd.items() if k != "layers.1.bias"}, "extra": 0})
    with pytest.raises(ValueError, match=r"'layers.0.weight' has shape \(4, 2\).*\(2, 4\)"):
        b.load_state_dict({**sd, "layers.0.weight": np.zeros((2, 4))})
    # torch state dicts load by name where the names agree (Linear: weight, bias).
    lin, tl = nn.Linear(3, 2, rng=0), torch.nn.Linear(3, 2)
    lin.load_state_dict(tl.state_dict())
    np.testing.assert_allclose(lin.weight.data, tl.weight.detach().numpy())
    with pytest.raises(ValueError, match="3 parameters but the torch module has 4"):
        nn.from_torch(_three_params(), _torch_mlp([2, 2, 2]))


def _three_params():
    m = nn.MLP([2, 2, 2], rng=0)
    m.layers[1].bias = None
    return m


def test_to_dtype_and_bad_sizes():
    m = nn.MLP([2, 3, 1], rng=0).to(np.float64)
    assert all(p.data.dtype == np.float64 for p in m.parameters())
    assert m(Tensor(np.ones((1, 2)))).data.dtype == np.float64
    with pytest.raises(ValueError, match="at least an input and an output"):
        nn.MLP([3])
    with pytest.raises(ValueError, match="in_features=0"):
        nn.Linear(0, 3)
    with pytest.raises(ValueError, match=r"Linear\(2, 3.*shape \(4, 5\).*must be 2"):
        nn.Linear(2, 3)(Tensor(np.ones((4, 5), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"LayerNorm\(4\).*shape \(2, 3\)"):
        nn.LayerNorm(4)(Tensor(np.ones((2, 3), dtype=np.float32)))
