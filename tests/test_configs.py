"""The configuration dataclasses are importable without torch (for --help, the NumPy GPT)."""

import subprocess
import sys

import pytest

from scratchllm import configs, models, training


def test_configs_import_no_torch():
    code = (
        "import sys, scratchllm.configs as c; c.GPTConfig(); c.TrainConfig(); "
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_models_and_training_reexport_the_same_classes():
    assert models.GPTConfig is configs.GPTConfig
    assert models.MLPConfig is configs.MLPConfig
    assert models.RNNConfig is configs.RNNConfig
    assert models.NGramConfig is configs.NGramConfig
    assert training.TrainConfig is configs.TrainConfig


@pytest.mark.parametrize("family", sorted(configs.CONFIGS))
def test_every_family_config_is_registered_with_its_model(family):
    assert models.base._FAMILIES[family].config_class is configs.CONFIGS[family]


def test_the_schedule_imports_no_torch():
    code = (
        "import sys; from scratchllm.training.schedule import lr_at; "
        "from scratchllm.training import TrainConfig; lr_at(0, TrainConfig()); "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
