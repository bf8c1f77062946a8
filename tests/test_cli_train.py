"""`scratchllm train`: settings layers, the run directory, resume, every family, clear errors."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch
from safetensors.torch import load_file

from scratchllm.cli import build_parser, main
from scratchllm.models import GPTConfig, MLPConfig, NGramConfig, RNNConfig
from scratchllm.training import TrainConfig
from scratchllm.training import settings as cli_train

TEXT = "".join(f"the cat {i % 7} sat on the mat {i % 5}.\n" for i in range(400))
TINY = [
    "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
    "--batch-size", "4", "--warmup-iters", "1", "--eval-iters", "2", "--log-interval", "1",
    "--device", "cpu", "--quiet",
]  # fmt: skip


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "cats.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def _train(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["train", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


# -- the options table and --help --------------------------------------------------------------


def _fields(cls) -> dict:
    return {f.name: f.default for f in dataclasses.fields(cls)}


def test_option_defaults_are_the_dataclass_defaults():
    gpt, train = _fields(GPTConfig), _fields(TrainConfig)
    checked = 0
    for o in cli_train.OPTIONS:
        for source in (gpt, train):
            if o.key in source and o.default is not None:
                assert o.default == source[o.key], o.key
                checked += 1
    assert checked >= 25


def test_bracketed_family_defaults_are_the_dataclass_defaults():
    configs = {"gpt": GPTConfig, "mlp": MLPConfig, "rnn": RNNConfig, "ngram": NGramConfig}
    found = 0
    for o in cli_train.OPTIONS:
        m = re.search(r"\[(.*)\]", cli_train.help_text(o))
        if not m or o.key == "block_size":
            continue
        for part in m.group(1).split(","):
            family, value = part.split()
            assert str(_fields(configs[family])[o.key]) == value, (o.key, family)
            found += 1
    assert found >= 8


def test_help_shows_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--max-iters", "--gradient-accumulation-steps", "--tie-weights", "--resume"):
        assert flag in text
    assert "peak learning rate (after warmup) (default: 0.001)" in text
    assert "optimizer steps in the whole run (default: 2000)" in text


def test_only_typed_flags_reach_the_namespace():
    args = build_parser().parse_args(["train", "--lr", "0.01", "--no-bias"])
    given = {k: v for k, v in vars(args).items() if k in cli_train.BY_KEY}
    assert given == {"lr": 0.01, "bias": False}


# -- settings layers -----------------------------------------------------------------------------


def test_flags_override_config_file_which_overrides_preset(tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text("lr = 0.005\n[model]\nn-layer = 3\n[train]\nmax_iters = 77\n")
    s = cli_train.resolve_settings({"max_iters": 9}, preset="shakespeare-char", config=cfg)
    assert s["max_iters"] == 9  # flag beats file
    assert s["lr"] == 0.005 and s["n_layer"] == 3  # file beats preset
    assert s["n_embd"] == 128 and s["block_size"] == 64  # preset beats defaults
    assert s["weight_decay"] == 0.1  # the default where nobody said anything


def test_saved_settings_round_trip_through_toml(tmp_path):
    s = cli_train.resolve_settings({"lr": 3e-3, "data": 'odd "name".txt', "grad_clip": 0.0})
    cli_train.write_settings(tmp_path / "train.toml", s)
    back = cli_train.resolve_settings({}, saved=cli_train.read_config_file(tmp_path / "train.toml"))
    assert back == s


@pytest.mark.parametrize(
    "text, match",
    [
        ("max_itres = 5\n", "unknown setting 'max_itres'"),
        ('max_iters = "5"\n', "max_iters = '5' must be of type int"),
        ("lr = true\n", "lr = True must be of type float"),
        ('model = "transformer"\n', "choose one of"),
        ("max_iters = 5\n[train]\nmax_iters = 6\n", "set twice"),
        ("max_iters = \n", "not valid TOML"),
    ],
)
def test_bad_config_file_is_a_clear_error(tmp_path, text, match):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ValueError, match=match):
        cli_train.read_config_file(cfg)


def test_missing_config_file(tmp_path, capsys):
    code, _, err = _train(capsys, "--config", str(tmp_path / "nope.toml"))
    assert code == 2 and "nope.toml: no such file" in err


# -- a real run: files, metrics, eval, resume ------------------------------------------------


def test_train_writes_a_run_directory_eval_can_read(tmp_path, text_file, capsys):
    out = tmp_path / "run"
    code, text, _ = _train(
        capsys, "--data", str(text_file), "--out", str(out), "--max-iters", "4",
        "--eval-interval", "2", *TINY,
    )  # fmt: skip
    assert code == 0, text
    for name in ("last/model.safetensors", "best/tokenizer.json", "metrics.jsonl", "loss.png",
                 "train.toml", "data/tokens.bin"):  # fmt: skip
        assert (out / name).exists(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all({"loss", "lr", "tokens_per_s"} <= set(r) for r in rows)
    assert [("val_loss" in r) for r in rows] == [False, True, False, True]
    assert "validation loss" in text and f"scratchllm sample {out}" in text
    config = json.loads((out / "last" / "config.json").read_text())
    assert config["family"] == "gpt" and config["config"]["n_layer"] == 1

    code = main(["eval", str(out / "best"), "--data", str(text_file), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["val_loss"] > 0
    assert main(["eval", str(out), "--data", str(text_file), "--json"]) == 0  # the run dir
    assert json.loads(capsys.readouterr().out)["checkpoint"] == str(out)


def test_resume_continues_to_the_same_weights_as_one_run(tmp_path, text_file, capsys):
    common = ["--data", str(text_file), "--eval-interval", "3", "--lr-decay-iters", "6", *TINY]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train(capsys, *common, "--out", str(straight), "--max-iters", "6")[0] == 0
    assert _train(capsys, *common, "--out", str(split), "--max-iters", "3")[0] == 0
    code, text, _ = _train(capsys, "--out", str(split), "--resume", "--max-iters", "6", "--quiet")
    assert code == 0, text
    a = load_file(straight / "last" / "model.safetensors")
    b = load_file(split / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert "max_iters = 6" in (split / "train.toml").read_text()


def test_resume_refuses_a_model_change(tmp_path, text_file, capsys):
    out = tmp_path / "run"
    assert _train(capsys, "--data", str(text_file), "--out", str(out), "--max-iters", "1",
                  "--eval-interval", "1", *TINY)[0] == 0  # fmt: skip
    code, _, err = _train(capsys, "--out", str(out), "--resume", "--n-embd", "32")
    assert code == 2 and "n_embd: 16 -> 32" in err
    code, _, err = _train(capsys, "--out", str(out), "--resume", "--tokenizer", "word")
    assert code == 2 and "--tokenizer cannot change" in err
    code, _, err = _train(capsys, "--data", str(text_file), "--out", str(out), *TINY)
    assert code == 2 and "already holds a run" in err and "--resume" in err


def test_resume_without_a_run(tmp_path, capsys):
    code, _, err = _train(capsys, "--out", str(tmp_path / "empty"), "--resume")
    assert code == 2 and "train.toml is missing" in err


# -- the other families and inputs ---------------------------------------------------------------


@pytest.mark.parametrize(
    "family, flags",
    [
        ("mlp", ["--n", "3", "--n-embd", "8", "--n-hidden", "16", "--block-size", "16"]),
        ("gru", ["--n-layer", "1", "--n-embd", "8", "--n-hidden", "16", "--block-size", "16"]),
        ("ngram", ["--n", "3"]),
    ],
)
def test_other_families_train_on_a_language(tmp_path, capsys, family, flags):
    out = tmp_path / family
    code, text, _ = _train(
        capsys, "--data", "counting:digits=1", "--samples", "300", "--model", family, *flags,
        "--out", str(out), "--max-iters", "2", "--eval-interval", "2", "--eval-iters", "2",
        "--batch-size", "4", "--warmup-iters", "1", "--validity-samples", "4", "--quiet",
        "--device", "cpu",
    )  # fmt: skip
    assert code == 0, text
    config = json.loads((out / "last" / "config.json").read_text())
    assert config["family"] == ("rnn" if family == "gru" else family)
    if family == "gru":
        assert config["config"]["cell"] == "gru"
    assert "valid" in text  # a language run reports the validity of samples
    assert f"scratchllm eval {out} --data counting:digits=1" in text  # and says how to measure
    assert "--prompt 'The '" not in text  # an English prompt means nothing to a language
    toml = (out / "train.toml").read_text()
    assert "n_head" not in toml  # another family's setting is not written


def test_a_flag_of_another_family_is_an_error(tmp_path, text_file, capsys):
    code, _, err = _train(capsys, "--data", str(text_file), "--model", "mlp", "--n-layer", "3",
                          "--out", str(tmp_path / "x"))  # fmt: skip
    assert code == 2 and "--n-layer does not apply to --model mlp" in err


def test_word_tokenizer_and_saved_tokenizer_dir(tmp_path, text_file, capsys):
    out = tmp_path / "word"
    code, text, _ = _train(capsys, "--data", str(text_file), "--tokenizer", "word", "--out",
                           str(out), "--max-iters", "1", "--eval-interval", "1", *TINY)  # fmt: skip
    assert code == 0 and "tokenizer word" in text
    other = tmp_path / "other.txt"
    other.write_text("ZZZ qqq\n" * 200)
    code, _, err = _train(capsys, "--data", str(other), "--tokenizer", str(tmp_path / "nodir"),
                          "--out", str(tmp_path / "y"), *TINY)  # fmt: skip
    assert code == 2 and "no such directory" in err
    char_dir = tmp_path / "chartok"
    from scratchllm.tokenizers import CharTokenizer

    CharTokenizer.train("abc \n").save(char_dir)
    code, _, err = _train(capsys, "--data", str(other), "--tokenizer", str(char_dir),
                          "--out", str(tmp_path / "z"), *TINY)  # fmt: skip
    assert code == 2 and "cannot encode" in err and "'Z'" in err


def test_bad_data_is_a_clear_error(tmp_path, capsys):
    code, _, err = _train(capsys, "--data", str(tmp_path / "missing.txt"), "--out",
                          str(tmp_path / "r"), *TINY)  # fmt: skip
    assert code == 2 and "missing.txt" in err and "not a file" in err
