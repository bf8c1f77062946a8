"""``keep_freed_memory``: glibc keeps freed blocks, so the next step's arrays reuse them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scratchllm.memory import keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a glibc setting")
def test_it_takes_effect_once_and_changes_no_result():
    x = np.random.default_rng(0).standard_normal((300, 500))
    before = np.exp(x) * x
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # idempotent
    np.testing.assert_array_equal(np.exp(x) * x, before)


# A fresh interpreter: runs ``setup``, then counts the page faults of a few training steps
# of a small GPT (its activations, gradients and temporaries freed and made again each step).
FAULTS_PER_STEP = """
import resource, torch
from scratchllm.models import GPT, GPTConfig, train_kernel
from scratchllm.training import TrainConfig, train_step_fn
{setup}
train_kernel.enabled = {kernels}
torch.manual_seed(0)
model = GPT(GPTConfig(n_layer=2, n_head=4, n_embd=256, block_size=128, vocab_size=65))
step = train_step_fn(model, TrainConfig(batch_size=8, device="cpu", progress=False), "cpu")
x = torch.randint(0, 65, (8, 129))
for _ in range(3):
    step(x[:, :-1], x[:, 1:])
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step(x[:, :-1], x[:, 1:])
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
"""

# What ``scratchllm train`` on CPU leaves the process with: a real two-step run.
TRAIN_FIRST = """
import tempfile
from scratchllm.cli import main
with tempfile.TemporaryDirectory() as out:
    code = main(["train", "--data", "markov:order=2", "--samples", "300", "--max-iters", "2",
                 "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--device", "cpu",
                 "--out", out + "/run"])
    assert code == 0, code
"""


def _faults_per_step(setup: str, kernels: bool) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}  # fmt: skip
    script = FAULTS_PER_STEP.format(setup=setup, kernels=kernels)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return float(done.stdout.split()[-1])


# glibc as it starts out, held there: blocks of 128 KB and more get their own mmap, and free
# memory past 128 KB at the heap's top goes back. (Left to itself glibc raises both
# thresholds as large blocks come and go, by how much depending on their order, so its
# own defaults fault anywhere from hundreds to thousands of pages a step here.)
GLIBC_START = """
import ctypes, ctypes.util
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
assert libc.mallopt(-3, 128 << 10) and libc.mallopt(-1, 128 << 10)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a glibc setting")
def test_training_on_cpu_reuses_freed_memory_instead_of_faulting_pages_in():
    for kernels in (True, False):  # our C++ kernels' step, and PyTorch's path
        plain = _faults_per_step(GLIBC_START, kernels)
        after_trainer = _faults_per_step(TRAIN_FIRST, kernels)
        # the step's large blocks handed back and faulted in again (thousands of faults a
        # step here); after a Trainer run on CPU, reused
        assert plain > 2000, (kernels, plain)
        assert after_trainer < plain / 4, (kernels, after_trainer, plain)
