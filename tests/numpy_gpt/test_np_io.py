"""One checkpoint directory for both engines: NumPy writes what PyTorch reads, and back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from np_twins import numpy_model, tiny_config, torch_twin
from safetensors.numpy import load_file, save_file

from scratchllm.generation import generate as torch_generate
from scratchllm.models import GPT, MLPConfig, load
from scratchllm.models.mlp import MLPLM
from scratchllm.numpy_gpt import generate, load_model, read_gpt_config, save_model


@pytest.mark.parametrize("changes", [{}, {"tie_weights": False, "pos": "sinusoidal"}])
def test_numpy_writes_what_pytorch_loads(tmp_path, changes):
    model = numpy_model(tiny_config(**changes), "float32")
    save_model(model, tmp_path / "np")
    twin = torch_twin(model)
    twin.save(tmp_path / "pt")
    # the same files: config.json's content and the tensors' names, shapes and dtypes
    ours, theirs = (json.loads((tmp_path / d / "config.json").read_text()) for d in ("np", "pt"))
    assert ours == theirs
    a, b = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("np", "pt"))
    assert {k: (v.shape, v.dtype) for k, v in a.items()} == {
        k: (v.shape, v.dtype) for k, v in b.items()
    }
    loaded = load(tmp_path / "np")
    x = np.random.default_rng(0).integers(0, model.vocab_size, size=(2, 9))
    np.testing.assert_allclose(
        loaded(torch.from_numpy(x))[0].detach().numpy(), model(x)[0], rtol=1e-4, atol=1e-6
    )
    prompts = [[1, 2, 3], [4, 5, 6]]
    np.testing.assert_array_equal(
        torch_generate(loaded, prompts, 15, temperature=0).numpy(),
        generate(model, prompts, 15, temperature=0),
    )


@pytest.mark.parametrize("changes", [{}, {"tie_weights": False, "bias": False}])
def test_pytorch_writes_what_numpy_loads(tmp_path, changes):
    torch.manual_seed(0)
    twin = GPT(tiny_config(**changes)).eval()
    twin.save(tmp_path)
    model = load_model(tmp_path)
    assert not model.training and model.dtype == np.float32
    x = np.random.default_rng(1).integers(0, model.vocab_size, size=(2, 9))
    np.testing.assert_allclose(
        model(x)[0], twin(torch.from_numpy(x))[0].detach().numpy(), rtol=1e-4, atol=1e-6
    )
    np.testing.assert_array_equal(
        generate(model, [[5, 6]], 12, temperature=0.9, top_k=10, seed=3),
        torch_generate(twin, [[5, 6]], 12, temperature=0.9, top_k=10, seed=3).numpy(),
    )
    assert load_model(tmp_path, dtype="float64").dtype == np.float64


def test_a_float64_model_round_trips_exactly(tmp_path):
    model = numpy_model(tiny_config(), "float64")
    save_model(model, tmp_path)
    again = load_model(tmp_path)
    assert again.dtype == np.float64
    for name, p in model.params.items():
        np.testing.assert_array_equal(again.params[name], p)


def test_what_numpy_cannot_load_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model config here"):
        load_model(tmp_path / "nothing")
    MLPLM(MLPConfig(vocab_size=5)).save(tmp_path / "mlp")
    with pytest.raises(ValueError, match="'mlp' model; the NumPy engine runs GPT models only"):
        load_model(tmp_path / "mlp")
    GPT(tiny_config(pos="rope")).save(tmp_path / "rope")
    with pytest.raises(ValueError, match="does not implement pos='rope'"):
        read_gpt_config(tmp_path / "rope")

    good = tmp_path / "good"
    save_model(numpy_model(tiny_config()), good)
    weights = good / "model.safetensors"
    tensors = load_file(str(weights))
    del tensors["transformer.ln_f.bias"]
    save_file(tensors, str(weights))
    with pytest.raises(ValueError, match=r"missing \['transformer.ln_f.bias'\]"):
        load_model(good)
    tensors["transformer.ln_f.bias"] = np.zeros(7, np.float32)
    save_file(tensors, str(weights))
    with pytest.raises(ValueError, match=r"transformer.ln_f.bias has shape \(7,\)"):
        load_model(good)
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot read model weights"):
        load_model(good)
    (good / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a scratchllm model config"):
        load_model(good)
