"""The worked examples in the NumPy GPT's docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import scratchllm.numpy_gpt as package

MODULES = [f"scratchllm.numpy_gpt.{m.name}" for m in pkgutil.iter_modules(package.__path__)]


@pytest.mark.parametrize("name", ["scratchllm.numpy_gpt", *MODULES])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
