"""The elementwise work split over threads (``numpy_gpt.parallel``) gives the very numbers
one thread gives: each row is computed alone, whatever the split."""

from __future__ import annotations

import numpy as np
import pytest

from scratchllm.configs import GPTConfig
from scratchllm.numpy_gpt import NumpyGPT, parallel
from scratchllm.numpy_gpt.optim import AdamW


def two_steps(threads: int, act: str) -> tuple[list[float], dict[str, np.ndarray]]:
    parallel.set_num_threads(threads)
    try:
        config = GPTConfig(n_layer=2, n_head=4, n_embd=64, block_size=64, vocab_size=300,
                           act=act, dropout=0.1)  # fmt: skip
        model = NumpyGPT(config, seed=0).train()
        model.rng = np.random.default_rng(1)
        opt = AdamW(model)
        rng = np.random.default_rng(2)
        losses = []
        for _ in range(2):
            ids = rng.integers(0, 300, size=(8, 65))
            _, loss, grads = model.forward_backward(ids[:, :-1], ids[:, 1:], label_smoothing=0.1)
            opt.step(grads, 1e-3)
            losses.append(loss)
        return losses, model.params
    finally:
        parallel.set_num_threads(1)


@pytest.mark.parametrize("act", ["gelu", "gelu_tanh"])
def test_three_threads_give_the_numbers_of_one(act):
    assert len(parallel.split_rows(8, 4 * 64 * 64)) == 1  # one thread: one part
    parallel.set_num_threads(3)
    try:  # the sizes of this test are split: attention by rows, MLP, loss, AdamW
        assert len(parallel.split_rows(8, 4 * 64 * 64)) == 2
        assert len(parallel.split_rows(8 * 64, 256)) == 2
        assert len(parallel.split_rows(8 * 64, 300)) == 2
    finally:
        parallel.set_num_threads(1)
    one, p1 = two_steps(1, act)
    three, p3 = two_steps(3, act)
    assert one == three
    for name in p1:
        np.testing.assert_array_equal(p1[name], p3[name], err_msg=name)


def test_set_num_threads_checks_its_argument():
    with pytest.raises(ValueError, match="positive integer"):
        parallel.set_num_threads(0)
    parallel.set_num_threads(None)
    assert parallel.get_num_threads() == parallel.available_cores()
    parallel.set_num_threads(1)
