"""Every command in docs/study.md runs: the ```bash blocks' `scratchllm ...` lines, in order,
in one scratch directory, through scratchllm.cli.main."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from scratchllm.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "study.md"


def doc_commands(text: str) -> list[list[str]]:
    """The argument lists of the `scratchllm` commands in the text's ```bash blocks
    (a line ending in a backslash continues on the next)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "scratchllm":
                commands.append(words[1:])
    return commands


def test_the_doc_has_commands_to_run():
    commands = doc_commands(DOC.read_text(encoding="utf-8"))
    verbs = [c[0] for c in commands]
    assert "study" in verbs and "inspect" in verbs
    # the doc runs the tiny budget only: it is what the tests can afford
    for c in commands:
        if c[0] == "study":
            assert c[c.index("--budget") + 1] == "tiny"


@pytest.mark.slow
def test_every_command_in_the_doc_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for args in doc_commands(DOC.read_text(encoding="utf-8")):
        code = main(args)
        out = capsys.readouterr()
        assert code == 0, (args, out.out[-2000:], out.err[-2000:])
    assert (tmp_path / "study" / "report.md").is_file()
