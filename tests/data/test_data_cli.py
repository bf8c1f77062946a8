"""`scratchllm data languages | sample | verify`, in process (plus one real subprocess)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from scratchllm.cli import main
from scratchllm.data.languages import get, languages, split_samples


def run(capsys, monkeypatch, argv, stdin=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_languages_lists_every_family(capsys, monkeypatch):
    code, out, _ = run(capsys, monkeypatch, ["data", "languages"])
    assert code == 0
    for info in languages():
        assert f"{info.name}: {info.description}" in out
        assert f"n = {info.context_formula}" in out
        assert info.default_spec in out
        for p in info.params:
            assert p.key in out and p.range_text in out and p.help in out


def test_languages_json(capsys, monkeypatch):
    code, out, _ = run(capsys, monkeypatch, ["data", "languages", "--json"])
    assert code == 0
    listed = json.loads(out)
    assert [f["name"] for f in listed] == [f.name for f in languages()]
    markov = next(f for f in listed if f["name"] == "markov")
    assert markov["context_needed"] == "order + 1"
    order = next(p for p in markov["params"] if p["name"] == "order")
    assert (order["default"], order["range"], order["type"]) == (3, "1..8", "int")


def test_sample_prints_valid_samples_deterministically(capsys, monkeypatch):
    code, out, _ = run(capsys, monkeypatch, ["data", "sample", "dyck:depth=3", "-n", "7"])
    assert code == 0
    samples = split_samples(out)
    assert len(samples) == 7
    lang = get("dyck:depth=3")
    assert samples == lang.samples(7, seed=0)
    assert all(lang.verify(s).valid for s in samples)
    _, again, _ = run(capsys, monkeypatch, ["data", "sample", "dyck:depth=3", "-n", "7"])
    _, other, _ = run(
        capsys, monkeypatch, ["data", "sample", "dyck:depth=3", "-n", "7", "--seed", "1"]
    )
    assert again == out and other != out


def test_sample_then_verify_round_trip(capsys, monkeypatch):
    _, out, _ = run(capsys, monkeypatch, ["data", "sample", "addition:digits=3", "-n", "25"])
    code, report, _ = run(capsys, monkeypatch, ["data", "verify", "addition:digits=3"], stdin=out)
    assert code == 0
    last = report.strip().splitlines()[-1]
    assert last == "25 of 25 valid (addition:digits=3,format=plain,operands=uniform)"


def test_verify_reports_each_invalid_sample(capsys, monkeypatch):
    text = "aaBB\naaabbb\nabcABC1\naaa"
    code, out, _ = run(capsys, monkeypatch, ["data", "verify", "sticky:k=2"], stdin=text)
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("sample 1: invalid at position 2: switch from lower to upper")
    assert lines[1] == "    aaBB" and lines[2] == "      ^"  # the caret under position 2
    assert any(line.startswith("sample 3: invalid at position 7: the last run") for line in lines)
    assert any(
        line.startswith("sample 4: invalid at position 3: the sample ends without")
        for line in lines
    )
    assert not any(line.startswith("sample 2") for line in lines)
    assert lines[-1].startswith("1 of 4 valid (sticky:k=2,")


def test_verify_reads_a_file_and_limits_output(capsys, monkeypatch, tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("ab\n" * 30, encoding="utf-8")
    code, out, _ = run(
        capsys, monkeypatch, ["data", "verify", "copy:length=1", str(path), "--show", "2"]
    )
    assert code == 1
    assert out.count("invalid at position") == 2
    assert "... and 28 more invalid samples" in out
    assert out.strip().endswith("0 of 30 valid (copy:length=1,alphabet=4)")


def test_verify_empty_input_is_zero_of_zero(capsys, monkeypatch):
    code, out, _ = run(capsys, monkeypatch, ["data", "verify", "copy"], stdin="")
    assert code == 0 and out.strip().startswith("0 of 0 valid")


@pytest.mark.parametrize(
    "argv, words",
    [
        (["data", "sample", "nope"], ["unknown language 'nope'", "sticky"]),
        (["data", "sample", "markov:order=12"], ["order=12", "1..8"]),
        (["data", "sample", "copy", "-n", "-1"], ["-n must be 0 or more"]),
        (["data", "verify", "sticky:bogus=1", "-"], ["no parameter 'bogus'", "k, classes"]),
        (["data", "verify", "sticky", "/no/such/file.txt"], ["no such file", "file.txt"]),
    ],
)
def test_bad_input_is_one_line_with_status_2(capsys, monkeypatch, argv, words):
    code, out, err = run(capsys, monkeypatch, argv, stdin="")
    assert code == 2 and out == ""
    assert err.startswith("scratchllm data: error: ") and err.count("\n") == 1
    for word in words:
        assert word in err


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["data", "sample", "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "SPEC" in out and "(default: 10)" in out and "(default: 0)" in out


def test_subprocess_pipeline():
    """The installed entry point, end to end: sample | verify."""
    cmd = [sys.executable, "-m", "scratchllm", "data"]
    sampled = subprocess.run(
        [*cmd, "sample", "counting:digits=2", "-n", "5", "--seed", "3"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    checked = subprocess.run(
        [*cmd, "verify", "counting:digits=2"], input=sampled, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip().startswith("5 of 5 valid")
