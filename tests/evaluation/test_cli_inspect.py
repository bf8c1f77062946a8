"""`scratchllm inspect CKPT --out DIR`: what it writes, what it prints, how it fails."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from scratchllm.cli import main
from scratchllm.data.languages import get
from scratchllm.models import GPT, RNNLM, GPTConfig, NGram, NGramConfig, RNNConfig
from scratchllm.tokenizers import CharTokenizer

SPEC = "sticky:k=1,classes=2,size=2"


@pytest.fixture(scope="module")
def lang_tok():
    lang = get(SPEC)
    return lang, CharTokenizer.train(lang.alphabet)


def save(directory, model, tok):
    model.save(directory)
    tok.save(directory)
    return directory


@pytest.fixture(scope="module")
def gpt_ckpt(tmp_path_factory, lang_tok):
    _, tok = lang_tok
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=8, block_size=12, vocab_size=tok.vocab_size))
    return save(tmp_path_factory.mktemp("gpt") / "ckpt", model, tok)


def run(capsys, *argv):
    code = main(["inspect", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_ngram_in_a_study_directory_finds_its_language(tmp_path, capsys, lang_tok):
    lang, tok = lang_tok
    model = NGram(NGramConfig(n=3, vocab_size=tok.vocab_size)).fit(tok.encode(lang.corpus(100)))
    ckpt = save(tmp_path / SPEC / "trigram", model, tok)
    code, out, err = run(capsys, ckpt, "--out", tmp_path / "look")
    assert code == 0, err
    assert f"language: {lang.spec} (from the directory name" in out
    png = tmp_path / "look" / "ngram_table.png"
    assert f"{png}  n-gram table" in out.splitlines()[-1]
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_gpt_prints_files_and_the_offset_table(tmp_path, capsys, gpt_ckpt):
    out_dir = tmp_path / "look"
    code, out, err = run(capsys, gpt_ckpt, "--out", out_dir, "--language", SPEC)
    assert code == 0, err
    lines = out.splitlines()
    written = [line.split("  ")[0] for line in lines if line.startswith(str(out_dir))]
    assert [p.rsplit("/", 1)[1] for p in written] == [
        "embeddings_pca.png",
        "attention_layer0_head0.png",
        "attention_layer0_head1.png",
        "attention_grid.png",
        "attention_offsets.png",
        "attention_offsets.json",
    ]
    assert all((out_dir / p.rsplit("/", 1)[1]).is_file() for p in written)
    data = json.loads((out_dir / "attention_offsets.json").read_text())
    assert data["offsets"] == [0, 1]  # sticky k=1 reads the last two symbols
    # The printed table holds the JSON's numbers: rows L0.H0, L0.H1, then chance.
    start = next(i for i, line in enumerate(lines) if line.startswith("head "))
    table = [line.split() for line in lines[start + 1 : start + 4]]
    assert [row[0] for row in table] == ["L0.H0", "L0.H1", "chance"]
    printed = np.array([[float(c.lstrip("*")) for c in row[1:]] for row in table[:2]])
    np.testing.assert_allclose(printed, np.array(data["scores"])[0], atol=0.006)
    np.testing.assert_allclose([float(c) for c in table[2][1:]], data["chance"], atol=0.006)


def test_text_is_cut_to_the_context_and_offsets_can_be_chosen(tmp_path, capsys, gpt_ckpt):
    code, out, err = run(
        capsys, gpt_ckpt, "--out", tmp_path, "--text", "\naaBBabBBaaBBaa", "--offsets", "2,3"
    )
    assert code == 0, err
    assert "note: the text has 15 tokens, more than the model's context of 12" in out
    assert "text: '\\naaBBabBBaaB' (12 tokens)" in out
    assert "language: unknown" in out
    assert json.loads((tmp_path / "attention_offsets.json").read_text())["offsets"] == [2, 3]


def test_run_directory_and_rnn(tmp_path, capsys, lang_tok):
    _, tok = lang_tok
    model = RNNLM(RNNConfig(cell="gru", vocab_size=tok.vocab_size, n_embd=4, n_hidden=5))
    save(tmp_path / "run" / "last", model, tok)
    code, out, err = run(capsys, tmp_path / "run", "--out", tmp_path / "o", "--text", "aaBB")
    assert code == 0, err
    assert f"checkpoint: {tmp_path / 'run' / 'last'} (rnn," in out
    assert f"{tmp_path / 'o' / 'rnn_hidden.png'}  RNN last layer" in out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--text", "ab%"], "cannot encode the text 'ab%'"),
        (["--offsets", "1,x"], "--offsets '1,x': give non-negative integers"),
        (["--offsets", "-1"], "--offsets '-1'"),
        (["--rows", "0"], "--rows (0) must be at least 1"),
        (["--language", "nosuch:k=1"], "unknown language 'nosuch'"),
        (["--language", "copy:length=3"], "hold characters the checkpoint's tokenizer cannot"),
    ],
)
def test_bad_input_is_one_line_with_status_2(tmp_path, capsys, gpt_ckpt, extra, message):
    code, _, err = run(capsys, gpt_ckpt, "--out", tmp_path, *extra)
    assert code == 2
    assert err.startswith("scratchllm inspect: error:") and message in err
    assert len(err.strip().splitlines()) == 1


def test_missing_checkpoint_and_unknown_family(tmp_path, capsys):
    code, _, err = run(capsys, tmp_path / "nope", "--out", tmp_path / "o")
    assert code == 2 and "no such checkpoint" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"family": "hmm", "config": {}}))
    code, _, err = run(capsys, bad, "--out", tmp_path / "o")
    assert code == 2 and "unknown model family 'hmm'" in err


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        main(["inspect", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--out", "--text", "--language", "--offsets", "--rows", "--device"):
        assert flag in out
    assert "(default: 32)" in out and "(default: cpu)" in out


def test_module_entry_point_runs_the_verb():
    res = subprocess.run(
        [sys.executable, "-m", "scratchllm", "inspect", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0 and "attention" in res.stdout


def test_a_trained_run_records_its_language_for_inspect(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", SPEC, "--model", "ngram", "--n", "3", "--out", str(run), "--quiet"]
    assert main(args) == 0
    state = json.loads((run / "last" / "trainer_state.json").read_text())
    assert state["language"] == get(SPEC).spec
    capsys.readouterr()
    assert main(["inspect", str(run / "best"), "--out", str(tmp_path / "look")]) == 0
    out = capsys.readouterr().out
    assert f"language: {get(SPEC).spec}" in out
    assert (tmp_path / "look" / "ngram_table.png").is_file()
