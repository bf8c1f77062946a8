"""Token log-probabilities: against TRL's ``selective_log_softmax`` and the model's own loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scratchllm.finetuning import (
    entropy,
    masked_mean,
    sequence_logprobs,
    token_logprobs,
)
from scratchllm.models.base import lm_loss


def _batch(seed: int, B: int = 3, T: int = 6, V: int = 11, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g, dtype=dtype) * 3
    labels = torch.randint(0, V, (B, T), generator=g)
    # right padding of different lengths, and a prompt of 2 tokens that does not count
    lengths = torch.tensor([T, T - 2, 3])[:B]
    real = torch.arange(T)[None, :] < lengths[:, None]
    labels = labels.masked_fill(~real, -1)
    completion = real & (torch.arange(T)[None, :] >= 2)
    return logits, labels, completion


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_token_logprobs_equal_trl_selective_log_softmax(trl, seed):
    logits, labels, completion = _batch(seed)
    ours = token_logprobs(logits, labels, completion)
    # TRL gathers at every position; it needs a valid id where ours carries -1 padding
    theirs = trl.selective_log_softmax(logits, labels.clamp(min=0))
    torch.testing.assert_close(ours[completion], theirs[completion], rtol=0, atol=1e-12)
    assert (ours[~completion] == 0).all()


def test_sequence_sum_is_the_masked_cross_entropy_times_the_count():
    logits, labels, completion = _batch(3)
    total = sequence_logprobs(logits, labels, completion).sum()
    n = completion.sum()
    mean_ce = lm_loss(logits, labels, completion)  # the models' own loss, in float64 here
    torch.testing.assert_close(-total / n, mean_ce, rtol=1e-12, atol=1e-12)


def test_sum_and_mean_reductions_per_sequence():
    logits, labels, completion = _batch(4)
    per_token = F.log_softmax(logits, -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    for b in range(logits.shape[0]):
        expected = per_token[b][completion[b]]
        got_sum = sequence_logprobs(logits, labels, completion)[b]
        got_mean = sequence_logprobs(logits, labels, completion, reduction="mean")[b]
        torch.testing.assert_close(got_sum, expected.sum(), rtol=0, atol=1e-12)
        torch.testing.assert_close(got_mean, expected.mean(), rtol=0, atol=1e-12)


def test_padding_tokens_and_their_logits_never_matter():
    logits, labels, completion = _batch(5)
    before = sequence_logprobs(logits, labels, completion)
    noisy = logits.clone()
    noisy[~completion] = 1e4 * torch.randn_like(noisy[~completion])  # garbage where nothing counts
    after = sequence_logprobs(noisy, labels, completion)
    torch.testing.assert_close(before, after, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (torch.float64, torch.float64),  # kept: float64 tests stay exact
        (torch.float32, torch.float32),
        (torch.bfloat16, torch.float32),  # upcast: logsumexp in bf16 loses the digits
        (torch.float16, torch.float32),
    ],
)
def test_dtype_kept_or_upcast_from_half(dtype, expected):
    logits, labels, completion = _batch(6, dtype=torch.float64)
    got = token_logprobs(logits.to(dtype), labels, completion)
    assert got.dtype == expected
    exact = token_logprobs(logits.to(dtype).double(), labels, completion)
    torch.testing.assert_close(got.double(), exact, rtol=0, atol=1e-5)


def test_gradient_is_onehot_minus_softmax():
    logits, labels, completion = _batch(7)
    logits.requires_grad_(True)
    sequence_logprobs(logits, labels, completion).sum().backward()
    onehot = F.one_hot(labels.clamp(min=0), logits.shape[-1]).double()
    expected = (onehot - logits.detach().softmax(-1)) * completion[..., None]
    torch.testing.assert_close(logits.grad, expected, rtol=0, atol=1e-12)


def test_entropy_equals_trl_and_torch_distributions(trl):
    logits = torch.randn(2, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    ours = entropy(logits)
    torch.testing.assert_close(ours, trl.entropy_from_logits(logits), rtol=0, atol=1e-12)
    reference = torch.distributions.Categorical(logits=logits).entropy()
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-12)


def test_masked_mean():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 100.0, 100.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert float(masked_mean(x, mask)) == 2.0
    with pytest.raises(ValueError, match="empty mask"):
        masked_mean(x, torch.zeros_like(mask))


def test_bad_inputs_are_named():
    logits, labels, completion = _batch(9)
    with pytest.raises(ValueError, match="no counted token"):
        sequence_logprobs(logits, labels, torch.zeros_like(completion))
    with pytest.raises(ValueError, match=r"token ids in \[0, 11\)"):
        token_logprobs(logits, labels.masked_fill(completion, 11), completion)
    with pytest.raises(ValueError, match="labels shape"):
        token_logprobs(logits, labels[:, :-1])
    with pytest.raises(ValueError, match="mask shape"):
        token_logprobs(logits, labels, completion[:, :-1])
    with pytest.raises(ValueError, match="reduction"):
        sequence_logprobs(logits, labels, completion, reduction="max")
