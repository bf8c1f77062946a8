"""Exact resume: 10 steps, save, resume, 10 more == 20 steps straight, bit for bit on CPU."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config, tiny_gpt

from scratchllm.training import Trainer, read_metrics, saved_config


def _run(data, out, max_iters, resume=False, **changes):
    losses = []

    def record(trainer):
        losses.append(trainer.last_loss.item())

    if resume:
        cfg = saved_config(out).replace(max_iters=max_iters)
        trainer = Trainer.resume(out, data, cfg, callbacks=[record])
    else:
        # dropout > 0 and accumulation: the torch RNG and the data position both matter.
        model = tiny_gpt(data.vocab_size, seed=3, dropout=0.2)
        cfg = tiny_config(
            out,
            max_iters=max_iters,
            lr_decay_iters=20,
            warmup_iters=3,
            eval_interval=5,
            gradient_accumulation_steps=2,
            **changes,
        )
        trainer = Trainer(model, data, cfg, callbacks=[record])
    trainer.train()
    return trainer, losses


def test_resume_is_exact(char_data, tmp_path):
    straight, losses_20 = _run(char_data, tmp_path / "straight", 20)
    _, first = _run(char_data, tmp_path / "split", 10)
    resumed, second = _run(char_data, tmp_path / "split", 20, resume=True)
    assert resumed.step == 20
    assert first + second == losses_20  # exact equality, step by step
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values()
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    sa = straight.optimizer.state_dict()["state"]
    sb = resumed.optimizer.state_dict()["state"]
    for pid in sa:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            torch.testing.assert_close(sa[pid][key], sb[pid][key], rtol=0, atol=0)
    # metrics.jsonl continues seamlessly: the same steps and losses as the straight run
    ra = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    rb = read_metrics(tmp_path / "split" / "metrics.jsonl")
    assert [r["step"] for r in rb] == [r["step"] for r in ra] == list(range(1, 21))
    assert [r["loss"] for r in rb] == pytest.approx([r["loss"] for r in ra], abs=0)
    assert [r.get("val_loss") for r in rb] == [r.get("val_loss") for r in ra]


def test_resume_after_interrupt_drops_stale_metrics(char_data, tmp_path):
    def stop(trainer):
        if trainer.step == 7:
            raise KeyboardInterrupt

    model = tiny_gpt(char_data.vocab_size)
    cfg = tiny_config(tmp_path, max_iters=12, eval_interval=5)
    assert Trainer(model, char_data, cfg, callbacks=[stop]).train().status == "interrupted"
    # Pretend the process logged more after its last checkpoint, then died.
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"step": 8, "loss": 1.0, "lr": 0.1, "tokens_per_s": 1.0}\n{"step": 9, "lo')
    result = Trainer.resume(tmp_path, char_data).train()
    assert result.steps == 12 and result.status == "completed"
    steps = [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert steps == list(range(1, 13))


def test_resume_needs_a_trainer_state(char_data, tmp_path):
    model = tiny_gpt(char_data.vocab_size)
    Trainer(model, char_data, tiny_config(tmp_path, max_iters=3)).train()
    with pytest.raises(FileNotFoundError, match="trainer_state.json"):
        Trainer.resume(tmp_path / "best", char_data)
