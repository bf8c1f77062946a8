"""`scratchllm train/sample --engine numpy` and `--init-from`: the NumPy GPT through the CLI.

- with torch unimportable (a subprocess whose ``sys.meta_path`` refuses it), the real CLI
  trains, resumes and samples (streamed, with a stop string), and no torch module loads;
- ``--init-from C`` on both engines, same seed and data: the logged losses agree to 1e-4;
- the two engines print the same samples from one checkpoint (either engine's);
- what the NumPy engine lacks is an error naming the flag; an engine cannot change on resume.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import scratchllm
from scratchllm.cli import main

SRC = Path(scratchllm.__file__).parents[1]
DATA = ["--data", "markov:order=2", "--samples", "600", "--data-seed", "0"]
TINY = [
    *DATA, "--n-layer", "2", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
    "--batch-size", "4", "--eval-iters", "2", "--log-interval", "1", "--quiet",
]  # fmt: skip

BLOCKED = r"""
import json, sys

class RefuseTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked in this process (import of {name})")
        return None

sys.meta_path.insert(0, RefuseTorch())
from scratchllm.cli import main

codes = []
for argv in json.loads(sys.argv[1]):
    try:
        codes.append(main(argv))
    except SystemExit as e:  # --help
        codes.append(e.code)
torch = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print(json.dumps({"codes": codes, "torch_modules": torch}))
"""


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _main(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_train_resume_and_sample_with_torch_unimportable(tmp_path):
    run = str(tmp_path / "np")
    sample = ["sample", run, "--engine", "numpy", "--max-new-tokens", "20", "--seed", "0"]
    commands = [
        ["train", "--engine", "numpy", *TINY, "--max-iters", "6", "--eval-interval", "3",
         "--out", run],
        ["train", "--out", run, "--resume", "--max-iters", "8", "--quiet"],  # engine saved
        [*sample, "--prompt", "ab", "--num-samples", "2"],
        [*sample, "--prompt", "ab", "--stream", "--stop", "c"],
        ["train", "--help"],
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKED, json.dumps(commands)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1",
             "PYTHONPATH": os.pathsep.join([str(SRC), *sys.path])},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    *printed, result = proc.stdout.strip().splitlines()
    result = json.loads(result)
    assert result == {"codes": [0, 0, 0, 0, 0], "torch_modules": []}, proc.stderr[-3000:]
    rows = _metrics(tmp_path / "np")
    assert [r["step"] for r in rows] == list(range(1, 9))  # resumed after step 6, one per step
    assert sum("val_loss" in r for r in rows) == 3  # steps 3, 6 and the last
    text = "\n".join(printed)
    assert "resumed from" in text and "train (numpy)" not in proc.stderr  # --quiet: no bar
    assert "scratchllm sample " + run + " --engine numpy" in text  # the summary's next step
    assert text.count("-" * 40) == 1  # two samples, one separator
    assert (tmp_path / "np" / "last" / "trainer_state.safetensors").is_file()
    assert 'engine = "numpy"' in (tmp_path / "np" / "train.toml").read_text()


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory):
    """Twenty PyTorch steps: the checkpoint both engines start from."""
    out = tmp_path_factory.mktemp("c") / "c"
    assert main(["train", *TINY, "--max-iters", "20", "--eval-interval", "20", "--lr", "1e-2",
                 "--device", "cpu", "--out", str(out)]) == 0  # fmt: skip
    return out


def test_init_from_gives_the_same_losses_on_both_engines(torch_run, tmp_path):
    same = [*DATA, "--batch-size", "4", "--max-iters", "10", "--log-interval", "1",
            "--eval-interval", "5", "--eval-iters", "2", "--lr", "3e-3", "--warmup-iters", "2",
            "--seed", "3", "--quiet", "--init-from", str(torch_run)]  # fmt: skip
    for engine in ("numpy", "torch"):
        assert main(["train", *same, "--engine", engine, "--out", str(tmp_path / engine)]) == 0
    rows = {e: _metrics(tmp_path / e) for e in ("numpy", "torch")}
    assert (
        [r["step"] for r in rows["numpy"]]
        == [r["step"] for r in rows["torch"]]
        == list(range(1, 11))
    )
    for a, b in zip(rows["numpy"], rows["torch"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-3)
        if "val_loss" in b:
            assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    # it started from the checkpoint's weights, not from a fresh model's
    fresh = tmp_path / "fresh"
    assert main(["train", *TINY, "--max-iters", "1", "--engine", "numpy", "--out", str(fresh)]) == 0
    assert rows["torch"][0]["loss"] < _metrics(fresh)[0]["loss"] - 0.05
    saved = (tmp_path / "numpy" / "train.toml").read_text()
    assert f'init_from = "{torch_run}"' in saved and "n_embd = 16" in saved


def test_both_engines_sample_the_same_text_from_one_checkpoint(torch_run, tmp_path, capsys):
    numpy_run = tmp_path / "np"
    assert main(["train", "--engine", "numpy", *TINY, "--max-iters", "3", "--out",
                 str(numpy_run)]) == 0  # fmt: skip
    capsys.readouterr()
    options = [
        ["--prompt", "a", "--num-samples", "3", "--top-k", "4", "--stop", "ee"],
        ["--prompt", "ab", "--num-samples", "2", "--top-p", "0.9", "--stream", "--stop", "d"],
        ["--prompt", "", "--temperature", "0", "--repetition-penalty", "1.3"],
    ]
    for run in (torch_run, numpy_run):  # a PyTorch run's checkpoint and a NumPy run's
        for extra in options:
            argv = ["sample", str(run), "--max-new-tokens", "25", "--seed", "5", *extra]
            printed = {e: _main(capsys, *argv, "--engine", e)[1] for e in ("torch", "numpy")}
            assert printed["numpy"] == printed["torch"], (run, extra)
            assert len(printed["numpy"]) > 5


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--model", "mlp"], "--model mlp"),
        (["--pos", "rope"], "--pos rope"),
        (["--norm", "rmsnorm"], "--norm rmsnorm"),
        (["--ffn", "moe"], "--ffn moe"),
        (["--compile"], "--compile"),
        (["--bf16"], "--bf16"),
        (["--device", "cuda"], "--device cuda"),
    ],
)
def test_what_the_numpy_engine_lacks_is_an_error_naming_the_flag(flags, named, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = _main(capsys, "train", "--engine", "numpy", *TINY, *flags, "--out", str(out))
    assert code == 2 and named in err and ("--engine torch" in err or "--device cpu" in err)
    assert not out.exists()


def test_torchrun_and_beam_search_are_refused(tmp_path, capsys, monkeypatch, torch_run):
    code, _, err = _main(capsys, "sample", str(torch_run), "--engine", "numpy", "--num-beams", "2",
                         "--prompt", "a")  # fmt: skip
    assert code == 2 and "--num-beams" in err
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, _, err = _main(capsys, "train", "--engine", "numpy", *TINY, "--out", str(tmp_path / "x"))
    assert code == 2 and "torchrun" in err


def test_resume_keeps_the_engine(torch_run, capsys):
    code, _, err = _main(capsys, "train", "--out", str(torch_run), "--resume", "--engine", "numpy")
    assert code == 2 and "--engine cannot change" in err and "--init-from" in err


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--n-layer", "3"], "--n-layer 3 (it has 2)"),
        (["--n-embd", "32"], "--n-embd 32 (it has 16)"),
        (["--tokenizer", "word"], "drop --tokenizer"),
        (["--model", "lstm"], "--model lstm"),
    ],
)
@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_init_from_refuses_another_model(engine, flags, named, torch_run, tmp_path, capsys):
    argv = ["train", *DATA, "--init-from", str(torch_run), "--engine", engine, *flags]
    code, _, err = _main(capsys, *argv, "--out", str(tmp_path / "x"))
    assert code == 2 and named in err, err


def test_init_from_takes_a_new_dropout_and_any_family(tmp_path, capsys):
    mlp = tmp_path / "mlp"
    base = [*DATA, "--max-iters", "3", "--eval-interval", "3", "--eval-iters", "1", "--quiet",
            "--batch-size", "4", "--device", "cpu"]  # fmt: skip
    assert main(["train", "--model", "mlp", "--n", "3", *base, "--out", str(mlp)]) == 0
    assert main(["train", "--init-from", str(mlp), "--dropout", "0.1", *base,
                 "--out", str(tmp_path / "again")]) == 0  # fmt: skip
    saved = (tmp_path / "again" / "train.toml").read_text()
    assert 'model = "mlp"' in saved and "n = 3" in saved and "dropout = 0.1" in saved
    code, _, err = _main(capsys, "train", "--engine", "numpy", "--init-from", str(mlp), *base,
                         "--out", str(tmp_path / "np"))  # fmt: skip
    assert code == 2 and "GPT models only" in err
