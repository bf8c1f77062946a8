"""The milestone-2 experiments: linear regression on three engines, the MLP quadratic five ways."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scratchllm.cli import main
from scratchllm.experiments import limit_threads
from scratchllm.experiments.linear_regression import (
    LinearRegressionConfig,
    run_linear_regression,
)
from scratchllm.experiments.mlp_quadratic import (
    WAYS,
    MLPQuadraticConfig,
    lr_at,
    make_data,
    plot_losses,
    run_mlp_quadratic,
)

# ---------------------------------------------------------------------------- linear regression


@pytest.mark.parametrize(
    "config",
    [
        LinearRegressionConfig(),
        LinearRegressionConfig(a=-0.75, b=12.5, n_points=10, seed=3),
        LinearRegressionConfig(a=40.0, b=0.0, steps=120, lr=0.8, seed=1),
    ],
)
def test_linear_regression_engines_recover_the_line_and_agree(config):
    result = run_linear_regression(config)
    assert list(result.fits) == ["Value", "Tensor", "PyTorch"]
    for name, fit in result.fits.items():
        assert abs(fit.a - config.a) < 1e-4, name
        assert abs(fit.b - config.b) < 1e-4, name
        assert fit.loss < 1e-8, name
    ref = result.fits["PyTorch"]
    for fit in result.fits.values():  # same data, start and steps: agree to rounding
        assert fit.a == pytest.approx(ref.a, rel=1e-9, abs=1e-12)
        assert fit.b == pytest.approx(ref.b, rel=1e-9, abs=1e-12)
    table = result.table()
    assert f"{config.a:.6f}" in table and "Value" in table and "PyTorch" in table


def test_linear_regression_too_few_steps_does_not_fit():
    # The test above can only pass if training really happened.
    result = run_linear_regression(LinearRegressionConfig(steps=2), engines=("Tensor",))
    fit = result.fits["Tensor"]
    assert max(abs(fit.a - 2.0), abs(fit.b + 3.0)) > 1e-2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(lr=1.5), "lr=1.5"),
        (dict(n_points=1), "n_points=1"),
        (dict(steps=0), "steps=0"),
    ],
)
def test_linear_regression_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LinearRegressionConfig(**kwargs)
    with pytest.raises(ValueError, match="unknown engine"):
        run_linear_regression(LinearRegressionConfig(), engines=("JAX",))


# ---------------------------------------------------------------------------- MLP quadratic


def test_five_ways_agree_step_for_step_in_float64():
    config = MLPQuadraticConfig(steps=50, warmup=10, dtype="float64")
    result = run_mlp_quadratic(config)
    curves = {way: np.array(run.losses) for way, run in result.runs.items()}
    assert list(curves) == list(WAYS) and all(len(c) == 50 for c in curves.values())
    for a, b in [
        ("scratch-sgd", "torch-manual-sgd"),
        ("scratch-adam", "torch-manual-adam"),
        ("scratch-adam", "torch-nn-adam"),
    ]:
        np.testing.assert_allclose(curves[a], curves[b], rtol=1e-6, err_msg=f"{a} vs {b}")
    # Not vacuous: the models learn, and SGD and Adam take different paths.
    for c in curves.values():
        assert c[-5:].mean() < 0.5 * c[:5].mean()
    assert np.abs(curves["scratch-sgd"][5:] / curves["scratch-adam"][5:] - 1).max() > 1e-2
    # Same trained function too, not only the same losses.
    runs = result.runs
    assert runs["scratch-adam"].test_mse == pytest.approx(runs["torch-nn-adam"].test_mse, rel=1e-6)


@pytest.mark.slow
def test_default_settings_really_fit_with_adam():
    # A published run of this experiment stalled at test MSE 56-114; ours must fit: below
    # 1e-3 of the target variance. The hand-written torch Adam is held equal to these two
    # step for step above, so two ways keep the test short.
    result = run_mlp_quadratic(MLPQuadraticConfig(ways=("scratch-adam", "torch-nn-adam")))
    for run in result.runs.values():
        assert run.test_rel < 1e-3, run
        assert run.test_mse < 1e-3 * result.var_y_test
        assert run.train_mse < 1e-3 * result.var_y_test


def test_data_batches_and_scaling():
    config = MLPQuadraticConfig(steps=40, n_train=512, batch_size=128, seed=5)
    data = make_data(config)
    assert data.batches.shape == (40, 128)
    # Each epoch (4 batches) visits every training point exactly once.
    for e in range(10):
        epoch = np.sort(data.batches[4 * e : 4 * e + 4].ravel())
        np.testing.assert_array_equal(epoch, np.arange(512))
    assert np.abs(data.x_train).max() <= 1.0 and data.x_train.dtype == np.float32
    assert abs(data.y_train.mean()) < 1e-5 and abs(data.y_train.std() - 1) < 1e-5
    # The standardised targets are the formula, up to the stored scale.
    x = data.x_train.astype(np.float64) * config.x_max
    y = config.w1 * x[:, 0] ** 2 + config.w2 * x[:, 1] ** 2 + config.b
    np.testing.assert_allclose(data.y_train[:, 0] * data.y_std + data.y_mean, y, atol=1e-4)
    again = make_data(config)
    np.testing.assert_array_equal(again.batches, data.batches)
    assert not np.array_equal(make_data(MLPQuadraticConfig(seed=6)).x_train[:10], data.x_train[:10])


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    config = MLPQuadraticConfig(steps=200, warmup=20, min_lr_ratio=0.1)
    lrs = [lr_at(s, 1.0, config) for s in range(200)]
    assert lrs[0] == pytest.approx(1 / 20) and lrs[19] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(lrs[:19], lrs[1:20]))
    assert all(a >= b for a, b in zip(lrs[20:], lrs[21:]))
    assert lrs[-1] == pytest.approx(0.1)
    mid = 20 + (199 - 20) / 2  # half way through the cosine: half way between peak and floor
    assert lr_at(math.floor(mid), 1.0, config) == pytest.approx(0.55, abs=0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(dtype="float16"), "dtype='float16'"),
        (dict(ways=("scratch-rmsprop",)), "scratch-rmsprop"),
        (dict(batch_size=4096), "batch_size=4096"),
        (dict(hidden=(64, 0)), "hidden"),
        (dict(w1=0.0, w2=0.0), "constant"),
        (dict(steps=0), "steps=0"),
    ],
)
def test_mlp_quadratic_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLPQuadraticConfig(**kwargs)


def test_plot_writes_a_png(tmp_path):
    result = run_mlp_quadratic(MLPQuadraticConfig(steps=5, warmup=2, ways=("scratch-adam",)))
    path = plot_losses(result, tmp_path / "sub" / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


def test_limit_threads_restores_torch_and_rejects_zero():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    with limit_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads=0"), limit_threads(0):
        pass


# ---------------------------------------------------------------------------- CLI


def test_cli_linear_regression(capsys):
    assert main(["experiment", "linear-regression", "--a", "1.5", "--b", "0.25"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines["truth"][1:3] == ["1.500000", "0.250000"]
    for engine in ("Value", "Tensor", "PyTorch"):
        assert lines[engine][1:3] == ["1.500000", "0.250000"]


def test_cli_linear_regression_bad_lr_is_one_line(capsys):
    assert main(["experiment", "linear-regression", "--lr", "2"]) == 2
    err = capsys.readouterr().err
    assert "lr=2.0" in err and "Traceback" not in err


def test_cli_mlp_quadratic_prints_every_way_and_writes_the_plot(tmp_path, capsys):
    out_png = tmp_path / "curves.png"
    argv = ["experiment", "mlp-quadratic", "--steps", "30", "--warmup", "5", "--n-train", "256"]
    assert main([*argv, "--hidden", "16", "--out", str(out_png)]) == 0
    out = capsys.readouterr().out
    for way in WAYS:
        assert way in out
    assert "MLP [2, 16, 1]" in out and f"wrote {out_png}" in out
    assert out_png.read_bytes()[:4] == b"\x89PNG"
