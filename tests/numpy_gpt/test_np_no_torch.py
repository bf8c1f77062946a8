"""The NumPy GPT needs no torch: no module of the package imports it, and in a process
where importing torch fails, a model is built, trained, checkpointed, resumed, reloaded
and sampled from."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import scratchllm.numpy_gpt

PACKAGE = Path(scratchllm.numpy_gpt.__file__).parent

SCRIPT = r"""
import json, pkgutil, sys, importlib

class RefuseTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked in this process (import of {name})")
        return None

sys.meta_path.insert(0, RefuseTorch())
try:
    import torch  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the block did not work")

import numpy as np
import scratchllm.numpy_gpt as pkg
for info in pkgutil.iter_modules(pkg.__path__):
    importlib.import_module(f"scratchllm.numpy_gpt.{info.name}")

from scratchllm.configs import GPTConfig, TrainConfig
from scratchllm.data import TokenDataset
from scratchllm.numpy_gpt import NumpyGPT, generate
from scratchllm.numpy_gpt.checkpoint import load_checkpoint
from scratchllm.numpy_gpt.generate import stream_tokens
from scratchllm.numpy_gpt.trainer import NumpyTrainer
from scratchllm.tokenizers import CharTokenizer

out = sys.argv[1]
text = "to be or not to be, that is the question.\n" * 60
data = TokenDataset.from_text(text, CharTokenizer.train(text), out + "/data")
config = GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=16, vocab_size=data.vocab_size,
                   dropout=0.1)
cfg = TrainConfig(max_iters=6, batch_size=4, eval_interval=3, eval_iters=2, log_interval=1,
                  lr=3e-3, lr_decay_iters=8, warmup_iters=1, progress=False,
                  out_dir=out + "/run")
first = NumpyTrainer(NumpyGPT(config, seed=0), data, cfg).train()
resumed = NumpyTrainer.resume(out + "/run", data, cfg.replace(max_iters=8)).train()
ckpt = load_checkpoint(out + "/run")
ids = generate(ckpt.model, [ckpt.tokenizer.encode("to be")], 20, top_k=5, seed=0)
streamed = list(stream_tokens(ckpt.model, ckpt.tokenizer.encode("to be"), 20, top_k=5, seed=0))
blocked = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print(json.dumps({
    "first": first.final_train_loss, "steps": resumed.steps, "val": resumed.best_val_loss,
    "text": ckpt.tokenizer.decode(ids[0].tolist()), "stream_ok": streamed == ids[0, 5:].tolist(),
    "torch_modules": blocked,
}))
"""


def test_no_module_of_the_package_imports_torch():
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] == "torch" for n in names), (path.name, names)


def test_it_trains_resumes_and_samples_with_torch_unimportable(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        # this checkout's package first, whatever is installed
        env={
            **os.environ,
            "OPENBLAS_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(PACKAGE.parents[1])] + sys.path),
        },
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["torch_modules"] == []
    assert result["steps"] == 8 and result["val"] < 4.0
    assert result["text"].startswith("to be") and len(result["text"]) == 25
    assert result["stream_ok"]
    assert (tmp_path / "run" / "last" / "model.safetensors").is_file()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 8
