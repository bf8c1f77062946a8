"""torchrun with 2 CPU processes (gloo) follows the loss curve of 1 process with the
combined batch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import tiny_config, tiny_gpt

from scratchllm.training import Trainer, read_metrics
from scratchllm.training.distributed import DistInfo, detect

_WORKER = """
import faulthandler, sys, torch
faulthandler.enable()  # a rank killed by a signal prints where each of its threads was
sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
from conftest import tiny_config, tiny_gpt
from scratchllm.data import TokenDataset
from scratchllm.training import Trainer
data = TokenDataset({data!r})
cfg = tiny_config({out!r}, max_iters=6, batch_size=2, eval_interval=3, eval_iters=4)
result = Trainer(tiny_gpt(data.vocab_size, seed=4), data, cfg).train()
print("rank done", result.steps, flush=True)
"""


_GLOO_ABORT = "terminate called without an active exception"


def _torchrun(worker: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    return subprocess.run([*cmd, str(worker)], capture_output=True, text=True, env=env, timeout=240)


def _ending(proc: subprocess.CompletedProcess) -> str:
    """What the ranks printed last: their stdout, then stderr (with any fault's traceback)."""
    out, err = proc.stdout[-1500:], proc.stderr[-4000:]
    return f"exit {proc.returncode}\n--- stdout\n{out}\n--- stderr\n{err}"


def test_detect_reads_torchrun_env(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert detect() == DistInfo(0, 0, 1)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    info = detect()
    assert (info.rank, info.local_rank, info.world_size, info.is_main) == (2, 0, 4, False)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match=r"RANK \(4\)"):
        detect()


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_combined_batch(char_data, tmp_path):
    out2 = tmp_path / "ddp"
    script = _WORKER.format(
        tests=str(Path(__file__).parent), data=str(char_data.directory), out=str(out2)
    )
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    worker = tmp_path / "worker.py"
    worker.write_text(script)
    proc = _torchrun(worker, env)
    if proc.returncode != 0 and _GLOO_ABORT in proc.stderr:
        # Once in CI (2026-12-07) a rank died here with this abort from PyTorch's C++ side
        # (our kernels hold no threads and throw nothing), and 110 runs in a row, 30 of
        # them beside two busy processes, did not repeat it; gloo's ranks can race when
        # they close their connections right after a barrier (pytorch/gloo#155). One more
        # run must then pass in full; the first one's ending is kept as a warning, so an
        # abort that recurs stays visible in the test summary.
        warnings.warn(f"torchrun aborted once, run again: {_ending(proc)}", stacklevel=1)
        shutil.rmtree(out2, ignore_errors=True)
        proc = _torchrun(worker, env)
    assert proc.returncode == 0, _ending(proc)
    assert proc.stdout.count("rank done 6") == 2

    out1 = tmp_path / "single"
    cfg = tiny_config(out1, max_iters=6, batch_size=4, eval_interval=3, eval_iters=4)
    Trainer(tiny_gpt(char_data.vocab_size, seed=4), char_data, cfg).train()

    one, two = read_metrics(out1 / "metrics.jsonl"), read_metrics(out2 / "metrics.jsonl")
    assert [r["step"] for r in two] == [r["step"] for r in one] == list(range(1, 7))
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5)
        assert b["tokens"] == a["tokens"]  # both count the global batch
        if "val_loss" in a:
            assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-5)
    assert one[-1]["loss"] < one[0]["loss"]  # the curve moves, so matching it means something
    # rank 0 wrote one checkpoint; it loads
    assert (out2 / "last" / "model.safetensors").is_file()
