"""TrainConfig validation and JSON round trip; the learning-rate schedule."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scratchllm.training import TrainConfig, lr_at


def test_round_trips_through_json():
    cfg = TrainConfig(max_iters=123, lr=2e-4, grad_clip=None, early_stopping=3, device="cuda:1")
    again = TrainConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"max_iters": 0}, "max_iters (0)"),
        ({"batch_size": 2.5}, "batch_size (2.5)"),
        ({"lr": -1.0}, "lr (-1.0)"),
        ({"lr": float("nan")}, "lr (nan)"),
        ({"min_lr": 1.0, "lr": 0.1}, "min_lr (1.0) must not exceed lr (0.1)"),
        ({"beta2": 1.0}, "beta2 (1.0)"),
        ({"grad_clip": -1}, "grad_clip (-1)"),
        ({"label_smoothing": 1.0}, "label_smoothing (1.0)"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"dtype": "float8"}, "unknown dtype 'float8'"),
        ({"schedule": "step"}, "unknown schedule 'step'"),
        ({"warmup_iters": 50, "max_iters": 10}, "warmup_iters (50)"),
        ({"early_stopping": 0}, "early_stopping (0)"),
        ({"block_size": 0}, "block_size (0)"),
    ],
)
def test_bad_values_are_named(changes, fragment):
    with pytest.raises(ValueError) as e:
        TrainConfig(**changes)
    assert fragment in str(e.value)


def test_unknown_field_in_saved_config_is_named():
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_schedule_worked_values():
    cfg = TrainConfig(lr=1.0, min_lr=0.1, warmup_iters=10, max_iters=110)
    assert lr_at(0, cfg) == pytest.approx(0.1)  # 1/10 of the way up
    assert lr_at(9, cfg) == pytest.approx(1.0)  # warmup ends at the peak
    assert lr_at(10, cfg) == pytest.approx(1.0)  # cosine starts at the peak
    assert lr_at(60, cfg) == pytest.approx(0.55)  # halfway: the midpoint of lr and min_lr
    assert lr_at(35, cfg) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_at(110, cfg) == pytest.approx(0.1)
    assert lr_at(10_000, cfg) == pytest.approx(0.1)


def test_constant_schedule_and_default_warmup():
    cfg = TrainConfig(lr=0.5, min_lr=0.0, warmup_iters=4, max_iters=100, schedule="constant")
    assert [lr_at(s, cfg) for s in (0, 3, 4, 99)] == [0.125, 0.5, 0.5, 0.5]
    assert TrainConfig(max_iters=2000).warmup_steps == 100  # nanoGPT's setting
    assert TrainConfig(max_iters=60).warmup_steps == 3  # a short run still decays
    assert TrainConfig(max_iters=60, lr_decay_iters=40).decay_iters == 40


@settings(max_examples=60, deadline=None)
@given(
    warmup=st.integers(0, 50),
    extra=st.integers(1, 500),
    lr=st.floats(1e-6, 1.0),
    ratio=st.floats(0.0, 1.0),
    step=st.integers(0, 1000),
)
def test_schedule_properties(warmup, extra, lr, ratio, step):
    cfg = TrainConfig(lr=lr, min_lr=lr * ratio, warmup_iters=warmup, max_iters=warmup + extra)
    value = lr_at(step, cfg)
    assert 0 <= value <= lr * (1 + 1e-12)
    if step >= warmup:
        assert value >= cfg.min_lr * (1 - 1e-12)
        assert lr_at(step + 1, cfg) <= value + 1e-15  # never rises after warmup
    else:
        assert value == pytest.approx(lr * (step + 1) / warmup)


def test_negative_step_is_an_error():
    with pytest.raises(ValueError, match="step"):
        lr_at(-1, TrainConfig())
