"""``keep_freed_memory``: glibc keeps freed blocks, so the next step's arrays reuse them."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from scratchllm.numpy_gpt.memory import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a glibc setting")
def test_it_takes_effect_once_and_changes_no_result():
    x = np.random.default_rng(0).standard_normal((300, 500))
    before = np.exp(x) * x
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # idempotent
    np.testing.assert_array_equal(np.exp(x) * x, before)
