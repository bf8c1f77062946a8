import doctest
import io
import subprocess
import sys
import textwrap

import pytest

import scratchllm.tokenizers
from scratchllm.cli import main
from scratchllm.tokenizers import CharTokenizer, WordTokenizer, load

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\r\n\nAll: Speak, speak.\n"


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "input.txt"
    path.write_bytes(TEXT.encode("utf-8"))  # bytes: keep the "\r\n" exactly
    return path


def feed(monkeypatch, text: str) -> None:
    """Stand in for stdin the way a pipe would: UTF-8 bytes under a text wrapper."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode("utf-8"))))


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = main(["tokenizer", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_train_char_and_word_save_what_the_library_trains(tmp_path, data_file, capsys):
    rc, out, err = run(
        capsys, "train", "--kind", "char", "--data", data_file, "--out", tmp_path / "c"
    )
    assert rc == 0
    expected = CharTokenizer.train(TEXT)
    assert out.strip() == (
        f"trained a char tokenizer: vocab size {expected.vocab_size}, "
        f"saved to {tmp_path / 'c' / 'tokenizer.json'}"
    )
    assert "counting" in err  # the tqdm progress bar
    assert load(tmp_path / "c") == expected

    args = ["--kind", "word", "--data", data_file, "--out", tmp_path / "w", "--quiet"]
    rc, out, err = run(capsys, "train", *args, "--vocab-size", 12, "--lowercase", "--nfkc")
    assert rc == 0 and "vocab size 12" in out and err == ""
    assert load(tmp_path / "w") == WordTokenizer.train(
        TEXT, vocab_size=12, lowercase=True, nfkc=True
    )

    rc, _, err = run(capsys, "train", *args, "--min-frequency", 2)  # the same --out
    assert rc == 2 and "tokenizer.json already exists; pass --force" in err
    assert load(tmp_path / "w") == WordTokenizer.train(  # untouched
        TEXT, vocab_size=12, lowercase=True, nfkc=True
    )
    rc, _, _ = run(capsys, "train", *args, "--min-frequency", 2, "--force")
    assert rc == 0
    assert load(tmp_path / "w") == WordTokenizer.train(TEXT, min_frequency=2)


@pytest.mark.parametrize("kind, extra", [("char", []), ("word", []), ("char", ["--unk"])])
def test_encode_decode_round_trip_through_the_cli(
    tmp_path, data_file, capsys, monkeypatch, kind, extra
):
    run(capsys, "train", "--kind", kind, "--data", data_file, "--out", tmp_path, "--quiet", *extra)
    tok = load(tmp_path)

    feed(monkeypatch, TEXT)
    rc, out, _ = run(capsys, "encode", "--tokenizer", tmp_path)
    assert rc == 0
    assert out == " ".join(map(str, tok.encode(TEXT))) + "\n"

    feed(monkeypatch, out)
    rc, back, _ = run(capsys, "decode", "--tokenizer", tmp_path / "tokenizer.json")
    assert rc == 0
    assert back == TEXT  # exact, "\r\n" and trailing newline included


def test_word_bos_eos_and_keep_special(tmp_path, data_file, capsys, monkeypatch):
    run(capsys, "train", "--kind", "word", "--data", data_file, "--out", tmp_path, "--quiet")
    feed(monkeypatch, "hear me")
    _, out, _ = run(capsys, "encode", "--tokenizer", tmp_path, "--bos", "--eos")
    ids = [int(i) for i in out.split()]
    assert ids[0] == 2 and ids[-1] == 3
    feed(monkeypatch, out)
    assert run(capsys, "decode", "--tokenizer", tmp_path)[1] == "hear me"
    feed(monkeypatch, out)
    assert (
        run(capsys, "decode", "--tokenizer", tmp_path, "--keep-special")[1] == "<bos>hear me<eos>"
    )


def test_non_utf8_data_file_names_the_file_and_byte_offset(tmp_path, capsys):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"caf" + "é au lait".encode("latin-1"))
    rc, out, err = run(capsys, "train", "--kind", "char", "--data", bad, "--out", tmp_path / "o")
    assert rc == 2 and out == ""
    assert f"{bad}: not UTF-8 text: byte 0xe9 at byte offset 3" in err
    assert not (tmp_path / "o").exists()


def test_non_utf8_stdin_is_a_clear_error(tmp_path, data_file, capsys, monkeypatch):
    run(capsys, "train", "--kind", "char", "--data", data_file, "--out", tmp_path, "--quiet")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok\xff")))
    rc, _, err = run(capsys, "encode", "--tokenizer", tmp_path)
    assert rc == 2 and "<stdin> is not UTF-8 text: byte 0xff at byte offset 2" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--kind", "char", "--data", "{missing}"], "no such file"),
        (["--kind", "word", "--data", "{data}", "--unk"], "--unk applies to --kind char, not word"),
        (
            ["--kind", "char", "--data", "{data}", "--lowercase"],
            "--lowercase applies to --kind word",
        ),
        (
            ["--kind", "word", "--data", "{data}", "--pattern", "gpt4"],
            "--pattern applies to --kind bpe",
        ),
        (["--kind", "bpe", "--data", "{data}"], "--kind bpe needs --vocab-size"),
        (["--kind", "word", "--data", "{empty}"], "training text is empty"),
        (
            ["--kind", "word", "--data", "{data}", "--vocab-size", "3"],
            "vocab_size must be an integer >= 5",
        ),
    ],
)
def test_train_errors_are_one_line_with_status_2(tmp_path, data_file, capsys, argv, message):
    (tmp_path / "empty.txt").write_text("")
    paths = {"missing": tmp_path / "nope.txt", "data": data_file, "empty": tmp_path / "empty.txt"}
    argv = [a.format(**paths) for a in argv]
    rc, _, err = run(capsys, "train", *argv, "--out", tmp_path / "o", "--quiet")
    assert rc == 2
    assert (
        message in err and err.count("\n") == 1 and err.startswith("scratchllm tokenizer: error:")
    )


def test_encode_decode_errors(tmp_path, data_file, capsys, monkeypatch):
    rc, _, err = run(capsys, "encode", "--tokenizer", tmp_path / "nothing")
    assert rc == 2 and "no tokenizer found" in err
    run(capsys, "train", "--kind", "char", "--data", data_file, "--out", tmp_path, "--quiet")
    feed(monkeypatch, "1 2 x")
    rc, _, err = run(capsys, "decode", "--tokenizer", tmp_path)
    assert rc == 2 and "stdin item 2 is 'x', not an integer token id" in err
    feed(monkeypatch, "1 999")
    rc, _, err = run(capsys, "decode", "--tokenizer", tmp_path)
    assert rc == 2 and "id 999 at position 1 is not a token id" in err
    feed(monkeypatch, "Zebra")
    rc, _, err = run(capsys, "encode", "--tokenizer", tmp_path)
    assert rc == 2 and "character 'Z'" in err and "position 0" in err
    feed(monkeypatch, "hear")
    rc, _, err = run(capsys, "encode", "--tokenizer", tmp_path, "--bos")
    assert rc == 2 and "--bos/--eos apply to word tokenizers, not char" in err


@pytest.mark.parametrize(
    "action, shown",
    [
        ("train", ["--kind {char,word,bpe}", "default: 1", "default: gpt2", "default: off"]),
        ("encode", ["--tokenizer", "--allow-special", "default: off"]),
        ("decode", ["--tokenizer", "--keep-special", "default: off"]),
    ],
)
def test_help_shows_options_and_defaults(capsys, action, shown):
    with pytest.raises(SystemExit) as e:
        main(["tokenizer", action, "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for text in shown:
        assert text in out


def test_never_imports_torch(tmp_path):
    """The package and the CLI verb stay torch-free: one subprocess with a fresh interpreter."""
    CharTokenizer.train("hello").save(tmp_path)
    script = textwrap.dedent(
        f"""
        import sys
        import scratchllm.tokenizers
        assert "torch" not in sys.modules, "import scratchllm.tokenizers imported torch"
        from scratchllm.cli import main
        rc = main(["tokenizer", "encode", "--tokenizer", {str(tmp_path)!r}])
        assert rc == 0
        assert "torch" not in sys.modules, "scratchllm tokenizer encode imported torch"
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], input=b"hole", capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == b"1 3 2 0\n"


