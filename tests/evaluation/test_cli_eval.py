"""`scratchllm eval`: on a text file and on a language, JSON and table, and clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from scratchllm.cli import main
from scratchllm.data import languages
from scratchllm.evaluation.perplexity import evaluate_text
from scratchllm.models import NGram, NGramConfig
from scratchllm.tokenizers import CharTokenizer

SPEC = "markov:order=2,alphabet=4,branch=2,length=8"
TEXT = "".join(f"the cat {i % 7} sat on the mat {i % 5}\n" for i in range(300))


@pytest.fixture(scope="module")
def lang_ckpt(tmp_path_factory):
    """A trigram trained on 2000 samples of SPEC (seed 0), saved with its tokenizer."""
    lang = languages.get(SPEC)
    tok = CharTokenizer(sorted(lang.alphabet))
    model = NGram(NGramConfig(n=3, vocab_size=tok.vocab_size, smoothing=0.01))
    model.fit(tok.encode(lang.corpus(2000, seed=0)))
    ckpt = tmp_path_factory.mktemp("lang") / "ckpt"
    model.save(ckpt)
    tok.save(ckpt)
    return ckpt


@pytest.fixture(scope="module")
def text_ckpt(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    tok = CharTokenizer.train(TEXT)
    model = NGram(NGramConfig(n=4, vocab_size=tok.vocab_size, smoothing=0.1))
    model.fit(tok.encode(TEXT[:6000]))
    model.save(root / "ckpt")
    tok.save(root / "ckpt")
    (root / "held.txt").write_text(TEXT[6000:], encoding="utf-8")
    return root / "ckpt", root / "held.txt", model, tok


def run_json(capsys, *argv):
    assert main(["eval", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_language_json(capsys, lang_ckpt):
    out = run_json(capsys, lang_ckpt, "--data", SPEC, "--samples", 100, "--heldout", 40)
    assert out["data"] == SPEC and out["n_samples"] == 100
    assert out["valid"] >= 0.97 and 0 < out["unique"] <= 1
    assert out["kl"] < 0.05 and out["kl_positions"] > 40
    assert out["novel"] is None  # no training data given
    assert 1 < out["perplexity"] < 4 and out["val_loss"] == pytest.approx(
        torch.tensor(out["perplexity"]).log().item(), rel=1e-4
    )


def test_language_novelty_from_the_training_spec(capsys, lang_ckpt):
    args = (lang_ckpt, "--data", SPEC, "--samples", 60, "--heldout", 20, "--train-data", SPEC)
    out = run_json(capsys, *args, "--train-samples", 2000, "--train-seed", 0)
    seen = set(languages.get(SPEC).samples(2000, seed=0))
    assert 0 < out["novel"] < 1
    # a bigger training set can only contain more of the samples
    fewer = run_json(capsys, *args, "--train-samples", 10, "--train-seed", 0)
    assert fewer["novel"] >= out["novel"] and len(seen) > 10


def test_text_file_matches_the_library(capsys, text_ckpt):
    ckpt, held, model, tok = text_ckpt
    out = run_json(capsys, ckpt, "--data", held)
    expected = evaluate_text(model, tok, held.read_text(encoding="utf-8"))
    assert out["val_loss"] == pytest.approx(expected.loss, rel=1e-6)
    assert out["perplexity"] == pytest.approx(expected.perplexity, rel=1e-6)
    assert out["bits_per_char"] == pytest.approx(expected.bits_per_char, rel=1e-6)
    assert "valid" not in out
    val = run_json(capsys, ckpt, "--data", held, "--split", "val")
    assert val["n_tokens"] == pytest.approx(out["n_tokens"] * 0.1, abs=2)


def test_table_output(capsys, text_ckpt, lang_ckpt):
    ckpt, held, _, _ = text_ckpt
    assert main(["eval", str(ckpt), "--data", str(held)]) == 0
    table = capsys.readouterr().out
    assert "perplexity" in table and "bits_per_byte" in table and "{" not in table
    args = ["eval", str(lang_ckpt), "--data", SPEC, "--samples", "30", "--heldout", "10"]
    assert main([*args, "--temperature", "3"]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "kl" in out


def test_a_run_directory_means_its_last_or_best_checkpoint(capsys, tmp_path, text_ckpt):
    import shutil

    ckpt, held, _, _ = text_ckpt
    run = tmp_path / "run"
    shutil.copytree(ckpt, run / "last")
    assert main(["eval", str(run), "--data", str(held), "--json"]) == 0
    from_run = json.loads(capsys.readouterr().out)
    assert main(["eval", str(ckpt), "--data", str(held), "--json"]) == 0
    direct = json.loads(capsys.readouterr().out)
    assert from_run["val_loss"] == direct["val_loss"]
    assert main(["eval", str(run), "--best", "--data", str(held)]) == 2
    assert "best" in capsys.readouterr().err  # no best/ in this run: the error names it


def test_errors_name_the_file(capsys, tmp_path, text_ckpt, lang_ckpt):
    ckpt, held, _, _ = text_ckpt

    def fails(*argv):
        assert main(["eval", *map(str, argv)]) == 2
        return capsys.readouterr().err

    assert "no such checkpoint or run directory" in fails(tmp_path / "nope", "--data", held)
    assert "config.json" in fails(tmp_path, "--data", held)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{broken")
    assert f"{bad / 'config.json'}" in fails(bad, "--data", held)
    # a checkpoint whose tokenizer does not fit the model
    mixed = tmp_path / "mixed"
    NGram(NGramConfig(n=2, vocab_size=3)).save(mixed)
    CharTokenizer.train("abcd").save(mixed)
    err = fails(mixed, "--data", held)
    assert "tokenizer.json has 4 tokens" in err and "vocab_size 3" in err
    no_tok = tmp_path / "no_tok"
    NGram(NGramConfig(n=2, vocab_size=3)).save(no_tok)
    assert "tokenizer.json" in fails(no_tok, "--data", held)
    assert "stdlib-docs" in fails(ckpt, "--data", "nonsense")
    assert "unknown language" not in fails(ckpt, "--data", "nonsense")
    assert "out of range" in fails(lang_ckpt, "--data", "markov:order=99")
    assert "--samples must be at least 1" in fails(lang_ckpt, "--data", SPEC, "--samples", 0)


@pytest.mark.slow  # a fresh interpreter imports torch: seconds on a loaded machine
def test_subprocess_smoke(text_ckpt):
    ckpt, held, _, _ = text_ckpt
    done = subprocess.run(
        [sys.executable, "-m", "scratchllm", "eval", str(ckpt), "--data", str(held), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["perplexity"] > 1


def test_split_val_is_the_fraction_the_runs_dataset_held_out(capsys, tmp_path):
    data = tmp_path / "cats.txt"
    data.write_text(TEXT, encoding="utf-8")
    run = tmp_path / "run"
    argv = ["train", "--data", str(data), "--model", "ngram", "--n", "3", "--out", str(run),
            "--val-fraction", "0.25", "--quiet", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    full = run_json(capsys, run, "--data", data)
    val = run_json(capsys, run / "best", "--data", data, "--split", "val")
    assert val["val_fraction"] == 0.25  # read from run/data/meta.json, not assumed
    assert val["n_tokens"] == pytest.approx(full["n_tokens"] * 0.25, abs=2)
