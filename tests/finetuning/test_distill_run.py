"""finetune distill as a library: the loss of each step is finetuning.distill's on the
teacher's logits, a student of another size or family learns toward the teacher, and a
student that reads another tokenizer is a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scratchllm.checkpoint import load_checkpoint
from scratchllm.configs.finetune import DistillConfig
from scratchllm.data.chat import ChatTemplate
from scratchllm.finetuning.distill import distillation_loss, token_divergence
from scratchllm.finetuning.distill_run import DistillLoss, distill_run
from scratchllm.finetuning.sft import sft_run
from scratchllm.tokenizers.factory import tokenizer_sha256
from scratchllm.training.run import train_run
from scratchllm.training.step import forward_loss

CORPUS = "markov:order=2"
QUICK = dict(
    max_iters=20, batch_size=8, eval_interval=10, eval_iters=2, log_interval=5, lr=3e-3,
    warmup_iters=1, quiet=True, device="cpu", samples=300, validity_samples=0,
)  # fmt: skip


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "t"
    values = dict(
        data=CORPUS, samples=400, n_layer=1, n_head=2, n_embd=32, block_size=32, max_iters=30,
        eval_interval=15, eval_iters=2, quiet=True, device="cpu", batch_size=8, lr=3e-3,
    )  # fmt: skip
    train_run(out, values, say=lambda s: None)
    return out


def distill(out, teacher, **changes):
    lines: list[str] = []
    values = {"teacher": str(teacher), "base": "gpt", "data": CORPUS, **QUICK, **changes}
    return distill_run(out, values, say=lines.append), lines


@pytest.mark.parametrize(
    ("divergence", "beta", "temperature", "alpha"),
    [("forward_kl", 0.5, 1.0, 0.5), ("reverse_kl", 0.5, 2.0, 0.0), ("jsd", 0.9, 2.0, 0.3)],
)
def test_the_step_loss_is_the_distillation_loss_on_the_teachers_logits(
    teacher, divergence, beta, temperature, alpha
):
    t = load_checkpoint(teacher).model
    torch.manual_seed(1)
    student = load_checkpoint(teacher).model
    for p in student.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    x = torch.randint(0, t.config.vocab_size, (3, 10), generator=torch.Generator().manual_seed(0))
    y = torch.roll(x, -1, 1)
    y[:, -1] = -1
    mask = torch.rand(3, 10, generator=torch.Generator().manual_seed(2)) > 0.3
    cfg = DistillConfig(alpha=alpha, temperature=temperature, divergence=divergence, beta=beta)
    loss = DistillLoss(t, cfg)(student, (x, y, mask))
    with torch.no_grad():
        ref = distillation_loss(
            student(x)[0], t(x)[0], y, mask, alpha, temperature, divergence, beta
        ).loss
    torch.testing.assert_close(loss.detach(), ref)
    # alpha = 1 is supervised fine-tuning: the model's own masked cross-entropy
    sft = DistillLoss(t, DistillConfig(alpha=1.0))(student, (x, y, mask))
    torch.testing.assert_close(sft, forward_loss(student, (x, y, mask)), rtol=1e-6, atol=1e-6)


def test_a_smaller_student_moves_toward_its_teacher(teacher, tmp_path):
    r, lines = distill(tmp_path / "s", teacher, n_layer=1, n_head=1, n_embd=16, alpha=0.0)
    assert any(line.startswith("teacher ") for line in lines)
    assert any("a fresh GPT" in line for line in lines)
    t, s = load_checkpoint(teacher), load_checkpoint(tmp_path / "s")
    assert tokenizer_sha256(s.tokenizer) == tokenizer_sha256(t.tokenizer)
    assert sum(p.numel() for p in s.model.parameters()) < sum(
        p.numel() for p in t.model.parameters()
    )
    ids = torch.as_tensor(np.asarray(t.tokenizer.encode("\n" + "ab" * 10)))[None, :16]
    torch.manual_seed(0)
    fresh = type(s.model)(s.model.config)
    with torch.no_grad():
        before = token_divergence(fresh(ids)[0], t.model(ids)[0]).mean()
        after = token_divergence(s.model(ids)[0], t.model(ids)[0]).mean()
    assert after < 0.5 * before


def test_a_student_of_another_family(teacher, tmp_path):
    r, _ = distill(tmp_path / "lstm", teacher, base="lstm", n_layer=1, n_hidden=16, n_embd=16)
    assert load_checkpoint(tmp_path / "lstm").model.family == "rnn"
    assert r.result.best_val_loss is not None


def test_a_student_with_another_tokenizer_is_refused(teacher, tmp_path):
    other = tmp_path / "other"
    values = dict(
        data="addition:digits=1", samples=50, n_layer=1, n_head=1, n_embd=8, block_size=16,
        max_iters=1, eval_interval=1, eval_iters=1, quiet=True, device="cpu",
    )  # fmt: skip
    train_run(other, values, say=lambda s: None)
    with pytest.raises(ValueError, match="must read the teacher's tokenizer"):
        distill(tmp_path / "bad", teacher, base=str(other))


def test_a_student_checkpoint_grows_the_chat_tokens_of_its_teacher(tmp_path):
    """Teacher: a base chat-tuned on a task (its tokenizer gained the chat tokens).
    Student: the same base, distilled on the task in the teacher's chat template."""
    base = tmp_path / "base"
    values = dict(
        data="addition:digits=1", samples=200, n_layer=1, n_head=1, n_embd=16, block_size=24,
        max_iters=2, eval_interval=2, eval_iters=1, quiet=True, device="cpu",
    )  # fmt: skip
    train_run(base, values, say=lambda s: None)
    chat = {"data": "addition:digits=1", **QUICK, "max_iters": 2, "eval_interval": 2}
    sft_run(tmp_path / "tutor", {"base": str(base), "template": "chat", **chat}, say=print)
    lines: list[str] = []
    values = {"teacher": str(tmp_path / "tutor"), "base": str(base), **chat}
    distill_run(tmp_path / "student", values, say=lines.append)
    assert any("grown 13 -> 17" in line for line in lines), lines
    assert ChatTemplate.load(tmp_path / "student" / "last").end == "<|end|>"