# ---- BPE through the CLI ---------------------------------------------------------------------


def test_bpe_train_encode_decode(tmp_path, data_file, capsys, monkeypatch):
    from scratchllm.tokenizers import BPETokenizer

    argv = ["--kind", "bpe", "--data", data_file, "--out", tmp_path, "--vocab-size", 300]
    rc, out, _ = run(capsys, "train", *argv, "--pattern", "gpt4", "--special", "<|endoftext|>")
    assert rc == 0
    tok = load(tmp_path)
    assert isinstance(tok, BPETokenizer)
    ref = BPETokenizer.train(TEXT, vocab_size=300, pattern="gpt4", special_tokens=["<|endoftext|>"])
    assert f"vocab size {ref.vocab_size}" in out
    text = "Speak, citizen!<|endoftext|>hear me"
    assert tok.encode(text, allowed_special="all") == ref.encode(text, allowed_special="all")

    feed(monkeypatch, text)
    rc, _, err = run(capsys, "encode", "--tokenizer", tmp_path)
    assert rc == 2 and "<|endoftext|>" in err  # special-token text needs --allow-special
    feed(monkeypatch, text)
    rc, ids, _ = run(capsys, "encode", "--tokenizer", tmp_path, "--allow-special")
    assert rc == 0
    assert ids == " ".join(map(str, ref.encode(text, allowed_special="all"))) + "\n"
    assert str(ref.special_tokens["<|endoftext|>"]) in ids.split()
    feed(monkeypatch, ids)
    assert run(capsys, "decode", "--tokenizer", tmp_path)[1] == text


