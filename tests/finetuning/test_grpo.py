"""GRPO against TRL's ``GRPOTrainer`` (trl 0.28, ``trl/trainer/grpo_trainer.py``).

The loss is held against ``GRPOTrainer._compute_loss`` itself, called on a stand-in
object carrying what that method reads for the plain token-level losses (lines
1951-2131): ``_get_per_token_logps_and_entropies`` (here a function returning fixed
log-probs, so no model runs), ``top_entropy_quantile = 1``, ``off_policy_mask_threshold =
None``, ``importance_sampling_level = "token"``, ``beta``, ``args.use_bias_correction_kl``,
``args.delta``, ``loss_type``, ``epsilon_low`` / ``epsilon_high``, ``use_vllm = False``,
``model.training``, ``current_gradient_accumulation_steps = 1``, ``max_completion_length``,
``accelerator.gather`` / ``num_processes`` and ``_metrics``.

The advantages live inside ``_generate_and_score_completions``, which samples, so they
are held against its lines 1736-1760 copied below (``sum_then_normalize``, one reward).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from trl_peer import IdentityAccelerator, metrics_store

from scratchllm.finetuning import group_advantages, grpo_loss

# our reduction -> TRL's loss_type
TRL_LOSS_TYPE = {"sequence": "grpo", "token": "bnpo", "dr_grpo": "dr_grpo"}


def _trl_advantages(rewards, num_generations, scale_rewards):
    """trl/trainer/grpo_trainer.py (0.28) lines 1737-1760."""
    mean_grouped_rewards = rewards.view(-1, num_generations).mean(dim=1)
    mean_grouped_rewards = mean_grouped_rewards.repeat_interleave(num_generations, dim=0)
    if scale_rewards in ["group", "none"]:
        std_rewards = rewards.view(-1, num_generations).std(dim=1)
        std_rewards = std_rewards.repeat_interleave(num_generations, dim=0)
    elif scale_rewards == "batch":
        std_rewards = rewards.std().expand_as(rewards)
    advantages = rewards - mean_grouped_rewards
    if scale_rewards != "none":
        advantages = advantages / (std_rewards + 1e-4)
    is_std_zero = torch.isclose(std_rewards, torch.zeros_like(std_rewards))
    return advantages, is_std_zero


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("seed", range(2))
def test_group_advantages_equal_trl(scale, seed):
    g = torch.Generator().manual_seed(seed)
    G = 4
    rewards = torch.randint(0, 2, (6 * G,), generator=g).double()  # a verifier's 0/1
    rewards[:G] = 1.0  # one all-correct group
    rewards[G : 2 * G] = 0.0  # one all-wrong group
    partial = 0.5 * torch.rand(G, generator=g, dtype=torch.float64)
    rewards[2 * G : 3 * G] += partial  # partial credit: real-valued rewards
    theirs, trl_zero = _trl_advantages(rewards, G, scale)
    ours = group_advantages(rewards, G, scale=scale)
    torch.testing.assert_close(ours.advantages, theirs, rtol=0, atol=1e-12)
    if scale != "batch":  # TRL's batch mode flags the batch std; ours always the groups'
        assert torch.equal(ours.zero_std, trl_zero)
    zero_groups = int((rewards.view(-1, G).amax(1) == rewards.view(-1, G).amin(1)).sum())
    assert ours.num_zero_std_groups == zero_groups >= 2
    assert ours.num_groups == 6


def test_group_advantages_hand_computed_and_ddof():
    # group [1, 0, 0, 0]: mean 0.25; sample std sqrt((0.5625 + 3 * 0.0625) / 3) = 0.5
    a = group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64), 4)
    torch.testing.assert_close(
        a.advantages, torch.tensor([0.75, -0.25, -0.25, -0.25]) / 0.5001, check_dtype=False
    )
    # population std sqrt(0.75 / 4) = 0.4330...
    p = group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64), 4, ddof=0)
    pop = torch.tensor([1.0, 0.0, 0.0, 0.0]).std(correction=0).item()
    assert p.advantages[0].item() == pytest.approx(0.75 / (pop + 1e-4))
    assert a.num_zero_std_groups == 0 and not a.zero_std.any()


def _trl_loss(
    trl,
    loss_type,
    logps,
    advantages,
    mask,
    old=None,
    ref=None,
    beta=0.0,
    eps_low=0.2,
    eps_high=0.2,
    max_completion_length=None,
    num_items=None,
):
    B, T = logps.shape
    stand_in = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *args, **kwargs: (logps, torch.zeros(B, T)),
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level="token",
        beta=beta,
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None),
        loss_type=loss_type,
        epsilon_low=eps_low,
        epsilon_high=eps_high,
        use_vllm=False,
        model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1,
        max_completion_length=max_completion_length or T,
        accelerator=IdentityAccelerator(),
        _metrics=metrics_store(),
    )
    inputs = {
        "prompt_ids": torch.zeros(B, 2, dtype=torch.long),
        "prompt_mask": torch.ones(B, 2, dtype=torch.long),
        "completion_ids": torch.zeros(B, T, dtype=torch.long),
        "completion_mask": mask.long(),
        "advantages": advantages,
    }
    if old is not None:
        inputs["old_per_token_logps"] = old
    if ref is not None:
        inputs["ref_per_token_logps"] = ref
    if num_items is not None:
        inputs["num_items_in_batch"] = num_items
    loss = trl.GRPOTrainer._compute_loss(stand_in, None, inputs)
    return loss, stand_in._metrics["train"]


def _rollout(seed: int, B: int = 6, T: int = 7):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([7, 6, 4, 3, 1, 5])[:B]
    mask = torch.arange(T)[None, :] < lengths[:, None]
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
    logps = (old + 0.5 * torch.randn(B, T, generator=g, dtype=torch.float64)).requires_grad_(True)
    ref = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    return logps, old, ref, adv, mask


@pytest.mark.parametrize("reduction", ["sequence", "token", "dr_grpo"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("reused", [False, True])
def test_loss_equals_trl_compute_loss(trl, reduction, beta, reused):
    logps, old, ref, adv, mask = _rollout(seed=3)
    old = old if reused else None  # a reused batch has old log-probs, and its ratios clip
    kwargs = dict(
        old=old, ref=ref if beta else None, beta=beta, eps_high=0.28, max_completion_length=10
    )
    theirs, metrics = _trl_loss(trl, TRL_LOSS_TYPE[reduction], logps, adv, mask, **kwargs)
    out = grpo_loss(
        logps,
        adv,
        mask,
        old_logprobs=old,
        ref_logprobs=ref if beta else None,
        beta=beta,
        clip_eps=0.2,
        clip_eps_high=0.28,
        reduction=reduction,
        max_completion_length=10,
    )
    torch.testing.assert_close(out.loss, theirs, rtol=1e-12, atol=1e-12)
    (g_theirs,) = torch.autograd.grad(theirs, logps)
    (g_ours,) = torch.autograd.grad(out.loss, logps)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-12, atol=1e-12)
    assert float(out.clip_ratio_low) == pytest.approx(metrics["clip_ratio/low_mean"][0])
    assert float(out.clip_ratio_high) == pytest.approx(metrics["clip_ratio/high_mean"][0])
    assert float(out.clip_ratio) == pytest.approx(metrics["clip_ratio/region_mean"][0])
    if beta:
        assert float(out.kl) == pytest.approx(metrics["kl"][0], rel=1e-12)
    else:
        assert out.kl is None and "kl" not in metrics
    if reused:
        assert float(out.clip_ratio) > 0  # the case exercises the clip


def test_token_reduction_with_a_shared_count_equals_trl_dapo(trl):
    """DAPO normalises by the tokens of the whole accumulated batch (``num_items_in_batch``)."""
    logps, old, _, adv, mask = _rollout(seed=4)
    theirs, _ = _trl_loss(trl, "dapo", logps, adv, mask, old=old, num_items=40)
    out = grpo_loss(logps, adv, mask, old_logprobs=old, reduction="token", num_tokens=40)
    torch.testing.assert_close(out.loss, theirs, rtol=1e-12, atol=1e-12)


def test_reductions_weigh_tokens_as_documented():
    # ratio 1 (first pass), no KL: every token's loss is -A of its sequence
    adv = torch.tensor([1.0, -1.0], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    logps = torch.zeros(2, 4, dtype=torch.float64)
    seq = grpo_loss(logps, adv, mask, reduction="sequence").loss  # mean(-1, +1) = 0
    tok = grpo_loss(logps, adv, mask, reduction="token").loss  # (-4 + 1) / 5
    dr = grpo_loss(logps, adv, mask, reduction="dr_grpo", max_completion_length=8).loss  # -3 / 16
    assert (seq.item(), tok.item(), dr.item()) == pytest.approx((0.0, -0.6, -3 / 16))


def test_first_pass_gradient_is_the_policy_gradient():
    """Ratio 1: the loss's gradient is -A / |o| per token (sequence reduction)."""
    logps = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    adv = torch.tensor([2.0, -1.0], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    out = grpo_loss(logps, adv, mask)
    assert out.loss.item() == pytest.approx(-0.5, abs=1e-12)  # mean over sequences of -A
    out.loss.backward()
    expected = torch.tensor([[-2 / 3] * 3, [0.5, 0.5, 0.0]], dtype=torch.float64) / 2
    torch.testing.assert_close(logps.grad, expected)


def test_errors_name_the_problem():
    z = torch.zeros(2, 3)
    m = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(torch.zeros(4), 1)
    with pytest.raises(ValueError, match="do not split into groups of 3"):
        group_advantages(torch.zeros(4), 3)
    with pytest.raises(ValueError, match="ddof"):
        group_advantages(torch.zeros(4), 2, ddof=2)
    with pytest.raises(ValueError, match="needs ref_logprobs"):
        grpo_loss(z, torch.zeros(2), m, beta=0.1)
    with pytest.raises(ValueError, match="reduction must be one of"):
        grpo_loss(z, torch.zeros(2), m, reduction="batch")
    with pytest.raises(ValueError, match="advantages shape"):
        grpo_loss(z, torch.zeros(3), m)
