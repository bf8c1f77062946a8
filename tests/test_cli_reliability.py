"""The command line as a careless user, an attacker and a bad file meet it (issue 12): each
mistake refused early, in one line that names the problem and the fix, and nothing lost."""

from __future__ import annotations

import json
import shutil
import signal
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from scratchllm.cli import main

# (Its characters include sticky:k=1's alphabet, "\n012ABCabc".)
TEXT = "".join(f"the cat {i % 7} sat on the mat {i % 5}. ABC abc\n" for i in range(300))
TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "32",
        "--batch-size", "4", "--eval-iters", "2", "--device", "cpu", "--quiet"]  # fmt: skip


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line_error(err: str, verb: str) -> str:
    assert err.startswith(f"scratchllm {verb}: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "Errno" not in err, err
    return err


@pytest.fixture(scope="module")
def cats(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "cats.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(cats, tmp_path_factory):
    """A finished text run: GPT, 4 steps, evaluated at 2 and 4."""
    out = tmp_path_factory.mktemp("runs") / "text"
    assert main(["train", "--data", str(cats), *TINY, "--max-iters", "4", "--eval-interval",
                 "2", "--out", str(out)]) == 0  # fmt: skip
    return out


@pytest.fixture(scope="module")
def lang_run(tmp_path_factory):
    """A bigram fitted on sticky:k=1 (a counting model: one step)."""
    out = tmp_path_factory.mktemp("runs") / "sticky"
    assert main(["train", "--data", "sticky:k=1", "--samples", "300", "--model", "ngram",
                 "--n", "2", "--validity-samples", "4", "--eval-iters", "2", "--quiet",
                 "--device", "cpu", "--out", str(out)]) == 0  # fmt: skip
    return out


def _copy_run(run, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(run, dst)
    return dst


# -- 5: the hints after a run --------------------------------------------------------------------


def test_a_finished_run_says_how_to_go_further_at_its_final_rate(cats, tmp_path, capsys):
    out = tmp_path / "r"
    code, text, _ = _run(capsys, "train", "--data", cats, *TINY, "--max-iters", "4",
                         "--eval-interval", "2", "--log-interval", "1", "--out", out)  # fmt: skip
    hint = f"scratchllm train --out {out} --resume --max-iters 8 --lr-decay-iters 4"
    assert code == 0 and hint in text and "4 more steps at the final learning rate" in text
    # Following it: steps 5..8 run at min_lr, no jump back up the cosine.
    assert main(hint.split()[1:] + ["--quiet"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows if r["step"] > 4] == [1e-4] * 4


def test_an_interrupted_run_says_plain_resume(cats, tmp_path, capsys, monkeypatch):
    from scratchllm.training import trainer as trainer_module

    real = trainer_module.Trainer._after_step

    def stop_at_3(self):
        if self.step == 3:
            signal.raise_signal(signal.SIGINT)  # a real Ctrl-C, as in the step 411
        return real(self)

    monkeypatch.setattr(trainer_module.Trainer, "_after_step", stop_at_3)
    out = tmp_path / "r"
    code, text, _ = _run(capsys, "train", "--data", cats, *TINY, "--max-iters", "20",
                         "--eval-interval", "10", "--out", out)  # fmt: skip
    assert code == 130
    lines = [line.strip() for line in text.splitlines()]
    assert any(line.startswith(f"scratchllm train --out {out} --resume  ") for line in lines)
    assert "--max-iters" not in text.split("next", 1)[1]


# -- 6: what a resume, demo and tokenizer train refuse -------------------------------------------


@pytest.mark.parametrize(
    "flags, name",
    [(["--data", "other.txt"], "--data"), (["--val-fraction", "0.2"], "--val-fraction")],
)
def test_resume_refuses_other_data(run, tmp_path, capsys, flags, name):
    run = _copy_run(run, tmp_path)
    before = (run / "train.toml").read_text()
    code, _, err = _run(capsys, "train", "--out", run, "--resume", *flags)
    assert code == 2 and f"--resume: {name} cannot change" in _one_line_error(err, "train")
    assert "new run" in err and (run / "train.toml").read_text() == before


def test_resume_refuses_to_end_before_the_current_step(run, tmp_path, capsys):
    run = _copy_run(run, tmp_path)
    before = (run / "train.toml").read_text()
    code, _, err = _run(capsys, "train", "--out", run, "--resume", "--max-iters", "2")
    assert code == 2 and "is at step 4; max_iters = 2 would end before it" in err
    assert (run / "train.toml").read_text() == before  # nothing recorded


# -- 8: the splits, before step 1 ----------------------------------------------------------------


def test_val_fraction_0_is_refused_before_training(cats, tmp_path, capsys):
    out = tmp_path / "r"
    code, _, err = _run(capsys, "train", "--data", cats, *TINY, "--val-fraction", "0",
                        "--out", out)  # fmt: skip
    assert code == 2 and "val_fraction 0 leaves" in _one_line_error(err, "train")
    assert not (out / "last").exists() and not (out / "metrics.jsonl").exists()


# -- 9: a diverging run ------------------------------------------------------------------------


def test_a_diverging_run_is_one_line_naming_the_best_checkpoint(cats, tmp_path, capsys):
    out = tmp_path / "r"
    code, _, err = _run(capsys, "train", "--data", cats, *TINY, "--lr", "100", "--min-lr", "0",
                        "--warmup-iters", "0", "--max-iters", "100", "--eval-interval", "5",
                        "--log-interval", "5", "--out", out)  # fmt: skip
    msg = _one_line_error(err, "train")
    assert code == 2 and "NaN or inf" in msg and f"Best checkpoint: {out / 'best'} (step" in msg
    assert "worse than a uniform guess" in msg and "last good" not in msg and "clip" not in msg
    assert "lower the learning rate (lr 100: try 10)" in msg


# -- 10, 12: checkpoints that lie ----------------------------------------------------------------


def test_a_crafted_config_is_refused_from_the_header_before_allocating(run, tmp_path, capsys):
    ckpt = _copy_run(run, tmp_path) / "last"
    meta = json.loads((ckpt / "config.json").read_text())
    meta["config"].update(n_layer=100_000, n_embd=100_000)  # 120 GB of weights
    (ckpt / "config.json").write_text(json.dumps(meta))
    t0 = time.perf_counter()
    code, _, err = _run(capsys, "sample", ckpt, "--prompt", "the")
    assert code == 2 and time.perf_counter() - t0 < 10
    msg = _one_line_error(err, "sample")
    assert f"{ckpt / 'config.json'} says n_layer = 100,000" in msg and "model.safetensors" in msg
    meta["config"].update(n_layer=1, n_embd=48, n_head=2)
    (ckpt / "config.json").write_text(json.dumps(meta))
    code, _, err = _run(capsys, "eval", ckpt, "--data", "stdlib-docs")
    assert code == 2 and "disagree: " in err and ", 32] in the weights" in err
    assert "the config makes it [" in err and ", 48]" in err


def test_non_finite_weights_are_refused_by_name(run, tmp_path, capsys, cats):
    ckpt = _copy_run(run, tmp_path) / "last"
    weights = load_file(ckpt / "model.safetensors")
    weights["transformer.h.0.attn.c_attn.weight"][0, 0] = float("nan")
    save_file(weights, ckpt / "model.safetensors", metadata={"format": "pt"})
    for argv in (["sample", ckpt, "--prompt", "the"], ["eval", ckpt, "--data", cats]):
        code, out, err = _run(capsys, *argv)
        assert code == 2 and out == ""
        assert "transformer.h.0.attn.c_attn.weight holds 1 NaN or infinite values" in err


def test_eval_of_a_text_model_on_a_language_warns_first(run, capsys):
    code, out, err = _run(capsys, "eval", run, "--data", "sticky:k=1", "--samples", "4",
                          "--heldout", "4", "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["valid"] is not None
    assert err.startswith("scratchllm eval: warning: the model was trained on text, not a")
    assert "of its tokenizer's 23 tokens" in err and "outside sticky:k=1," in err
    # A language whose symbols the tokenizer cannot even write is an error, up front.
    code, _, err = _run(capsys, "eval", run, "--data", "markov:order=2", "--samples", "4")
    msg = _one_line_error(err, "eval")
    assert code == 2 and "the model's tokenizer has no token for 'd'" in msg
    assert "the model was trained on text" in msg and "unk=True" not in msg


def test_eval_of_a_model_on_another_language_warns_and_on_its_own_does_not(lang_run, capsys):
    code, _, err = _run(capsys, "eval", lang_run, "--data", "sticky:k=1", "--samples", "4",
                        "--heldout", "4")  # fmt: skip
    assert code == 0 and "warning" not in err
    code, _, err = _run(capsys, "eval", lang_run, "--data", "sticky:k=2", "--samples", "4",
                        "--heldout", "4")  # fmt: skip
    assert code == 0 and "warning: the model was trained on sticky:k=1," in err


def test_best_of_a_checkpoint_directory_is_an_error(run, capsys):
    code, _, err = _run(capsys, "sample", run / "last", "--best", "--prompt", "the")
    msg = _one_line_error(err, "sample")
    assert code == 2 and f"--best: {run / 'last'} is a checkpoint directory" in msg
    assert f"pass the run directory {run} with --best" in msg
    assert main(["sample", str(run / "best"), "--best", "--prompt", "the"]) == 0  # it is best/


# -- 11: a device that is not there --------------------------------------------------------------


def test_cuda_without_cuda_is_said_up_front_by_every_reader(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    study = tmp_path / "study"
    for argv in (
        ["sample", run, "--prompt", "the", "--device", "cuda"],
        ["eval", run, "--data", "stdlib-docs", "--device", "cuda"],
        ["inspect", run, "--out", tmp_path / "look", "--device", "cuda"],
        ["study", "--languages", "sticky:k=1", "--models", "bigram", "--out", study,
         "--device", "cuda"],
    ):  # fmt: skip
        code, _, err = _run(capsys, *argv)
        msg = _one_line_error(err, argv[0])
        assert code == 2 and "CUDA is not available here; use --device cpu" in msg, argv
    assert not study.exists() and not (tmp_path / "look").exists()


# -- 13: raw errno messages ----------------------------------------------------------------------


def test_out_pointing_at_a_file_says_so(run, cats, tmp_path, capsys):
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    for argv in (
        ["train", "--data", cats, *TINY, "--max-iters", "1", "--out", afile],
        ["demo", "--quick", "--out", afile],
        ["tokenizer", "train", "--kind", "char", "--data", cats, "--out", afile],
        ["inspect", run, "--out", afile],
        ["study", "--languages", "sticky:k=1", "--models", "bigram", "--out", afile],
    ):
        code, _, err = _run(capsys, *argv)
        verb = argv[0]
        assert code == 2 and f"{afile} is a file, not a directory" in _one_line_error(err, verb)
    assert afile.read_text() == "mine"


def test_data_files_that_are_directories_or_binary_are_named(run, capsys):
    weights = run / "last" / "model.safetensors"
    for argv, message in (
        (["tokenizer", "train", "--kind", "char", "--data", run, "--out", run / "t"],
         f"{run} is a directory; pass a text file"),
        (["data", "verify", "sticky:k=1", run], f"{run} is a directory; pass a text file"),
        (["data", "verify", "sticky:k=1", weights], f"{weights}: not UTF-8 text: byte 0x"),
    ):  # fmt: skip
        code, _, err = _run(capsys, *argv)
        assert code == 2 and message in _one_line_error(err, argv[0])


def test_convert_refuses_a_pickle_without_torchs_advice(tmp_path, capsys):
    import os

    from transformers import GPT2Config

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=20, n_positions=16).to_json_file(
        tmp_path / "config.json"
    )
    torch.save({"h.0.ln_1.weight": Evil()}, tmp_path / "pytorch_model.bin")
    capsys.readouterr()  # (transformers' own notes on the tiny config above)
    code, out, err = _run(capsys, "convert", "--from-hf", tmp_path, "--out", tmp_path / "o")
    msg = _one_line_error(err, "convert")
    assert code == 2 and "pwned" not in out and "posix.system" in msg
    assert "never runs a pickle's code" in msg and "weights_only" not in msg


# -- 14: the small ones --------------------------------------------------------------------------


def test_data_verify_show_and_a_huge_sample(tmp_path, capsys):
    path = tmp_path / "s.txt"
    path.write_text("ab\nzz\n" + "0" * 1_000_000 + "x\n", encoding="utf-8")
    code, _, err = _run(capsys, "data", "verify", "sticky:k=1", path, "--show", "-2")
    assert code == 2 and "--show must be 0 or more, got -2" in err
    code, out, _ = _run(capsys, "data", "verify", "sticky:k=1", path, "--show", "0")
    assert code == 1 and out.splitlines() == [  # not "... and 4 more"
        "... and 2 more invalid samples",
        "1 of 3 valid (" + out.split("(", 1)[1].rstrip(),
    ]
    code, out, _ = _run(capsys, "data", "verify", "sticky:k=1", path)
    assert code == 1 and max(len(line) for line in out.splitlines()) < 200
    assert "sample 3: invalid at position 1000000 of 1,000,001 characters: 'x'" in out


def test_experiment_out_without_suffix_says_the_file_it_wrote(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = _run(capsys, "experiment", "mlp-quadratic", "--steps", "3", "--hidden", "4",
                        "--ways", "torch-nn-adam", "--out", "curves")  # fmt: skip
    assert code == 0 and out.splitlines()[-1] == "wrote curves.png"
    assert (tmp_path / "curves.png").is_file() and not (tmp_path / "curves").exists()


def test_a_warning_is_one_line(run, capsys):
    prompt = "the cat 1 sat on the mat 2." * 3  # longer than the 32-token context
    code, _, err = _run(capsys, "sample", run, "--prompt", prompt, "--max-new-tokens", "2")
    assert code == 0
    assert err == (
        "scratchllm sample: warning: prompt of 81 tokens is longer than the model's "
        "context_length 32; only its last 32 tokens condition the output\n"
    )


@pytest.mark.parametrize(
    "argv, usage",
    [
        (["sample", "x", "--bogus"], "usage: scratchllm sample "),
        (["data", "verify", "sticky:k=1", "--bogus"], "usage: scratchllm data verify "),
        (["tokenizer", "encode", "--tokenizer", "t", "--nope"], "usage: scratchllm tokenizer "),
    ],
)
def test_an_unknown_flag_shows_the_verbs_usage(capsys, argv, usage):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(usage) and "unrecognized arguments" in err


@pytest.mark.parametrize(
    "argv, said",
    [
        (["train", "--data", "sticky:k=1", "--samples", "0"], "samples (0) must be"),
        (["fewshot", "--endpoint", "http://127.0.0.1:9/v1", "--endpoint-model", "m",
          "--languages", "sticky:k=1", "--samples", "0"], "--samples must be at least 1, got 0"),
    ],
)  # fmt: skip
def test_samples_errors_name_the_flag(tmp_path, capsys, argv, said):
    code, _, err = _run(capsys, *argv, "--out", tmp_path / "r")
    assert code == 2 and said in _one_line_error(err, argv[0]) and "n_samples" not in err
    assert not (tmp_path / "r").exists()


def test_an_unseen_character_suggests_what_train_can_do(cats, tmp_path, capsys):
    from scratchllm.tokenizers import CharTokenizer

    CharTokenizer.train("the cat s\n").save(tmp_path / "tok")
    code, _, err = _run(capsys, "train", "--data", cats, "--tokenizer", tmp_path / "tok", *TINY,
                        "--out", tmp_path / "r")  # fmt: skip
    msg = _one_line_error(err, "train")
    assert code == 2 and "unk=True" not in msg and "character '0' (U+0030) at position 8" in msg
    assert "scratchllm tokenizer train --kind char --unk" in msg and "--tokenizer char" in msg


def test_bpe_says_when_it_stops_short_of_the_vocab_size(cats, tmp_path, capsys):
    code, out, err = _run(capsys, "tokenizer", "train", "--kind", "bpe", "--vocab-size", "5000",
                          "--data", cats, "--out", tmp_path / "t", "--quiet")  # fmt: skip
    assert code == 0 and "note: asked for 5,000 tokens, made " in err
    assert "no more pairs of tokens to merge" in err
    code, out, _ = _run(capsys, "train", "--data", cats, "--tokenizer", "bpe", "--vocab-size",
                        "5000", *TINY, "--max-iters", "1", "--out", tmp_path / "r")  # fmt: skip
    assert code == 0 and "(asked for 5,000 tokens, made " in out


def test_an_unknown_toml_table_is_an_error(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text("[modle]\nn_layer = 2\n")
    code, _, err = _run(capsys, "train", "--config", cfg, "--out", tmp_path / "r")
    assert code == 2 and "unknown table [modle]" in err and "[model]" in err
