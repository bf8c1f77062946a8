"""`scratchllm sample`: the same tokens as the library, every option, stdin, the prompt loop."""

from __future__ import annotations

import io

import pytest
import torch

from scratchllm.cli import main
from scratchllm.cli.sample import SEPARATOR
from scratchllm.generation import beam_search, generate
from scratchllm.models import GPT, GPTConfig
from scratchllm.tokenizers import CharTokenizer
from scratchllm.training import save_checkpoint

TEXT = "abcdefgh ijklmnop\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory holding a small random GPT and its char tokenizer in last/."""
    torch.manual_seed(0)
    tok = CharTokenizer.train(TEXT)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16,
                          block_size=32))  # fmt: skip
    run = tmp_path_factory.mktemp("run")
    save_checkpoint(run / "last", model, tok)
    return run, model.eval(), tok


def _sample(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["sample", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_greedy_is_the_library_greedy(run_dir, capsys):
    run, model, tok = run_dir
    code, out, _ = _sample(capsys, str(run), "--prompt", "abc", "--temperature", "0",
                           "--max-new-tokens", "20")  # fmt: skip
    ids = tok.encode("abc")
    expected = tok.decode(generate(model, [ids], 20, temperature=0)[0].tolist())
    assert code == 0 and out == expected + "\n"


def test_seeded_samples_repeat_and_differ_from_each_other(run_dir, capsys):
    run, model, tok = run_dir
    argv = [str(run), "--prompt", "ab", "--num-samples", "3", "--seed", "5", "--top-k", "5",
            "--top-p", "0.9", "--repetition-penalty", "1.2", "--max-new-tokens", "30"]  # fmt: skip
    _, first, _ = _sample(capsys, *argv)
    _, again, _ = _sample(capsys, *argv)
    assert first == again
    samples = first.rstrip("\n").split("\n" + SEPARATOR + "\n")
    assert len(samples) == 3 and len(set(samples)) == 3
    ids = tok.encode("ab")
    out = generate(model, [ids], 30, top_k=5, top_p=0.9, repetition_penalty=1.2, seed=6,
                   temperature=0.8)  # fmt: skip
    assert samples[1] == tok.decode(out[0].tolist())  # sample i is seeded seed + i


def test_stream_prints_what_generate_returns(run_dir, capsys):
    run, _, _ = run_dir
    argv = [str(run), "--prompt", "ijk", "--seed", "1", "--max-new-tokens", "25"]
    _, plain, _ = _sample(capsys, *argv)
    _, streamed, _ = _sample(capsys, *argv, "--stream")
    assert streamed == plain


def test_stop_string_ends_the_sample_before_it(run_dir, capsys):
    run, model, tok = run_dir
    ids = tok.encode("a")
    full = tok.decode(generate(model, [ids], 40, temperature=0)[0, 1:].tolist())
    stop = full[10:12]
    cut = full.index(stop)
    code, out, _ = _sample(capsys, str(run), "--prompt", "a", "--temperature", "0",
                           "--max-new-tokens", "40", "--stop", stop)  # fmt: skip
    assert code == 0 and out == "a" + full[:cut] + "\n"


def test_beams_print_the_best_beams(run_dir, capsys):
    run, model, tok = run_dir
    code, out, _ = _sample(capsys, str(run), "--prompt", "ab", "--num-beams", "3",
                           "--num-samples", "2", "--max-new-tokens", "8")  # fmt: skip
    beams = beam_search(model, [tok.encode("ab")], 8, 3, num_return_sequences=2)
    best = tok.decode(beams.sequences[0, 0].tolist())
    assert code == 0 and out.split("\n" + SEPARATOR + "\n")[0] == best


def test_prompt_from_piped_stdin(run_dir, capsys, monkeypatch):
    run, _, _ = run_dir
    monkeypatch.setattr("sys.stdin", io.StringIO("abc"))
    code, piped, _ = _sample(capsys, str(run), "--temperature", "0", "--max-new-tokens", "10")
    _, given, _ = _sample(capsys, str(run), "--prompt", "abc", "--temperature", "0",
                          "--max-new-tokens", "10")  # fmt: skip
    assert code == 0 and piped == given


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_interactive_loop_on_a_terminal(run_dir, capsys, monkeypatch):
    run, _, _ = run_dir
    monkeypatch.setattr("sys.stdin", _Terminal())
    answers = iter(["abc", "Z!", "ijk", ""])  # a bad prompt is reported, the loop goes on
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    code, out, err = _sample(capsys, str(run), "--temperature", "0", "--max-new-tokens", "5")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert lines[0].startswith("abc") and lines[1].startswith("ijk")
    assert "'Z'" in err and "empty line or Ctrl-D" in err


def test_unencodable_prompt_is_a_clear_error(run_dir, capsys):
    run, _, _ = run_dir
    code, out, err = _sample(capsys, str(run), "--prompt", "abc€")
    assert code == 2 and out == ""
    assert "the prompt's character '€' (U+20AC) at position 3 is not one of" in err
    assert "leave it out of the prompt" in err and "unk=True" not in err


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    code, _, err = _sample(capsys, str(tmp_path / "nowhere"), "--prompt", "a")
    assert code == 2 and "nowhere" in err and "no such checkpoint" in err


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--num-samples", "0"], "--num-samples must be at least 1"),
        (["--num-beams", "2", "--num-samples", "3"], "must not exceed --num-beams"),
        (["--num-beams", "2", "--stream"], "--stream works with sampling"),
        (["--temperature", "-1"], "temperature"),
    ],
)
def test_bad_options_are_clear_errors(run_dir, capsys, argv, match):
    run, _, _ = run_dir
    code, _, err = _sample(capsys, str(run), "--prompt", "a", *argv)
    assert code == 2 and match in err