# ---- the front door: scratchllm.tokenizers.load ------------------------------------------------


def test_load_returns_whichever_kind_was_saved(tmp_path):
    from scratchllm.tokenizers import BPETokenizer

    saved = {
        "char": CharTokenizer.train(TEXT, unk=True),
        "word": WordTokenizer.train(TEXT, lowercase=True),
        "bpe": BPETokenizer.train(TEXT, vocab_size=280, special_tokens=["<|endoftext|>"]),
    }
    for kind, tok in saved.items():
        path = tok.save(tmp_path / kind)
        for where in (tmp_path / kind, path, str(path)):
            back = load(where)
            assert type(back) is type(tok) and back.kind == kind
            assert back.vocab_size == tok.vocab_size
            assert back.encode(TEXT) == tok.encode(TEXT)
            assert back.decode(tok.encode(TEXT)) == tok.decode(tok.encode(TEXT))


def test_load_reads_gpt2_vocab_and_merges_files(tmp_path):
    from scratchllm.tokenizers import BPETokenizer

    tok = BPETokenizer.train(TEXT, vocab_size=290)
    tok.save_gpt2_files(tmp_path)
    back = load(tmp_path)
    assert isinstance(back, BPETokenizer)
    assert back.encode(TEXT) == tok.encode(TEXT)


def test_load_missing_is_file_not_found_naming_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nope.json'} does not exist"):
        load(tmp_path / "nope.json")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} has no tokenizer.json"):
        load(tmp_path)


def _foreign_hf_wordpiece(path):
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]")).save(str(path))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: p.write_bytes(b"  \n"), "is empty"),
        (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00"), "not UTF-8 text"),
        (lambda p: p.write_text('{"kind": "char", "version": 1, "vocab": ["a", '), "truncated"),
        (lambda p: p.write_text("{kind: char}"), "not valid JSON"),
        (lambda p: p.write_text("[1, 2, 3]"), "holds a JSON list"),
        (lambda p: p.write_text('{"name": "my config", "lr": 0.1}'), "neither a 'kind'"),
        (lambda p: p.write_text('{"kind": "sentencepiece"}'), "kind 'sentencepiece'"),
        (_foreign_hf_wordpiece, "'WordPiece' model"),
    ],
    ids=["empty", "blank", "binary", "truncated", "corrupt", "list", "foreign", "kind", "hf-wp"],
)
def test_load_bad_files_are_clear_errors_naming_the_file(tmp_path, make, message):
    path = tmp_path / "tokenizer.json"
    make(path)
    for where in (tmp_path, path):
        with pytest.raises(ValueError, match=message) as e:
            load(where)
        assert str(path) in str(e.value)


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9])
def test_load_truncated_saves_of_each_kind(tmp_path, cut):
    from scratchllm.tokenizers import BPETokenizer

    for tok in (
        CharTokenizer.train(TEXT),
        WordTokenizer.train(TEXT),
        BPETokenizer.train(TEXT, vocab_size=270),
    ):
        path = tok.save(tmp_path / tok.kind)
        raw = path.read_bytes()
        path.write_bytes(raw[: int(len(raw) * cut)])
        with pytest.raises(ValueError, match=str(path)):
            load(path)


def test_docstring_examples_run():
    result = doctest.testmod(scratchllm.tokenizers)
    assert result.attempted > 0 and result.failed == 0
