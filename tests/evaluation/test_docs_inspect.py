"""docs/inspect.md runs: `scratchllm inspect` and `inspect_checkpoint` draw the same files."""

from __future__ import annotations

from docs_commands import DOCS, run_page

PAGE = DOCS / "inspect.md"


def test_inspect_from_the_command_line_is_inspect_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    done = run_page(PAGE, capsys)
    printed = done.output_of("inspect")
    spec = done.namespace["done"].language.spec
    assert f"language: {spec} (from " in printed  # found in the run, as the page says
    cli = sorted(p.name for p in (tmp_path / "look").iterdir())
    py = sorted(p.name for p in (tmp_path / "look-py").iterdir())
    assert cli == py and "attention_grid.png" in cli and "attention_offsets.json" in cli
