"""The worked examples in the loss modules' docstrings stay true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "logprobs",
    "distill",
    "preference",
    "reward",
    "kl",
    "advantages",
    "ppo",
    "grpo",
    "passk",
    "verifier",
    "sequences",
    "pair_data",
    "rl_settings",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"scratchllm.finetuning.{name}")
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no worked example"
    assert result.failed == 0


def test_passk_imports_without_torch():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None\n"  # any torch import now fails
        "from scratchllm.finetuning import pass_at_k; print(pass_at_k(10, 1, 5))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0.5"


@pytest.mark.parametrize("module", ["scratchllm.configs.rl", "scratchllm.data.preferences"])
def test_rl_config_and_data_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
