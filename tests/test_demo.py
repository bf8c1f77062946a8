"""The demo, run with tiny settings: it trains, reports, samples and leaves a usable run."""

from __future__ import annotations

import json
import math

import pytest

from scratchllm.cli import main
from scratchllm.demo import TEMPERATURES, run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    lines: list[str] = []
    report = run_demo(out=out, quick=True, new_tokens=30, say=lines.append)
    return out, report, "\n".join(lines)


def test_demo_trains_and_reports(demo):
    out, report, text = demo
    assert report.steps == 20
    assert math.isfinite(report.val_loss)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 20 and rows[-1]["val_loss"] == pytest.approx(report.val_loss)
    # It learned something: the loss fell below guessing uniformly among the characters.
    vocab = json.loads((out / "last" / "config.json").read_text())["config"]["vocab_size"]
    assert report.val_loss < math.log(vocab)
    assert f"validation loss  {report.val_loss:.3f}" in text


def test_demo_samples_at_each_temperature(demo):
    _, report, text = demo
    assert list(report.samples) == [label for label, _ in TEMPERATURES]
    for label, sample in report.samples.items():
        assert len(sample) > 0
        assert f"--- {label} " in text and sample in text


def test_demo_says_where_the_run_is_and_what_next(demo):
    out, _, text = demo
    for name in ("last", "best", "metrics.jsonl", "loss.png", "train.toml"):
        assert (out / name).exists()
        assert str(out / name) in text
    assert f"scratchllm sample {out}" in text
    assert f"scratchllm train --out {out} --resume" in text


def test_demo_run_can_be_sampled_and_rerun(demo, capsys):
    out, _, _ = demo
    assert main(["sample", str(out), "--prompt", "Return", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("Return")
    # A second demo into the same directory is refused (nothing is touched) ...
    before = (out / "last" / "model.safetensors").read_bytes()
    code = main(["demo", "--quick", "--out", str(out)])
    assert code == 2 and "already holds a run" in capsys.readouterr().err
    assert (out / "last" / "model.safetensors").read_bytes() == before
    # ... unless told to replace it.
    report = run_demo(out=out, quick=True, max_iters=2, new_tokens=5, say=lambda s: None,
                      force=True)  # fmt: skip
    assert report.steps == 2


def test_demo_refuses_to_overwrite_another_run(demo, tmp_path, capsys):
    out, _, _ = demo
    other = tmp_path / "mine"
    (other / "last").mkdir(parents=True)
    (other / "train.toml").write_text("[train]\nmax_iters = 5\n")
    code = main(["demo", "--quick", "--out", str(other)])
    assert code == 2 and "already holds a run" in capsys.readouterr().err


def test_demo_cli_checks_its_flags(capsys):
    assert main(["demo", "--max-iters", "0"]) == 2
    assert "--max-iters must be at least 1" in capsys.readouterr().err
