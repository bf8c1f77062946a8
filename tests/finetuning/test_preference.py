"""DPO and its variants against TRL's ``DPOTrainer.dpo_loss`` (trl 0.28).

``dpo_loss`` is a method; it is called here on a minimal stand-in object carrying exactly
the attributes its code reads for these loss types (``trl/trainer/dpo_trainer.py``,
``DPOTrainer.dpo_loss``): ``accelerator.device``, ``reference_free``,
``f_divergence_type`` (``"reverse_kl"``, DPOConfig's default: the plain DPO logits),
``beta`` and ``label_smoothing``. The reward accuracy and margin are the expressions of
``get_batch_loss_metrics`` (``(chosen_rewards > rejected_rewards).float()`` and the mean of
``chosen_rewards - rejected_rewards``).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from trl_peer import IdentityAccelerator

from scratchllm.finetuning import dpo_loss, sequence_logprobs


def _trl_self(beta: float, label_smoothing: float) -> SimpleNamespace:
    return SimpleNamespace(
        accelerator=IdentityAccelerator(),
        reference_free=False,
        f_divergence_type="reverse_kl",
        beta=beta,
        label_smoothing=label_smoothing,
    )


def _logps(seed: int, B: int = 16):
    g = torch.Generator().manual_seed(seed)
    # summed log-probs of completions of a few tokens: negative, spread over a few nats
    x = -torch.rand(4, B, generator=g, dtype=torch.float64) * 20 - 1
    return x[0].requires_grad_(True), x[1].requires_grad_(True), x[2], x[3]


CASES = [
    ("sigmoid", 0.0),
    ("sigmoid", 0.1),
    ("sigmoid", 0.25),
    ("sigmoid", 0.4),
    ("ipo", 0.0),
    ("hinge", 0.0),
]


@pytest.mark.parametrize("beta", [0.1, 0.5])
@pytest.mark.parametrize(("loss_type", "label_smoothing"), CASES)
def test_equals_trl_dpo_loss(trl, loss_type, label_smoothing, beta):
    pc, pr, rc, rr = _logps(seed=int(beta * 10) + len(loss_type))
    theirs, t_chosen, t_rejected = trl.DPOTrainer.dpo_loss(
        _trl_self(beta, label_smoothing), pc, pr, rc, rr, loss_type=loss_type
    )
    out = dpo_loss(pc, pr, rc, rr, beta=beta, loss_type=loss_type, label_smoothing=label_smoothing)
    torch.testing.assert_close(out.losses, theirs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.chosen_rewards, t_chosen, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.rejected_rewards, t_rejected, rtol=1e-12, atol=1e-12)
    assert float(out.reward_accuracy) == float((t_chosen > t_rejected).float().mean())
    torch.testing.assert_close(out.reward_margin, (t_chosen - t_rejected).mean())
    g_theirs = torch.autograd.grad(theirs.mean(), (pc, pr))
    g_ours = torch.autograd.grad(out.loss, (pc, pr))
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_loss_is_ln2_when_policy_equals_reference(label_smoothing):
    pc, pr, _, _ = _logps(seed=1)
    out = dpo_loss(pc, pr, pc.detach(), pr.detach(), beta=0.3, label_smoothing=label_smoothing)
    assert out.loss.item() == pytest.approx(math.log(2), abs=1e-12)
    assert float(out.reward_margin) == 0.0 and float(out.reward_accuracy) == 0.0


def test_hand_computed_pair():
    # h = (-1 - -3) - (-2 - -2) = 2; beta = 0.5: -log sigmoid(1) = log(1 + e^-1)
    args = [torch.tensor([v], dtype=torch.float64) for v in (-1.0, -3.0, -2.0, -2.0)]
    assert dpo_loss(*args, beta=0.5).loss.item() == pytest.approx(math.log1p(math.exp(-1)))
    assert dpo_loss(*args, beta=0.5, loss_type="ipo").loss.item() == pytest.approx(1.0)  # (2-1)^2
    assert dpo_loss(*args, beta=0.5, loss_type="hinge").loss.item() == pytest.approx(0.0)
    out = dpo_loss(*args, beta=0.5)
    assert float(out.chosen_rewards) == 0.5 and float(out.rejected_rewards) == -0.5
    assert float(out.reward_accuracy) == 1.0 and float(out.reward_margin) == 1.0


def test_a_gradient_step_on_logits_raises_the_preference():
    """End to end from logits: one step of DPO makes the chosen completion likelier
    relative to the rejected one, against a frozen reference."""
    g = torch.Generator().manual_seed(2)
    B, T, V = 4, 6, 7
    logits = torch.randn(2 * B, T, V, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, V, (2 * B, T), generator=g)
    mask = torch.zeros(2 * B, T, dtype=torch.bool)
    mask[:, 2:] = True  # the completion after a 2-token prompt

    def margin(z):
        lp = sequence_logprobs(z, labels, mask)
        return lp[:B] - lp[B:]

    ref = sequence_logprobs(logits.detach(), labels, mask)
    before = margin(logits.detach())
    policy = sequence_logprobs(logits, labels, mask)  # [2B]: the chosen, then the rejected
    out = dpo_loss(policy[:B], policy[B:], ref[:B], ref[B:], beta=0.1)
    out.loss.backward()
    after = margin(logits.detach() - 0.5 * logits.grad)
    assert (after > before).all()


def test_errors_name_the_problem():
    pc, pr, rc, rr = _logps(seed=3)
    with pytest.raises(ValueError, match="label_smoothing applies to loss_type='sigmoid'"):
        dpo_loss(pc, pr, rc, rr, loss_type="ipo", label_smoothing=0.1)
    with pytest.raises(ValueError, match=r"label_smoothing .* must be in \[0, 0.5\)"):
        dpo_loss(pc, pr, rc, rr, label_smoothing=0.5)
    with pytest.raises(ValueError, match="loss_type must be one of"):
        dpo_loss(pc, pr, rc, rr, loss_type="kto")
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(pc, pr, rc, rr, beta=0.0)
    with pytest.raises(ValueError, match="ref_rejected shape"):
        dpo_loss(pc, pr, rc, rr[:-1])
    with pytest.raises(ValueError, match="one per pair"):
        dpo_loss(pc[None], pr[None], rc[None], rr[None])
