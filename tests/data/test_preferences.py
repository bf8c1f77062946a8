"""Preference pairs on disk: both forms TRL's datasets use, a lossless round trip, and an
error naming file, line and field for every kind of malformed line."""

from __future__ import annotations

import json

import pytest

from scratchllm.data.chat import Message
from scratchllm.data.preferences import PreferencePair, read_pairs, write_pairs


def _write(path, *records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "\n", encoding="utf-8")
    return path


def test_strings_and_message_lists_read_alike(tmp_path):
    path = _write(
        tmp_path / "p.jsonl",
        {"prompt": "1+1=", "chosen": "2\n", "rejected": "3\n"},
        {
            "prompt": [
                {"role": "system", "content": "Be kind."},
                {"role": "user", "content": "Hi"},
            ],
            "chosen": [{"role": "assistant", "content": "Hello."}],
            "rejected": [{"role": "assistant", "content": "Go away."}],
        },
    )
    a, b = read_pairs(path)
    assert a.prompt == (Message("user", "1+1="),) and (a.chosen, a.rejected) == ("2\n", "3\n")
    assert [m.role for m in b.prompt] == ["system", "user"] and b.prompt_text == "Hi"
    assert (b.chosen, b.rejected) == ("Hello.", "Go away.")
    assert a.source == f"{path}:1" and b.source == f"{path}:2"


def test_write_then_read_is_lossless(tmp_path):
    pairs = [
        PreferencePair((Message("user", "37+45="),), "82\n", "83\n"),
        PreferencePair((Message("system", "s"), Message("user", "é?")), "oui", "non"),
    ]
    back = read_pairs(write_pairs(tmp_path / "p.jsonl", pairs))
    assert [(p.prompt, p.chosen, p.rejected) for p in back] == [
        (p.prompt, p.chosen, p.rejected) for p in pairs
    ]
    first = json.loads((tmp_path / "p.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first == {"prompt": "37+45=", "chosen": "82\n", "rejected": "83\n"}


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('{"prompt": "a", "chosen": "b"}', "field 'rejected' is missing"),
        ('{"prompt": "a", "chosen": "b", "rejected": "b"}', "are the same reply"),
        ('{"prompt": "a", "chosen": "", "rejected": "b"}', "field 'chosen' is empty"),
        ('{"prompt": 3, "chosen": "b", "rejected": "c"}', "field 'prompt' must be a string"),
        ('{"prompt": "a", "chosen": 1, "rejected": "c"}', "field 'chosen' must be a string"),
        ("[1, 2]", "expected a JSON object, got a JSON array"),
        ('{"prompt": "a", "chosen": "b",', "not valid JSON"),
        (
            '{"prompt": [{"role": "assistant", "content": "x"}], "chosen": "b", "rejected": "c"}',
            "ends with an assistant message",
        ),
        (
            '{"prompt": "a", "chosen": [{"role": "user", "content": "x"}], "rejected": "c"}',
            "must hold one assistant message",
        ),
    ],
)
def test_a_malformed_line_names_file_line_and_field(tmp_path, line, says):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "1+1=", "chosen": "2\\n", "rejected": "3\\n"}\n' + line + "\n")
    with pytest.raises(ValueError, match=f"bad.jsonl:2: .*{says}"):
        read_pairs(path)


def test_empty_missing_and_non_utf8_files_are_errors(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ValueError, match="holds no preference pairs"):
        read_pairs(tmp_path / "empty.jsonl")
    with pytest.raises(FileNotFoundError, match="no such preference file"):
        read_pairs(tmp_path / "nope.jsonl")
    (tmp_path / "latin.jsonl").write_bytes(b'{"prompt": "\xe9"}\n')
    with pytest.raises(ValueError, match="latin.jsonl:1: not UTF-8"):
        read_pairs(tmp_path / "latin.jsonl")
