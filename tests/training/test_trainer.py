"""The Trainer end to end on tiny models: files, loss going down, accumulation, masks,
label smoothing, NaN guard, Ctrl-C, early stopping, validity, counting models."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import torch
from conftest import tiny_config, tiny_gpt

from scratchllm.data import TokenDataset
from scratchllm.data.languages import get as get_language
from scratchllm.models import MLPLM, MLPConfig, NGram, NGramConfig, lm_loss, load
from scratchllm.tokenizers import CharTokenizer
from scratchllm.training import (
    Trainer,
    TrainingDiverged,
    load_checkpoint,
    masked_cross_entropy,
    read_metrics,
    train_step_fn,
)


def test_trains_and_writes_the_run_directory(char_data, tmp_path):
    model = tiny_gpt(char_data.vocab_size)
    cfg = tiny_config(tmp_path / "run", max_iters=30, eval_interval=15, lr=1e-2, log_interval=5)
    result = Trainer(model, char_data, cfg).train()
    assert result.status == "completed" and result.steps == 30
    assert result.tokens_seen == 30 * 4 * 8
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [5, 10, 15, 20, 25, 30]
    for r in rows:
        assert {"step", "loss", "lr", "tokens_per_s"} <= set(r) and r["tokens_per_s"] > 0
    evals = [r for r in rows if "val_loss" in r]
    assert [r["step"] for r in evals] == [15, 30]
    assert evals[-1]["val_perplexity"] == pytest.approx(np.exp(evals[-1]["val_loss"]))
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.3  # it learns
    assert result.final_val_loss == evals[-1]["val_loss"]
    assert result.best_val_loss == min(r["val_loss"] for r in evals)
    png = (tmp_path / "run" / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 2000
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.step == 30 and ckpt.tokenizer.vocab_size == char_data.vocab_size
    for name, p in model.state_dict().items():
        torch.testing.assert_close(ckpt.model.state_dict()[name], p, rtol=0, atol=0)
    best = load(tmp_path / "run" / "best")
    assert best.config == model.config


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_gradient_accumulation_equals_the_large_batch(char_data, tmp_path):
    big = tiny_gpt(char_data.vocab_size, seed=1)
    small = tiny_gpt(char_data.vocab_size, seed=1)
    Trainer(big, char_data, tiny_config(tmp_path / "a", max_iters=4, batch_size=8)).train()
    cfg = tiny_config(tmp_path / "b", max_iters=4, batch_size=4, gradient_accumulation_steps=2)
    Trainer(small, char_data, cfg).train()
    a, b = _weights(big), _weights(small)
    moved = max(
        float((a[k] - _weights(tiny_gpt(char_data.vocab_size, 1))[k]).abs().max()) for k in a
    )
    assert moved > 1e-3  # the test is not vacuous: training moved the weights
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-6, rtol=1e-5, msg=k)


@pytest.fixture(scope="module")
def masked_data(tmp_path_factory):
    """Addition problems where only the answer counts (mask.bin)."""
    lang = get_language("addition:digits=2")
    import random

    rng = random.Random(0)
    samples = [lang.sample(rng) for _ in range(300)]
    masks = [[i > s.index("=") for i in range(len(s))] for s in samples]
    tok = CharTokenizer.train("".join(samples))
    return TokenDataset.from_samples(
        samples, tok, tmp_path_factory.mktemp("add"), masks=masks, source="addition:digits=2"
    )


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_first_step_loss_uses_the_mask_and_label_smoothing(masked_data, tmp_path, smoothing):
    assert masked_data.mask is not None
    model = tiny_gpt(masked_data.vocab_size, seed=2)
    init = tiny_gpt(masked_data.vocab_size, seed=2)
    cfg = tiny_config(tmp_path, max_iters=1, label_smoothing=smoothing, validity_samples=0)
    seen = []
    Trainer(model, masked_data, cfg, callbacks=[lambda t: seen.append(t.last_loss.item())]).train()
    # The documented data order: step 0's windows are one draw of default_rng(seed).
    x, y, m = masked_data.get_batch("train", 4, 8, np.random.default_rng(cfg.seed))
    with torch.no_grad():
        logits, _ = init(x)
    expected = masked_cross_entropy(logits, y, m, label_smoothing=smoothing)
    unmasked = lm_loss(logits, y)
    assert seen[0] == pytest.approx(float(expected), rel=1e-5)
    assert abs(float(unmasked) - float(expected)) > 1e-3  # the mask changed the loss


def test_validity_is_measured_for_a_language(masked_data, tmp_path):
    model = tiny_gpt(masked_data.vocab_size)
    cfg = tiny_config(tmp_path, max_iters=2, eval_interval=2, validity_samples=4)
    result = Trainer(model, masked_data, cfg).train()  # language found from the data source
    row = read_metrics(tmp_path / "metrics.jsonl")[-1]
    assert 0.0 <= row["valid"] <= 1.0 and 0.0 < row["unique"] <= 1.0
    assert result.last_eval["valid"] == row["valid"]


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(char_data, tmp_path):
    model = tiny_gpt(char_data.vocab_size)

    def poison(trainer):
        if trainer.step == 4:  # after the checkpoint at step 3
            with torch.no_grad():
                trainer.model.transformer.wte.weight.fill_(float("nan"))

    cfg = tiny_config(tmp_path, max_iters=8, eval_interval=3, log_interval=2)
    with pytest.raises(TrainingDiverged) as e:
        Trainer(model, char_data, cfg, callbacks=[poison]).train()
    msg = str(e.value)
    assert "NaN or inf" in msg and "step 3" in msg and "lr 0.003: try 0.0003" in msg
    assert e.value.step == 6  # found at the next log step
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.step == 3
    assert all(torch.isfinite(p).all() for p in ckpt.model.parameters())
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert rows[-1]["diverged"] is True and rows[-1]["loss"] is None


def test_huge_learning_rate_diverges_cleanly(char_data, tmp_path):
    cfg = tiny_config(
        tmp_path,
        max_iters=40,
        lr=1e6,
        min_lr=1e6,
        warmup_iters=0,
        grad_clip=None,
        eval_interval=40,
        log_interval=5,
    )
    with pytest.raises(TrainingDiverged, match="No checkpoint had been saved") as e:
        Trainer(tiny_gpt(char_data.vocab_size), char_data, cfg).train()
    assert "clip gradients (grad_clip is off" in str(e.value)  # advice that fits: it is off


def test_keyboard_interrupt_saves_and_returns(char_data, tmp_path):
    def stop(trainer):
        if trainer.step == 4:
            raise KeyboardInterrupt

    cfg = tiny_config(tmp_path, max_iters=20, eval_interval=10)
    result = Trainer(tiny_gpt(char_data.vocab_size), char_data, cfg, callbacks=[stop]).train()
    assert result.status == "interrupted" and result.steps == 4
    assert load_checkpoint(tmp_path).step == 4
    assert result.plot_file is not None and result.plot_file.is_file()


def test_sigint_finishes_the_step_then_saves(char_data, tmp_path):
    def ctrl_c(trainer):
        if trainer.step == 2:
            signal.raise_signal(signal.SIGINT)

    cfg = tiny_config(tmp_path, max_iters=20, eval_interval=10, log_interval=5)
    # The handler before the run: Python's own, or SIG_IGN when the tests run as a
    # background job of a non-interactive shell (nohup ... &), which ignores SIGINT.
    before = signal.getsignal(signal.SIGINT)
    result = Trainer(tiny_gpt(char_data.vocab_size), char_data, cfg, callbacks=[ctrl_c]).train()
    assert result.status == "interrupted" and result.steps == 2
    assert load_checkpoint(tmp_path).step == 2
    assert signal.getsignal(signal.SIGINT) is before  # handler restored
    assert read_metrics(tmp_path / "metrics.jsonl")[-1]["step"] == 2


def test_early_stopping(char_data, tmp_path):
    # lr = 0: the validation loss never improves after the first evaluation.
    cfg = tiny_config(tmp_path, max_iters=50, lr=0.0, min_lr=0.0, eval_interval=2, early_stopping=2)
    result = Trainer(tiny_gpt(char_data.vocab_size), char_data, cfg).train()
    assert result.status == "early_stopped"
    assert result.steps == 6 and result.best_step == 2  # evals at 2 (best), 4, 6: stop
    assert any("early stopping" in n for n in result.notes)


def test_counting_ngram_is_fitted_in_one_pass(char_data, tmp_path):
    model = NGram(NGramConfig(n=3, vocab_size=char_data.vocab_size))
    result = Trainer(model, char_data, tiny_config(tmp_path)).train()
    assert result.steps == 1 and result.status == "completed"
    assert model.total_count == char_data.meta.n_train
    ref = NGram(NGramConfig(n=3, vocab_size=char_data.vocab_size))
    ref.fit(np.asarray(char_data.split_tokens("train")))
    x, y, _ = char_data.get_batch("val", 4, 8, 0)
    torch.testing.assert_close(model(x, y)[1], ref(x, y)[1])
    ckpt = load_checkpoint(tmp_path)
    torch.testing.assert_close(ckpt.model(x, y)[1], ref(x, y)[1])
    row = read_metrics(tmp_path / "metrics.jsonl")[0]
    assert row["step"] == 1 and row["val_loss"] < np.log(char_data.vocab_size)


def test_mlp_family_trains(char_data, tmp_path):
    torch.manual_seed(0)
    model = MLPLM(MLPConfig(n=3, vocab_size=char_data.vocab_size, n_embd=8, n_hidden=32))
    cfg = tiny_config(tmp_path, max_iters=20, eval_interval=20, lr=2e-2, log_interval=10)
    result = Trainer(model, char_data, cfg).train()
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert result.status == "completed" and rows[-1]["loss"] < rows[0]["loss"]


def test_mismatches_are_clear_errors(char_data, tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        Trainer(tiny_gpt(char_data.vocab_size + 1), char_data, tiny_config(tmp_path))
    with pytest.raises(ValueError, match=r"block_size \(32\) is longer"):
        Trainer(tiny_gpt(char_data.vocab_size), char_data, tiny_config(tmp_path, block_size=32))


def test_bf16_on_cpu_is_skipped_with_a_note(char_data, tmp_path):
    cfg = tiny_config(tmp_path, max_iters=1, dtype="bfloat16")
    result = Trainer(tiny_gpt(char_data.vocab_size), char_data, cfg).train()
    assert any("autocast skipped on CPU" in n for n in result.notes)
    assert json.loads((tmp_path / "last" / "trainer_state.json").read_text())["step"] == 1


def test_train_step_fn_is_the_trainers_step(char_data, tmp_path):
    cfg = tiny_config(tmp_path, max_iters=4, eval_interval=4)
    seen = []
    model = tiny_gpt(char_data.vocab_size, seed=5)
    Trainer(model, char_data, cfg, callbacks=[lambda t: seen.append(t.last_loss.item())]).train()
    step = train_step_fn(tiny_gpt(char_data.vocab_size, seed=5), cfg)
    rng = np.random.default_rng(cfg.seed)
    ours = [float(step(*char_data.get_batch("train", 4, 8, rng)[:2])) for _ in range(4)]
    assert ours == seen
