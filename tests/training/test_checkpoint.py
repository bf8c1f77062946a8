"""Checkpoint files: round trip, no pickle, clear errors for every broken file, atomic swap
(including SIGKILL in the middle of a save)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import tiny_config, tiny_gpt

from scratchllm.tokenizers import CharTokenizer
from scratchllm.training import (
    TrainConfig,
    Trainer,
    configure_optimizer,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from scratchllm.training.checkpoint import recover


@pytest.fixture(scope="module")
def run_dir(char_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    Trainer(tiny_gpt(char_data.vocab_size), char_data, tiny_config(out, max_iters=3)).train()
    return out


def _copy(run_dir, tmp_path):
    import shutil

    dst = tmp_path / "ckpt"
    shutil.copytree(run_dir / "last", dst)
    return dst


def test_round_trip_with_optimizer_and_rng(tmp_path):
    torch.manual_seed(0)
    model = tiny_gpt(11)
    tok = CharTokenizer.train("abcdefghijk")
    opt = configure_optimizer(model, TrainConfig())
    x = torch.randint(0, 11, (2, 6))
    model(x, x)[1].backward()
    opt.step()
    random.seed(5)
    np.random.seed(6)
    torch.manual_seed(7)
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(5)
    np.random.seed(6)
    torch.manual_seed(7)
    save_checkpoint(tmp_path / "c", model, tok, opt, state={"step": 9, "note": "hi"})
    random.random(), np.random.rand(), torch.rand(3)  # move every RNG on

    ckpt = load_checkpoint(tmp_path / "c")
    assert ckpt.step == 9 and ckpt.state["note"] == "hi"
    ckpt.restore_rng()
    assert (random.random(), np.random.rand()) == expected[:2]
    torch.testing.assert_close(torch.rand(3), expected[2], rtol=0, atol=0)
    fresh = configure_optimizer(ckpt.model, TrainConfig())
    ckpt.restore_optimizer(fresh)
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for pid in a["state"]:
        for key, value in a["state"][pid].items():
            torch.testing.assert_close(b["state"][pid][key], value, rtol=0, atol=0)
    # Only JSON and safetensors on disk: nothing a loader would unpickle.
    names = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert names == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "trainer_state.json",
        "trainer_state.safetensors",
    ]


def test_find_checkpoint(run_dir):
    assert find_checkpoint(run_dir) == run_dir / "last"
    assert find_checkpoint(run_dir, "best") == run_dir / "best"
    assert find_checkpoint(run_dir / "last") == run_dir / "last"
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        find_checkpoint(run_dir / "nope")


@pytest.mark.parametrize(
    "name, damage, error",
    [
        ("config.json", "delete", FileNotFoundError),
        ("model.safetensors", "delete", FileNotFoundError),
        ("tokenizer.json", "delete", FileNotFoundError),
        ("trainer_state.json", "delete", FileNotFoundError),
        ("trainer_state.safetensors", "delete", FileNotFoundError),
        ("config.json", "truncate", ValueError),
        ("model.safetensors", "truncate", ValueError),
        ("tokenizer.json", "truncate", ValueError),
        ("trainer_state.json", "truncate", ValueError),
        ("trainer_state.safetensors", "truncate", ValueError),
        ("model.safetensors", "garbage", ValueError),
        ("trainer_state.safetensors", "garbage", ValueError),
    ],
)
def test_broken_files_are_errors_naming_the_file(run_dir, tmp_path, name, damage, error):
    ckpt = _copy(run_dir, tmp_path)
    path = ckpt / name
    if damage == "delete":
        path.unlink()
    elif damage == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(b"\x00\x01not a tensor file" * 10)
    with pytest.raises(error) as e:
        load_checkpoint(ckpt)
    assert name in str(e.value)


def test_tokenizer_that_does_not_match_the_model(run_dir, tmp_path):
    ckpt = _copy(run_dir, tmp_path)
    CharTokenizer.train("xyz").save(ckpt)
    with pytest.raises(ValueError, match=r"tokenizer\.json: the tokenizer has 3 tokens"):
        load_checkpoint(ckpt)


def test_an_interrupted_swap_is_finished_by_readers(run_dir, tmp_path):
    ckpt = _copy(run_dir, tmp_path)
    # The state between the two renames: only .ckpt.old exists (and maybe a half .tmp).
    ckpt.replace(tmp_path / ".ckpt.old")
    (tmp_path / ".ckpt.tmp").mkdir()
    (tmp_path / ".ckpt.tmp" / "config.json").write_text("{")
    assert load_checkpoint(tmp_path / "ckpt").step == 3
    recover(tmp_path / "ckpt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


_SAVER = """
import sys, torch
sys.path.insert(0, {tests!r})
from conftest import tiny_gpt
from scratchllm.tokenizers import CharTokenizer
from scratchllm.training import TrainConfig, configure_optimizer, save_checkpoint
torch.set_num_threads(1)
model = tiny_gpt(30, block_size=64)
tok = CharTokenizer.train("abcdefghijklmnopqrstuvwxyz.,;!")
opt = configure_optimizer(model, TrainConfig())
i = 0
while True:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float(i))
    save_checkpoint({out!r}, model, tok, opt, state={{"step": i}})
    if i == 0:
        print("saved", flush=True)
    i += 1
"""


@pytest.mark.slow
def test_sigkill_during_saves_never_breaks_the_checkpoint(tmp_path):
    out = tmp_path / "run" / "last"
    script = _SAVER.format(tests=str(__import__("pathlib").Path(__file__).parent), out=str(out))
    rng = random.Random(0)
    steps = []
    for _ in range(2):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "saved"
            time.sleep(rng.uniform(0.05, 0.6))
        finally:
            proc.kill()  # SIGKILL: no cleanup, no finally blocks in the child
            proc.wait()
        ckpt = load_checkpoint(out)
        step = ckpt.step
        # Every tensor holds the value of one single save: no mix of two checkpoints.
        values = {float(p.detach().flatten()[0]) for p in ckpt.model.parameters()}
        assert values == {float(step)}
        steps.append(step)
    assert max(steps) > 0  # it was killed while saving repeatedly, not before
    json.loads((out / "trainer_state.json").read_text())
