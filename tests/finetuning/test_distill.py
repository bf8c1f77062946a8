"""Distillation: the divergence term against TRL's ``GKDTrainer.generalized_jsd_loss``.

TRL's one ``beta`` maps onto our names as follows (read from its source, trl 0.28
``trl/experimental/gkd/gkd_trainer.py``, ``generalized_jsd_loss``): ``beta == 0`` computes
``F.kl_div(student_log_probs, teacher_log_probs)`` = KL(teacher || student), our
``forward_kl``; ``beta == 1`` swaps them, our ``reverse_kl``; any other beta is the
generalized JSD with the *teacher's* weight ``beta`` in the mixture, our ``jsd`` with the
same beta. 0.5 alone cannot tell the two sides apart (JSD(0.5) is symmetric), so the
test also runs 0.1 and 0.9. TRL's reduction with labels is ``sum / (labels != -100).sum()``
and it has no ``T^2`` factor and no cross-entropy: ours with ``alpha=0``, divided by
``T^2``, is the same number.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scratchllm.finetuning import distillation_loss, token_divergence
from scratchllm.models.base import lm_loss

TRL_BETA = {"forward_kl": 0.0, "reverse_kl": 1.0}


def _case(seed: int, B: int = 2, T: int = 5, V: int = 9):
    g = torch.Generator().manual_seed(seed)
    student = (torch.randn(B, T, V, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    teacher = torch.randn(B, T, V, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, V, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, :2] = False  # a prompt
    mask[1, -1] = False  # padding
    return student, teacher, labels, mask


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize(
    ("divergence", "beta"),
    [("forward_kl", None), ("jsd", 0.1), ("jsd", 0.5), ("jsd", 0.9), ("reverse_kl", None)],
)
def test_divergence_equals_trl_generalized_jsd(trl, divergence, beta, temperature):
    student, teacher, labels, mask = _case(seed=int(10 * temperature + 10 * (beta or 0)))
    trl_beta = TRL_BETA.get(divergence, beta)
    trl_labels = labels.masked_fill(~mask, -100)  # TRL masks with -100 in the labels
    theirs = trl.GKDTrainer.generalized_jsd_loss(
        student, teacher, labels=trl_labels, beta=trl_beta, temperature=temperature
    )
    out = distillation_loss(
        student,
        teacher,
        labels,
        mask,
        alpha=0.0,
        temperature=temperature,
        divergence=divergence,
        beta=0.5 if beta is None else beta,
    )
    ours = out.loss / temperature**2
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.divergence, theirs, rtol=1e-12, atol=1e-12)
    (g_theirs,) = torch.autograd.grad(theirs, student)
    (g_ours,) = torch.autograd.grad(ours, student)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-10, atol=1e-12)


def test_kl_directions_equal_torch_distributions():
    student, teacher, _, _ = _case(seed=3)
    S = torch.distributions.Categorical(logits=student.detach())
    T = torch.distributions.Categorical(logits=teacher)
    fwd = token_divergence(student, teacher, "forward_kl")
    rev = token_divergence(student, teacher, "reverse_kl")
    torch.testing.assert_close(fwd, torch.distributions.kl_divergence(T, S), rtol=0, atol=1e-12)
    torch.testing.assert_close(rev, torch.distributions.kl_divergence(S, T), rtol=0, atol=1e-12)


def test_jsd_half_is_symmetric_bounded_by_ln2_and_weights_the_teacher_by_beta():
    student, teacher, _, _ = _case(seed=4)
    half = token_divergence(student, teacher, "jsd", beta=0.5)
    torch.testing.assert_close(half, token_divergence(teacher, student, "jsd", beta=0.5))
    assert (half >= 0).all() and (half <= math.log(2) + 1e-12).all()
    # beta is the teacher's weight: swapping the models maps beta to 1 - beta
    a = token_divergence(student, teacher, "jsd", beta=0.2)
    b = token_divergence(teacher, student, "jsd", beta=0.8)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_hard_label_term_is_the_models_masked_cross_entropy_and_alpha_mixes():
    student, teacher, labels, mask = _case(seed=5)
    t = 2.0
    out = distillation_loss(student, teacher, labels, mask, alpha=0.3, temperature=t)
    torch.testing.assert_close(out.ce, lm_loss(student.detach(), labels, mask))
    torch.testing.assert_close(out.loss, 0.3 * out.ce + 0.7 * t**2 * out.divergence)
    assert int(out.num_tokens) == int(mask.sum())
    hard = distillation_loss(student, teacher, labels, mask, alpha=1.0)
    torch.testing.assert_close(hard.loss, hard.ce)


def test_masked_positions_do_not_count():
    student, teacher, labels, mask = _case(seed=6)
    before = distillation_loss(student, teacher, labels, mask, alpha=0.5).loss
    s2, t2 = student.detach().clone(), teacher.clone()
    s2[~mask] = torch.randn_like(s2[~mask]) * 50
    t2[~mask] = torch.randn_like(t2[~mask]) * 50
    after = distillation_loss(s2, t2, labels.masked_fill(~mask, 3), mask, alpha=0.5).loss
    torch.testing.assert_close(before, after, rtol=0, atol=1e-12)


def test_teacher_gets_no_gradient_and_equal_models_cost_nothing():
    student, _, labels, mask = _case(seed=7)
    teacher = student.detach().clone().requires_grad_(True)
    for div in ("forward_kl", "reverse_kl", "jsd"):
        out = distillation_loss(student, teacher, labels, mask, alpha=0.0, divergence=div)
        assert abs(out.loss.item()) < 1e-12
        out.loss.backward()
        assert teacher.grad is None


def test_half_precision_logits_are_upcast():
    student, teacher, labels, mask = _case(seed=8)
    exact = distillation_loss(
        student.detach().bfloat16().double(),
        teacher.bfloat16().double(),
        labels,
        mask,
        divergence="jsd",
    )
    half = distillation_loss(
        student.detach().bfloat16(), teacher.bfloat16(), labels, mask, divergence="jsd"
    )
    assert half.loss.dtype == torch.float32
    torch.testing.assert_close(half.loss.double(), exact.loss, rtol=1e-5, atol=1e-6)


def test_teacher_that_rules_a_token_out_has_finite_loss_and_gradient():
    student, teacher, labels, mask = _case(seed=9)
    teacher = teacher.clone()
    teacher[..., 0] = float("-inf")  # p_T(0) = 0 exactly
    out = distillation_loss(student, teacher, labels.clamp(min=1), mask, alpha=0.0)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(student.grad).all()
    expected = (
        F.softmax(teacher, -1)
        * (F.log_softmax(teacher, -1).nan_to_num(0, 0, 0) - F.log_softmax(student.detach(), -1))
    ).sum(-1)
    torch.testing.assert_close(out.divergence, expected[mask].mean(), rtol=1e-12, atol=1e-12)


def test_errors_name_the_problem():
    student, teacher, labels, mask = _case(seed=10)
    with pytest.raises(ValueError, match=r"student vocabulary \(9\) differs from the teacher's"):
        distillation_loss(student, teacher[..., :-1], labels, mask)
    with pytest.raises(ValueError, match="'forward_kl'.*'reverse_kl'"):
        distillation_loss(student, teacher, labels, mask, divergence="jsd", beta=0.0)
    with pytest.raises(ValueError, match="divergence must be one of"):
        distillation_loss(student, teacher, labels, mask, divergence="tvd")
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(student, teacher, labels, mask, temperature=0.0)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(student, teacher, labels, mask, alpha=1.5)
    with pytest.raises(ValueError, match="no position counts"):
        distillation_loss(student, teacher, labels, torch.zeros_like(mask))
