"""Every command and example of docs/study.md runs (tests/docs_commands.py), in order, in
one scratch directory."""

from __future__ import annotations

import pytest
from docs_commands import DOCS, run_page, steps

PAGE = DOCS / "study.md"


def test_the_doc_has_commands_to_run():
    commands = [s.command.argv for s in steps(PAGE.read_text(encoding="utf-8")) if s.command]
    verbs = [c[0] for c in commands]
    assert "study" in verbs and "inspect" in verbs
    # the doc runs the tiny budget only: it is what the tests can afford
    for c in commands:
        if c[0] == "study":
            assert c[c.index("--budget") + 1] == "tiny"


@pytest.mark.slow
def test_every_command_in_the_doc_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    done = run_page(PAGE, capsys)
    assert (tmp_path / "study" / "report.md").is_file()
    # the Python example runs the same study: it reuses the runs the command made
    result = done.namespace["result"]
    assert result.skipped and not result.failed
