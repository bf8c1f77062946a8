"""What the Trainer guarantees when things go wrong: both splits checked before step 1, a
metrics row never lost to a kill after the checkpoint swap, resumes that say what they
change (and refuse to go backwards), divergence reported with the checkpoints' real losses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEXT, tiny_config, tiny_gpt

from scratchllm.configs import TrainConfig
from scratchllm.data import TokenDataset
from scratchllm.tokenizers import CharTokenizer
from scratchllm.training import Trainer, TrainingDiverged, read_metrics, saved_config
from scratchllm.training.schedule import lr_at
from scratchllm.training.trainer import divergence_advice

TESTS = Path(__file__).resolve().parent


# -- 8: both splits, before step 1 ----------------------------------------------------------------


@pytest.mark.parametrize(
    "val_fraction, message",
    [
        (0.0, "val_fraction 0 leaves .* no validation split.*use a val_fraction above 0"),
        (0.003, r"the validation split of .* has 8 tokens \(val_fraction 0.003 of 2,720\), "
                r"but a window of block_size 8 needs 9: raise val_fraction to about 0.004 "
                r"\(--val-fraction\), or lower block_size to 7"),
        (0.998, r"the train split of .* has 5 tokens .* needs 9: lower val_fraction"),
    ],
)  # fmt: skip
def test_a_split_too_short_for_the_window_is_refused_before_training(
    tmp_path, val_fraction, message
):
    data = TokenDataset.from_text(TEXT, CharTokenizer.train(TEXT), tmp_path / "d", val_fraction)
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        Trainer(tiny_gpt(data.vocab_size), data, tiny_config(out))  # block_size 8
    assert not out.exists()  # nothing trained, nothing written


# -- 7: the metrics row of a checkpoint survives a kill right after the swap --------------------

_KILLED_AFTER_SWAP = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import torch
torch.set_num_threads(1)
from conftest import tiny_config, tiny_gpt
import scratchllm.training.trainer as T
from scratchllm.data import TokenDataset

real = T.save_checkpoint
def save_then_die(directory, *args, **kwargs):
    path = real(directory, *args, **kwargs)
    if path.name == "last" and args[3]["step"] == 4:
        os.kill(os.getpid(), signal.SIGKILL)  # right after the swap of step 4's checkpoint
    return path
T.save_checkpoint = save_then_die
data = TokenDataset({data!r})
T.Trainer(tiny_gpt(data.vocab_size), data, tiny_config({out!r}, **{cfg!r})).train()
"""


def test_a_kill_right_after_the_checkpoint_swap_loses_no_metrics_row(char_data, tmp_path):
    cfg = dict(max_iters=6, eval_interval=2, lr_decay_iters=6)
    straight = Trainer(tiny_gpt(char_data.vocab_size), char_data,
                       tiny_config(tmp_path / "straight", **cfg)).train()  # fmt: skip
    assert straight.steps == 6
    out = tmp_path / "killed"
    script = _KILLED_AFTER_SWAP.format(tests=str(TESTS), data=str(char_data.directory),
                                       out=str(out), cfg=cfg)  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", script], env=dict(os.environ))
    assert proc.returncode == -9  # it did die at that point
    assert saved_config(out).max_iters == 6
    Trainer.resume(out, char_data).train()
    rows = read_metrics(out / "metrics.jsonl")
    expected = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r.get("val_loss") for r in rows] == [r.get("val_loss") for r in expected]


# -- 5, 6: what a resume changes, and what it refuses --------------------------------------------


def _interrupted_at(step: int, data: TokenDataset, out: Path, **cfg) -> None:
    def stop(trainer):
        if trainer.step == step:
            raise KeyboardInterrupt

    Trainer(tiny_gpt(data.vocab_size), data, tiny_config(out, **cfg), callbacks=[stop]).train()


def test_a_resume_that_changes_the_schedule_says_what_it_changes(char_data, tmp_path):
    _interrupted_at(4, char_data, tmp_path, max_iters=40, eval_interval=20)
    notes: list[str] = []
    saved = saved_config(tmp_path)
    cfg = saved.replace(max_iters=8)  # what the old hint said: --max-iters 2 * step
    trainer = Trainer.resume(tmp_path, char_data, cfg, log=notes.append)
    result = trainer.train()
    said = " ".join(notes)
    assert "the resume changes the learning-rate schedule" in said
    assert "the cosine ends at step 8 (was 40" in said and "warmup 0 steps (was 2)" in said
    old, new = lr_at(4, saved), lr_at(4, cfg)
    assert old != new
    assert f"is {new:.3g} (was {old:.3g})" in said
    assert result.steps == 8


def test_a_plain_resume_keeps_the_schedule_and_says_nothing_of_it(char_data, tmp_path):
    _interrupted_at(4, char_data, tmp_path, max_iters=8, eval_interval=4)
    notes: list[str] = []
    Trainer.resume(tmp_path, char_data, log=notes.append).train()
    assert not any("schedule" in n for n in notes)


def test_resume_below_the_current_step_is_refused(char_data, tmp_path):
    _interrupted_at(5, char_data, tmp_path, max_iters=10, eval_interval=5)
    cfg = saved_config(tmp_path).replace(max_iters=3)
    with pytest.raises(ValueError, match=r"is at step 5; max_iters = 3 would end before it"):
        Trainer.resume(tmp_path, char_data, cfg)
    assert saved_config(tmp_path).max_iters == 10  # the run is as it was


# -- 9: divergence -----------------------------------------------------------------------------


def test_divergence_names_the_best_checkpoint_with_its_real_loss(char_data, tmp_path):
    """lr 1e6 with clipping on: finite but absurd at the first evaluation, NaN after."""
    cfg = tiny_config(tmp_path, max_iters=60, lr=1e6, min_lr=1e6, warmup_iters=0,
                      eval_interval=1, log_interval=1)  # fmt: skip
    with pytest.raises(TrainingDiverged) as e:
        Trainer(tiny_gpt(char_data.vocab_size), char_data, cfg).train()
    msg = str(e.value)
    best = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r.get("val_loss")]
    best = min(best, key=lambda r: r["val_loss"])
    assert f"Best checkpoint: {tmp_path / 'best'} (step {best['step']}, validation loss " in msg
    assert f"{best['val_loss']:,.0f}" in msg and "worse than a uniform guess" in msg
    assert "last good" not in msg
    assert "lower the learning rate (lr 1e+06: try 100000, and min_lr with it)" in msg
    assert "clip" not in msg  # clipping is on (grad_clip 1.0): no advice to turn it on
    assert e.value.checkpoint == tmp_path / "best"
    assert isinstance(e.value, ValueError)  # the CLI prints it as one line


@pytest.mark.parametrize(
    "changes, said, unsaid",
    [
        ({}, ["lower the learning rate (lr 0.001: try 0.0001)"], ["clip", "warm up", "float32"]),
        ({"grad_clip": None}, ["clip gradients (grad_clip is off: try 1.0)"], []),
        ({"warmup_iters": 0}, ["warm up longer (warmup_iters 0: try 100)"], []),
        ({"dtype": "bfloat16"}, ["train in float32 (dtype is bfloat16)"], []),
    ],
)
def test_divergence_advice_fits_the_settings(changes, said, unsaid):
    advice = divergence_advice(TrainConfig(max_iters=2000, warmup_iters=100).replace(**changes))
    assert all(s in advice for s in said), advice
    assert not any(u in advice for u in unsaid), advice
