"""``NumpyTrainer`` against the PyTorch ``Trainer``: the same batches, the same losses for
ten steps, the same files, exact resume (of either engine's run), and the guards."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from np_twins import numpy_model, tiny_config, torch_twin

from scratchllm.configs import TrainConfig
from scratchllm.data import TokenDataset
from scratchllm.data.languages import get as get_language
from scratchllm.generation import generate as torch_generate
from scratchllm.models import load as load_torch_model
from scratchllm.numpy_gpt import NumpyGPT, generate, load_model, save_model
from scratchllm.numpy_gpt.checkpoint import load_checkpoint
from scratchllm.numpy_gpt.data import get_batch
from scratchllm.numpy_gpt.trainer import NumpyTrainer, TrainingDiverged
from scratchllm.tokenizers import CharTokenizer
from scratchllm.training import Trainer
from scratchllm.training import load_checkpoint as torch_load_checkpoint
from scratchllm.training.plot import read_metrics

TEXT = "the quick brown fox jumps over the lazy dog. " * 40 + "pack my box with jugs.\n" * 40


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> TokenDataset:
    return TokenDataset.from_text(TEXT, CharTokenizer.train(TEXT), tmp_path_factory.mktemp("d"))


@pytest.fixture(scope="module")
def masked(tmp_path_factory) -> TokenDataset:
    """Addition problems where only the answer counts (mask.bin), a language source."""
    import random

    lang = get_language("addition:digits=2")
    rng = random.Random(0)
    samples = [lang.sample(rng) for _ in range(300)]
    masks = [[i > s.index("=") for i in range(len(s))] for s in samples]
    return TokenDataset.from_samples(
        samples, CharTokenizer.train("".join(samples)), tmp_path_factory.mktemp("add"),
        masks=masks, source="addition:digits=2",
    )  # fmt: skip


def config(out_dir, **changes) -> TrainConfig:
    values = dict(
        max_iters=10, batch_size=4, block_size=16, lr=3e-3, min_lr=3e-4, warmup_iters=2,
        eval_interval=5, eval_iters=2, log_interval=1, device="cpu", progress=False,
        validity_samples=0, out_dir=str(out_dir),
    )  # fmt: skip
    values.update(changes)
    return TrainConfig(**values)


def model_for(ds: TokenDataset, dtype: str = "float32", **changes) -> NumpyGPT:
    return numpy_model(tiny_config(vocab_size=ds.vocab_size, block_size=16, **changes), dtype)


def rows(out_dir) -> list[dict]:
    return read_metrics(out_dir / "metrics.jsonl")


@pytest.mark.parametrize("ds_name", ["data", "masked"])
def test_batches_are_the_pytorch_trainers(request, ds_name):
    ds = request.getfixturevalue(ds_name)
    ours_rng, theirs_rng = np.random.default_rng(5), np.random.default_rng(5)
    for split in ("train", "val"):
        x, y, m = get_batch(ds, split, 6, 9, ours_rng)
        tx, ty, tm = ds.get_batch(split, 6, 9, theirs_rng)
        np.testing.assert_array_equal(x, tx.numpy())
        np.testing.assert_array_equal(y, ty.numpy())
        assert (m is None) == (tm is None)
        if m is not None:
            np.testing.assert_array_equal(m, tm.numpy())
    assert ours_rng.bit_generator.state == theirs_rng.bit_generator.state


@pytest.mark.parametrize(
    "changes",
    [{}, {"label_smoothing": 0.1, "grad_clip": 0.3}, {"gradient_accumulation_steps": 2}],
)
def test_ten_steps_log_the_same_losses_as_the_pytorch_trainer(data, tmp_path, changes):
    model = model_for(data)
    twin = torch_twin(model)
    Trainer(twin, data, config(tmp_path / "torch", **changes)).train()
    result = NumpyTrainer(model, data, config(tmp_path / "numpy", **changes)).train()
    theirs, ours = rows(tmp_path / "torch"), rows(tmp_path / "numpy")
    assert [r["step"] for r in ours] == list(range(1, 11))
    assert [sorted(r) for r in ours] == [sorted(r) for r in theirs]  # the same columns
    for a, b in zip(ours, theirs):
        for key in ("loss", "grad_norm", "val_loss", "lr", "tokens"):
            if key in b:
                assert a[key] == pytest.approx(b[key], rel=1e-4), (a["step"], key)
    assert abs(theirs[-1]["loss"] - theirs[0]["loss"]) > 0.05  # training did something
    assert result.status == "completed" and result.steps == 10
    best = min(r["val_loss"] for r in theirs if "val_loss" in r)
    assert result.best_val_loss == pytest.approx(best, rel=1e-4)


def test_a_run_leaves_the_pytorch_trainers_files(data, tmp_path):
    model = model_for(data)
    Trainer(torch_twin(model), data, config(tmp_path / "torch")).train()
    result = NumpyTrainer(model, data, config(tmp_path / "numpy")).train()
    for sub in ("last", "best"):
        names = {p.name for p in (tmp_path / "numpy" / sub).iterdir()}
        assert names == {p.name for p in (tmp_path / "torch" / sub).iterdir()}, sub
    assert (tmp_path / "numpy" / "loss.png").stat().st_size > 1000
    assert result.checkpoint == tmp_path / "numpy" / "last" and result.plot_file is not None
    state = json.loads((tmp_path / "numpy" / "last" / "trainer_state.json").read_text())
    theirs = json.loads((tmp_path / "torch" / "last" / "trainer_state.json").read_text())
    assert set(theirs) - set(state) == set() and state["engine"] == "numpy"
    assert state["data_rng"] == theirs["data_rng"]  # the data position, the same draw


def test_a_numpy_trained_model_samples_with_pytorch_and_back(data, tmp_path):
    NumpyTrainer(model_for(data), data, config(tmp_path / "numpy")).train()
    Trainer(torch_twin(model_for(data)), data, config(tmp_path / "torch")).train()
    for run in ("numpy", "torch"):
        ours = load_checkpoint(tmp_path / run).model
        # best/ (weights and tokenizer) loads with the PyTorch checkpoint reader; last/ of a
        # NumPy run also holds a trainer state without torch's RNG tensor, which that
        # reader refuses, so its model is read with models.load
        theirs = torch_load_checkpoint(tmp_path / run, which="best").model
        last = load_torch_model(tmp_path / run / "last")
        np.testing.assert_array_equal(
            generate(ours, [[1]], 20, temperature=0), torch_generate(last, [[1]], 20, temperature=0)
        )
        ours = load_checkpoint(tmp_path / run, which="best").model
        prompt = [[1, 2, 3]]
        for kw in (dict(temperature=0), dict(temperature=0.9, top_k=10, seed=4)):
            np.testing.assert_array_equal(
                generate(ours, prompt, 30, **kw), torch_generate(theirs, prompt, 30, **kw).numpy()
            )


def test_resume_continues_exactly(data, tmp_path):
    model = model_for(data, dropout=0.1)  # the dropout stream is part of the state too
    NumpyTrainer(model, data, config(tmp_path / "whole", lr_decay_iters=10)).train()
    first = model_for(data, dropout=0.1)
    NumpyTrainer(first, data, config(tmp_path / "split", max_iters=5, lr_decay_iters=10)).train()
    resumed = NumpyTrainer.resume(
        tmp_path / "split", data, config(tmp_path / "split", lr_decay_iters=10)
    )
    result = resumed.train()
    assert result.steps == 10 and any("resumed from" in n for n in result.notes)
    timing = ("tokens_per_s", "elapsed_s")
    assert [{k: v for k, v in r.items() if k not in timing} for r in rows(tmp_path / "split")] == [
        {k: v for k, v in r.items() if k not in timing} for r in rows(tmp_path / "whole")
    ]
    for name, p in model.params.items():
        np.testing.assert_array_equal(resumed.model.params[name], p, err_msg=name)


def test_numpy_resumes_a_pytorch_run(data, tmp_path):
    model = model_for(data)
    Trainer(torch_twin(model), data, config(tmp_path / "whole", lr_decay_iters=10)).train()
    cfg = config(tmp_path / "split", max_iters=5, lr_decay_iters=10)
    Trainer(torch_twin(model), data, cfg).train()
    cfg = cfg.replace(max_iters=10)
    result = NumpyTrainer.resume(tmp_path / "split", data, cfg).train()
    assert any("resuming a PyTorch run" in n for n in result.notes)
    for a, b in zip(rows(tmp_path / "split"), rows(tmp_path / "whole")):
        assert a["step"] == b["step"] and a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    assert len(rows(tmp_path / "split")) == 10


def test_validity_is_measured_for_a_language(masked, tmp_path):
    model = model_for(masked)
    cfg = config(tmp_path, max_iters=2, eval_interval=2, block_size=8, validity_samples=6)
    result = NumpyTrainer(model, masked, cfg).train()
    row = rows(tmp_path)[-1]
    assert 0.0 <= row["valid"] <= 1.0 and 0.0 < row["unique"] <= 1.0
    assert result.last_eval["valid"] == row["valid"]


def test_nan_stops_before_the_bad_update_and_keeps_the_last_checkpoint(data, tmp_path):
    model = model_for(data)

    def poison(trainer):
        if trainer.step == 6:  # the step after the checkpoint at step 5
            trainer.model.params["transformer.ln_f.weight"][:] = np.nan

    with pytest.raises(TrainingDiverged, match=r"step 7.*last good checkpoint.*\(step 5\)"):
        NumpyTrainer(model, data, config(tmp_path), callbacks=[poison]).train()
    last = rows(tmp_path)[-1]
    assert last["step"] == 7 and last["loss"] is None and last["diverged"] is True
    saved = load_checkpoint(tmp_path).model
    assert np.isfinite(saved.params["transformer.ln_f.weight"]).all()


def test_early_stopping(data, tmp_path):
    cfg = config(tmp_path, lr=0.0, min_lr=0.0, eval_interval=1, early_stopping=2)
    result = NumpyTrainer(model_for(data), data, cfg).train()
    assert result.status == "early_stopped" and result.steps == 3
    assert any("early stopping at step 3" in n for n in result.notes)


def test_what_the_numpy_engine_cannot_do_is_refused_or_noted(data, tmp_path):
    with pytest.raises(ValueError, match="runs on the CPU"):
        NumpyTrainer(model_for(data), data, config(tmp_path, device="cuda"))
    with pytest.raises(ValueError, match="compile is a PyTorch option"):
        NumpyTrainer(model_for(data), data, config(tmp_path, compile=True))
    t = NumpyTrainer(model_for(data), data, config(tmp_path, dtype="bfloat16"), log=lambda m: None)
    assert any("NumPy has no bfloat16" in n for n in t.notes)
    with pytest.raises(ValueError, match="vocab_size"):
        NumpyTrainer(NumpyGPT(tiny_config(vocab_size=5)), data, config(tmp_path))
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        NumpyTrainer.resume(tmp_path / "nothing", data)


def test_the_progress_bar_shows_the_loss(data, tmp_path, capsys):
    NumpyTrainer(model_for(data), data, config(tmp_path, max_iters=3, progress=True)).train()
    err = capsys.readouterr().err
    assert "train (numpy)" in err and "loss=" in err and "3/3" in err


def test_float64_training_stays_float64(data, tmp_path):
    model = model_for(data, "float64")
    result = NumpyTrainer(model, data, config(tmp_path, max_iters=2)).train()
    assert math.isfinite(result.final_train_loss)
    assert load_checkpoint(tmp_path).model.dtype == np.float64
    assert all(p.dtype == np.float64 for p in model.params.values())
    assert torch.load  # the PyTorch engine is still importable in this process (sanity)


def test_both_engines_started_from_one_checkpoint_log_the_same_losses(data, tmp_path):
    """What ``scratchllm train --init-from C`` will do for each engine: load C's weights
    into that engine's model and train with the same seed and data."""
    save_model(model_for(data), tmp_path / "init")
    torch_model = load_torch_model(tmp_path / "init")
    numpy_model_ = load_model(tmp_path / "init")
    Trainer(torch_model, data, config(tmp_path / "torch")).train()
    NumpyTrainer(numpy_model_, data, config(tmp_path / "numpy")).train()
    for a, b in zip(rows(tmp_path / "numpy"), rows(tmp_path / "torch")):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4), a["step"]