def test_chat_template_needs_a_teacher_that_has_one(teacher, tmp_path):
    with pytest.raises(ValueError, match="the teacher has no chat template"):
        distill(tmp_path / "x", teacher, data="addition:digits=1", template="chat")


def test_distillation_settings_are_checked(teacher, tmp_path):
    with pytest.raises(ValueError, match="jsd beta"):
        distill(tmp_path / "x", teacher, divergence="jsd", beta=1.0)
    with pytest.raises(ValueError, match="--teacher"):
        distill_run(tmp_path / "y", {"base": "gpt", "data": CORPUS}, say=lambda s: None)


def test_distillation_on_task_examples_learns_the_answers_only(tmp_path):
    """On a language task the rows are SFT's: the loss counts the answer tokens only."""
    base = tmp_path / "base"
    values = dict(
        data="addition:digits=1", samples=200, n_layer=1, n_head=1, n_embd=16, block_size=24,
        max_iters=2, eval_interval=2, eval_iters=1, quiet=True, device="cpu",
    )  # fmt: skip
    train_run(base, values, say=lambda s: None)
    lines: list[str] = []
    values = {"teacher": str(base), "base": "gpt", "n_layer": 1, "n_embd": 8, "n_head": 1}
    distill_run(tmp_path / "s", {**values, "data": "addition:digits=1", **QUICK}, say=lines.append)
    data = next(line for line in lines if line.startswith("data "))
    assert "learned (the replies)" in data and "270 train + 30 validation" in data
    assert ChatTemplate.load(tmp_path / "s" / "last").special_tokens == []  # the plain format
