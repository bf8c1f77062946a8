"""Bradley-Terry against TRL's ``RewardTrainer.compute_loss`` (trl 0.28).

``compute_loss`` is a method that runs the model; it is called on a stand-in carrying what
its code reads (``trl/trainer/reward_trainer.py``): ``model.training``,
``args.center_rewards_coefficient``, ``accelerator.gather`` / ``gather_for_metrics``,
``_total_train_tokens`` and ``_metrics``; the "model" is a function returning the fixed
rewards as ``logits [2B, 1]``, chosen first, as TRL's collator stacks them.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from trl_peer import IdentityAccelerator, metrics_store

from scratchllm.finetuning import bradley_terry_loss, pair_accuracy


def _trl_loss(trl, chosen, rejected, margin=None, center=None):
    rewards = torch.cat([chosen, rejected])[:, None]  # [2B, 1]
    stand_in = SimpleNamespace(
        model=SimpleNamespace(training=True),
        args=SimpleNamespace(center_rewards_coefficient=center),
        accelerator=IdentityAccelerator(),
        _total_train_tokens=0,
        _metrics=metrics_store(),
    )
    inputs = {"attention_mask": torch.ones(2 * len(chosen), 3)}
    if margin is not None:
        inputs["margin"] = margin
    loss = trl.RewardTrainer.compute_loss(
        stand_in, lambda **kw: SimpleNamespace(logits=rewards), inputs
    )
    return loss, stand_in._metrics["train"]


@pytest.mark.parametrize("with_margin", [False, True])
@pytest.mark.parametrize("center", [None, 0.01])
def test_equals_trl_reward_trainer(trl, with_margin, center):
    g = torch.Generator().manual_seed(int(with_margin) + 2 * (center is not None))
    chosen = torch.randn(12, generator=g, dtype=torch.float64, requires_grad=True)
    rejected = torch.randn(12, generator=g, dtype=torch.float64, requires_grad=True)
    margin = torch.rand(12, generator=g, dtype=torch.float64) if with_margin else None
    theirs, metrics = _trl_loss(trl, chosen, rejected, margin, center)
    out = bradley_terry_loss(chosen, rejected, margin=margin, center_coef=center or 0.0)
    torch.testing.assert_close(out.loss, theirs, rtol=1e-12, atol=1e-12)
    assert float(out.accuracy) == pytest.approx(metrics["accuracy"][0], abs=1e-12)
    assert float(out.margin) == pytest.approx(metrics["margin"][0], abs=1e-12)
    g_theirs = torch.autograd.grad(theirs, (chosen, rejected))
    g_ours = torch.autograd.grad(out.loss, (chosen, rejected))
    for a, b in zip(g_ours, g_theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_hand_values_and_ties():
    r = torch.tensor([0.5, 2.0, -1.0])
    assert bradley_terry_loss(r, r).loss.item() == pytest.approx(math.log(2))
    # one pair, r_w - r_l = 1, margin 1: -log sigmoid(0) = ln 2
    one = torch.tensor([1.0]), torch.tensor([0.0])
    assert bradley_terry_loss(*one, margin=1.0).loss.item() == pytest.approx(math.log(2))
    assert bradley_terry_loss(*one).loss.item() == pytest.approx(math.log1p(math.exp(-1)))
    acc = pair_accuracy(torch.tensor([1.0, 0.0, 2.0, 3.0]), torch.tensor([0.0, 0.0, 5.0, 1.0]))
    assert float(acc) == 0.5  # the tie counts as wrong


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="one per pair"):
        bradley_terry_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="center_coef"):
        bradley_terry_loss(torch.zeros(3), torch.zeros(3), center_coef=-1.0)
