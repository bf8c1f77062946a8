"""The one checkpoint reader reads the NumPy engine's runs too: their trainer state has no
torch RNG tensor (that engine has no torch), which is not a reason to refuse them."""

from __future__ import annotations

import pytest
from conftest import tiny_config

from scratchllm.checkpoint import load_checkpoint
from scratchllm.configs import GPTConfig
from scratchllm.numpy_gpt import NumpyGPT
from scratchllm.numpy_gpt.trainer import NumpyTrainer


def test_a_numpy_engine_run_loads_with_its_trainer_state(char_data, tmp_path):
    config = GPTConfig(vocab_size=char_data.vocab_size, n_layer=1, n_head=2, n_embd=16,
                       block_size=16)  # fmt: skip
    NumpyTrainer(NumpyGPT(config, seed=0), char_data, tiny_config(tmp_path, max_iters=2,
                 eval_interval=2, validity_samples=0)).train()  # fmt: skip
    ckpt = load_checkpoint(tmp_path)  # last/, with trainer_state.{json,safetensors}
    assert ckpt.step == 2 and ckpt.state["engine"] == "numpy"
    assert "rng.torch" not in ckpt.tensors and any(k.startswith("optim.") for k in ckpt.tensors)
    assert ckpt.model.config == config
    with pytest.raises(ValueError, match="no torch RNG state .* NumPy engine"):
        ckpt.restore_rng()  # what a PyTorch resume would need, said by name
